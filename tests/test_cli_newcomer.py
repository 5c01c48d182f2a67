"""The command line as a newcomer meets it: shell completion, typos, an empty folder, options
that do something, `orch logs` filters and formats, Ctrl-C at start-up, and output that cannot
be written. Every test runs orch as a real process (completion through click's own
``_ORCH_COMPLETE`` protocol, terminals through a pseudo-terminal)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from orch.cli import exitcodes
from orch.cli.views import escape_controls, log_records
from orch.state import InstanceRow, Store

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
CLEAN = HEADER + "topology_template:\n  node_templates:\n    server: {type: tosca.nodes.Compute}\n"
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and terminals")

NOISY = r"""#!/bin/sh
for i in 1 2 3 4 5; do echo "line $i"; done
printf 'title \033]0;pwned\007 clear \033[2J back\rspace\b end\n'
echo "to stderr" >&2
"""
BLUEPRINT = HEADER + textwrap.dedent("""\
    metadata:
      template_name: chatty
    topology_template:
      node_templates:
        laptop:
          type: tosca.nodes.Compute
          attributes:
            private_address: localhost
        noisy:
          type: tosca.nodes.SoftwareComponent
          requirements:
            - host: laptop
          interfaces:
            Standard:
              create: scripts/noisy.sh
        quiet:
          type: tosca.nodes.SoftwareComponent
          requirements:
            - host: laptop
            - dependency: noisy
          interfaces:
            Standard:
              create: scripts/quiet.sh
    """)
FAILING = HEADER + textwrap.dedent("""\
    metadata:
      template_name: failing
    topology_template:
      node_templates:
        laptop:
          type: tosca.nodes.Compute
          attributes:
            private_address: localhost
        broken:
          type: tosca.nodes.SoftwareComponent
          requirements:
            - host: laptop
          interfaces:
            Standard:
              create: scripts/broken.sh
    """)


def env_for(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ORCH_STATE_DIR", "ORCH_SITES", "ORCH_CATALOG", "NO_COLOR", "XDG_CONFIG_HOME")
    }
    env.update(extra)
    return env


def orch(
    *args: object, cwd: Path | None = None, timeout: float = 90, **env: str
) -> subprocess.CompletedProcess[str]:
    """orch as a process; its output decoded as it is (no newline translation)."""
    proc = subprocess.run([sys.executable, "-m", "orch", *map(str, args)], cwd=cwd,
                          capture_output=True, env=env_for(**env), timeout=timeout,
                          check=False)  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                       proc.stderr.decode())  # fmt: skip


def complete(line: str, cwd: Path, **env: str) -> list[tuple[str, str]]:
    """What bash completion offers for ``line`` (the cursor at its end), as (type, value)."""
    words = shlex.split(line)
    if line.endswith(" "):
        words.append("")
    proc = subprocess.run(
        [sys.executable, "-m", "orch"], cwd=cwd, capture_output=True, text=True, timeout=60,
        env=env_for(_ORCH_COMPLETE="bash_complete", COMP_WORDS=" ".join(words),
                    COMP_CWORD=str(len(words) - 1), **env),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [tuple(item.split(",", 1)) for item in proc.stdout.splitlines() if item]  # type: ignore[misc]


def values(items: list[tuple[str, str]]) -> list[str]:
    return [value for _, value in items]


def write_blueprint(folder: Path, text: str, scripts: dict[str, str]) -> Path:
    (folder / "scripts").mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        (folder / "scripts" / name).write_text(body)
    path = folder / "blueprint.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose ./.orch holds the deployment 'chatty' (noisy, then quiet)."""
    root = tmp_path_factory.mktemp("chatty")
    blueprint = write_blueprint(
        root, BLUEPRINT, {"noisy.sh": NOISY, "quiet.sh": "#!/bin/sh\necho quiet one\n"}
    )
    result = orch("deploy", blueprint, cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def make_state(folder: Path, **deployments: list[str]) -> None:
    """A state folder with these deployments and their instances (no operations)."""
    with Store.open(folder) as store:
        for name, instances in deployments.items():
            store.create_deployment(name, "bp.yaml", {}, {})
            store.save_instances(name, [InstanceRow(name, i, i.split("/")[0]) for i in instances])


# ------------------------------------------------------------------------------ completion


def test_completion_offers_a_commands_options(tmp_path: Path) -> None:
    assert values(complete("orch deploy --wo", tmp_path)) == ["--workers"]
    assert "--catalog" in values(complete("orch plan --", tmp_path))
    assert "--tail" in values(complete("orch logs x --", tmp_path))


def test_completion_of_command_names_imports_no_command(tmp_path: Path) -> None:
    assert values(complete("orch de", tmp_path)) == ["deploy"]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orch"], capture_output=True, text=True,
        env=env_for(_ORCH_COMPLETE="bash_complete", COMP_WORDS="orch ", COMP_CWORD="1"),
        timeout=60, check=False,
    )  # fmt: skip
    assert "plain,validate" in proc.stdout.splitlines()
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "orch.cli.main" in imported
    assert not [m for m in imported if m in ("orch.cli.deploy", "orch.cli.validate")]


def test_completion_of_files(tmp_path: Path) -> None:
    assert complete("orch validate bl", tmp_path) == [("file", "bl")]
    assert complete("orch deploy x.yaml -i in", tmp_path) == [("file", "in")]
    assert complete("orch deploy x.yaml -i name=", tmp_path) == []
    assert complete("orch status x --state-dir st", tmp_path) == [("dir", "st")]


def test_completion_of_deployment_names_from_the_state(tmp_path: Path) -> None:
    make_state(tmp_path / ".orch", alpha=[], beta=[], alps=[])
    assert values(complete("orch status ", tmp_path)) == ["alpha", "alps", "beta"]
    assert values(complete("orch undeploy al", tmp_path)) == ["alpha", "alps"]
    assert values(complete("orch run wf -n b", tmp_path)) == ["beta"]
    for line in ("orch outputs ", "orch logs ", "orch cancel ", "orch deploy bp.yaml -n "):
        assert values(complete(line, tmp_path)) == ["alpha", "alps", "beta"], line
    # the state folder the command would read: --state-dir, else ORCH_STATE_DIR
    make_state(tmp_path / "other", gamma=[])
    assert values(complete("orch status --state-dir other ", tmp_path)) == ["gamma"]
    assert values(complete("orch status ", tmp_path, ORCH_STATE_DIR="other")) == ["gamma"]


def test_completion_of_node_names_for_logs(tmp_path: Path) -> None:
    make_state(tmp_path / ".orch", app=["web/0", "web/1", "db/0"])
    assert values(complete("orch logs app --node ", tmp_path)) == [
        "db", "web", "db/0", "web/0", "web/1"]  # fmt: skip
    assert values(complete("orch logs app --node web --node w", tmp_path)) == ["web/0", "web/1"]


def test_completion_never_creates_a_state_folder(tmp_path: Path) -> None:
    assert complete("orch status ", tmp_path) == []
    assert complete("orch logs x --node ", tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_completion_of_site_names(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(
        "sites:\n  hpc1: {host: login1.example.org}\n  hpc2: {host: login2.example.org}\n"
        "  cloud: {host: c.example.org}\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    assert values(complete("orch sites check ", tmp_path, HOME=str(home))) == [
        "hpc1", "hpc2", "cloud"]  # fmt: skip
    assert values(complete("orch sites check hpc1 h", tmp_path, HOME=str(home))) == ["hpc2"]
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("sites:\n  far: {host: far.example.org}\n")
    assert values(complete(f"orch sites check --sites {elsewhere} ", tmp_path,
                           HOME=str(home))) == ["far"]  # fmt: skip
    assert values(complete("orch sites check ", tmp_path, HOME=str(home),
                           ORCH_SITES=str(elsewhere))) == ["far"]  # fmt: skip


# ------------------------------------------------------------------------------ typos, list


def test_a_mistyped_command_names_the_nearest(tmp_path: Path) -> None:
    result = orch("deplyo", "bp.yaml", cwd=tmp_path)
    assert result.returncode == exitcodes.USAGE
    assert "No such command 'deplyo'. Did you mean 'deploy'?" in result.stderr
    assert "Did you mean 'status'?" in orch("stauts", cwd=tmp_path).stderr
    assert "Did you mean 'validate'?" in orch("val", cwd=tmp_path).stderr
    nothing = orch("frobnicate", cwd=tmp_path)
    assert nothing.returncode == exitcodes.USAGE
    assert "No such command 'frobnicate'." in nothing.stderr
    assert "Did you mean" not in nothing.stderr


def test_list_without_state_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    result = orch("list", cwd=tmp_path)
    assert result.returncode == exitcodes.OK
    assert result.stdout == ""
    assert f"no deployments in {tmp_path / '.orch'}" in result.stderr
    assert "--state-dir" in result.stderr and "ORCH_STATE_DIR" in result.stderr
    as_json = orch("list", "--format", "json", cwd=tmp_path, ORCH_STATE_DIR="elsewhere")
    assert as_json.returncode == exitcodes.OK
    assert json.loads(as_json.stdout) == []
    assert f"no deployments in {tmp_path / 'elsewhere'}" in as_json.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ options


def test_plan_and_graph_take_catalog_folders(tmp_path: Path) -> None:
    catalog = tmp_path / "types"
    catalog.mkdir()
    (catalog / "lib.yaml").write_text(
        HEADER + "metadata:\n  template_name: lib\n  template_version: 1.0.0\n"
        "node_types:\n  lib.Node:\n    derived_from: tosca.nodes.Root\n"
    )
    blueprint = tmp_path / "user.yaml"
    blueprint.write_text(HEADER + "imports:\n  - lib:1.0.0\ntopology_template:\n"
                         "  node_templates:\n    n: {type: lib.Node}\n")  # fmt: skip
    assert orch("plan", blueprint).returncode == exitcodes.FINDINGS
    planned = orch("plan", blueprint, "--catalog", catalog)
    assert planned.returncode == exitcodes.OK, planned.stderr
    assert "n/0" in planned.stdout
    drawn = orch("graph", blueprint, "--catalog", catalog, "-f", "mermaid")
    assert drawn.returncode == exitcodes.OK, drawn.stderr
    assert drawn.stdout.startswith("flowchart TD")
    missing = orch("plan", blueprint, "--catalog", tmp_path / "nope")
    assert missing.returncode == exitcodes.CONFIG
    assert "catalog folder not found" in missing.stderr


@pytest.mark.parametrize(
    ("command", "useless"),
    [
        ("cancel", ["--fail-fast", "--force-rebuild", "--cancel-jobs", "--poll-interval"]),
        ("undeploy", ["--force-rebuild", "--cancel-jobs", "--poll-interval"]),
    ],
)
def test_commands_offer_no_option_they_ignore(
    command: str, useless: list[str], tmp_path: Path
) -> None:
    shown = orch(command, "--help").stdout
    for option in useless:
        assert option not in shown
        refused = orch(command, "x", option, cwd=tmp_path)
        assert refused.returncode == exitcodes.USAGE
        assert f"No such option '{option}'" in refused.stderr
    for option in ("--workers", "--timeout", "--known-hosts", "--format", "--state-dir"):
        assert option in shown


def test_deploy_and_run_keep_every_engine_option() -> None:
    options = [
        "--workers",
        "--fail-fast",
        "--timeout",
        "--known-hosts",
        "--accept-new-host-keys",
        "--poll-interval",
        "--cancel-jobs",
        "--force-rebuild",
        "--format",
        "--state-dir",
    ]
    for command in ("deploy", "run"):
        shown = orch(command, "--help").stdout
        assert [o for o in options if o not in shown] == [], command
    assert "--fail-fast" in orch("undeploy", "--help").stdout


# ------------------------------------------------------------------------------ orch logs


def test_logs_json_one_object_per_record(deployed: Path) -> None:
    result = orch("logs", "chatty", "--format", "json", cwd=deployed)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["version"] for r in records} == {1}
    operations = [r for r in records if r["kind"] == "operation"]
    assert [(o["instance"], o["operation"], o["status"]) for o in operations] == [
        ("noisy/0", "Standard.create", "ok"), ("quiet/0", "Standard.create", "ok")]  # fmt: skip
    lines = [r for r in records if r["kind"] == "line"]
    noisy = operations[0]["id"]
    assert lines[0] == {"version": 1, "kind": "line", "operation_id": noisy,
                        "instance": "noisy/0", "node": "noisy", "operation": "Standard.create",
                        "stream": "stdout", "text": "line 1"}  # fmt: skip
    assert {"stream": "stderr", "text": "to stderr"}.items() <= lines[6].items()
    assert "\x1b]0;pwned\x07" in lines[5]["text"]  # the data as it is; JSON escapes it


def test_logs_node_filter_and_tail(deployed: Path) -> None:
    only = orch("logs", "chatty", "--node", "quiet", cwd=deployed)
    assert only.returncode == 0, only.stderr
    assert only.stdout.splitlines()[1:] == ["quiet one"]
    assert only.stdout.startswith("== quiet/0 Standard.create on localhost: ok")
    by_instance = orch("logs", "chatty", "--node", "noisy/0", "--node", "quiet", cwd=deployed)
    assert by_instance.stdout.count("== ") == 2
    tail = orch("logs", "chatty", "--node", "noisy", "--tail", "2", cwd=deployed).stdout
    lines = tail.split("\n")
    assert lines[0].startswith("== noisy/0 Standard.create")
    assert lines[1].startswith("title ") and lines[2:] == ["[stderr] to stderr", ""]
    assert orch("logs", "chatty", "--tail", "0", cwd=deployed).stdout.count("\n") == 2
    unknown = orch("logs", "chatty", "--node", "noisey", cwd=deployed)
    assert unknown.returncode == exitcodes.USAGE
    assert "did you mean 'noisy'" in unknown.stderr


def test_logs_to_a_pipe_are_byte_exact(deployed: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "orch", "logs", "chatty"],
                            cwd=deployed, capture_output=True, env=env_for(), timeout=60,
                            check=False)  # fmt: skip
    assert b"title \x1b]0;pwned\x07 clear \x1b[2J back\rspace\x08 end\n" in result.stdout


def on_a_terminal(
    args: list[object], cwd: Path, *, stdout_tty: bool = True, stderr_tty: bool = True
) -> tuple[bytes, int]:
    """Run orch with stdout and/or stderr on a pseudo-terminal; what the terminal received."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "orch", *map(str, args)], cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.DEVNULL,
        stderr=slave if stderr_tty else subprocess.DEVNULL, env=env_for(),
    )  # fmt: skip
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=90)
    finally:
        os.close(master)
    return b"".join(chunks), code


@POSIX
def test_logs_on_a_terminal_escape_control_characters(deployed: Path) -> None:
    shown, code = on_a_terminal(["logs", "chatty"], deployed, stderr_tty=False)
    assert code == 0
    assert b"\x1b" not in shown and b"\x07" not in shown and b"\x08" not in shown
    assert b"title \\x1b]0;pwned\\x07 clear \\x1b[2J back\\x0dspace\\x08 end" in shown
    assert b"line 1\r\nline 2" in shown  # the terminal's own newline translation, nothing else
    as_json, _ = on_a_terminal(["logs", "chatty", "-f", "json"], deployed, stderr_tty=False)
    assert b"\x1b" not in as_json and b"\\u001b]0;pwned\\u0007" in as_json


@POSIX
def test_deploy_progress_on_a_terminal_escapes_a_failing_scripts_output(tmp_path: Path) -> None:
    blueprint = write_blueprint(
        tmp_path,
        FAILING,
        {"broken.sh": "#!/bin/sh\nprintf 'evil \\033]0;pwned\\007 \\033[2J\\n'\nexit 3\n"},
    )
    for quiet in ([], ["-q"]):  # the live view, and plain lines on a terminal
        shown, code = on_a_terminal([*quiet, "deploy", blueprint, "--state-dir",
                                     tmp_path / f"state{len(quiet)}"], tmp_path)  # fmt: skip
        assert code == exitcodes.OPERATION_FAILED, shown
        assert b"\x1b]0;pwned" not in shown and b"\x1b[2J" not in shown
        assert b"evil \\x1b]0;pwned\\x07 \\x1b[2J" in shown, shown


def test_escape_controls_keeps_text_and_tabs() -> None:
    assert escape_controls("a\tb ünïcode →") == "a\tb ünïcode →"
    assert escape_controls("\x1b[31mred\x1b[0m\r\x00\x7f\x9b\u202e") == (
        "\\x1b[31mred\\x1b[0m\\x0d\\x00\\x7f\\x9b\\u202e"
    )


def test_logs_follow_with_a_node_filter_and_tail(tmp_path: Path) -> None:
    """--follow keeps the filter for operations that start later, and --tail for those shown
    at once."""
    with Store.open(tmp_path / ".orch") as store:
        store.create_deployment("d", "bp.yaml", {}, {})
        store.save_instances("d", [InstanceRow("d", i, i[:-2]) for i in ("web/0", "db/0")])
        run = store.begin_run("d", "deploy")

        def start(instance: str, lines: list[str]) -> int:
            op = store.begin_operation(run, "d", f"{instance}:Standard.create", instance[:-2],
                                       instance, "Standard", "create", "localhost")  # fmt: skip
            store.log_path("d", op).write_text("".join(f"out {line}\n" for line in lines))
            store.add_event("d", run, "step-start", step=f"{instance}:Standard.create",
                            data={"operation_id": op})  # fmt: skip
            return op

        def finish(op: int) -> None:
            store.finish_operation(op, status="ok", rc=0, outputs={}, stdout_tail=[],
                                   stderr_tail=[], message="")  # fmt: skip

        first = start("web/0", ["w1", "w2", "w3"])
        rows = store.operations("d")
        records = log_records(store, "d", rows, follow=True, tail=1, interval=0.01,
                              match=lambda op: op.node == "web")  # fmt: skip
        seen = [next(records), next(records)]  # web's header and its last line so far
        with open(store.log_path("d", first), "a") as log:
            log.write("out w4\n")
        start("db/0", ["d1"])
        finish(first)
        store.add_event("d", run, "run-end", data={"status": "ok"})
        store.end_run(run, "ok")
        seen.extend(records)
    texts = [(r.kind, r.op.instance if r.op else None, r.text) for r in seen]
    assert texts == [("operation", "web/0", ""), ("line", "web/0", "w3"),
                     ("line", "web/0", "w4"), ("operation", "web/0", "")]  # fmt: skip
    assert seen[-1].op is not None and seen[-1].op.status == "ok"


# ------------------------------------------------------------------------------ output errors


def test_output_into_a_missing_folder_is_exit_3(tmp_path: Path) -> None:
    blueprint = tmp_path / "bp.yaml"
    blueprint.write_text(CLEAN)
    for command in (["validate", "-f", "json"], ["graph"]):
        target = tmp_path / "missing" / "out.txt"
        result = orch(*command, "-o", target, blueprint)
        assert result.returncode == exitcodes.CONFIG, result.stderr
        assert result.stderr == f"orch: cannot write {target}: no folder {target.parent}\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_on_a_full_disk_is_exit_3(tmp_path: Path) -> None:
    blueprint = tmp_path / "bp.yaml"
    blueprint.write_text(CLEAN)
    make_state(tmp_path / ".orch", alpha=[])
    for command in (["validate", blueprint], ["list"], ["schema"], ["plan", blueprint]):
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "orch", *map(str, command)],
                                    cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True,
                                    env=env_for(), timeout=60, check=False)  # fmt: skip
        assert result.returncode == exitcodes.CONFIG, (command, result.stderr)
        assert result.stderr == ("orch: cannot write standard output: No space left on device\n"), (
            command
        )


# ------------------------------------------------------------------------------ Ctrl-C


def _console_script() -> Path:
    script = Path(sys.executable).parent / "orch"
    if not script.exists():
        pytest.skip("the orch console script is not installed beside this python")
    return script


FRAME = re.compile(r'^  File "([^"]+)"', re.MULTILINE)


def _in_orch_or_click(traceback: str) -> list[str]:
    """The frames of a traceback in orch's or click's code, but for the two modules that run
    before orch installs its SIGINT handler (``orch`` and ``orch.cli``)."""
    import click

    import orch as package

    top = Path(package.__file__).parent
    roots = [str(top), str(Path(click.__file__).parent)]
    before = {str(top / "__init__.py"), str(top / "cli" / "__init__.py")}
    return [
        f
        for f in FRAME.findall(traceback)
        if any(f.startswith(root + os.sep) for root in roots) and f not in before
    ]


@POSIX
def test_ctrl_c_at_start_up_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT at 0 to 150 ms after the start of `orch --help`, `orch validate`, `orch deploy`:
    exit 130 (or 0: it had finished), never a traceback from orch's or click's code. Python's
    own start-up (the interpreter, site, .pth files) runs before any code of orch and cannot
    be protected: an interrupt there is Python's, and counted apart."""
    script = _console_script()
    blueprint = write_blueprint(
        tmp_path, BLUEPRINT, {"noisy.sh": NOISY, "quiet.sh": "#!/bin/sh\nsleep 0.2\n"}
    )
    commands = [["--help"], ["validate", blueprint], ["deploy", blueprint]]
    outcomes: Counter[str] = Counter()
    for delay in range(0, 151, 10):
        for command in commands:
            process = subprocess.Popen([str(script), *map(str, command)], cwd=tmp_path,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       env=env_for())  # fmt: skip
            time.sleep(delay / 1000)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=90)
            stderr = err.decode("utf-8", "replace")
            if "Traceback" in stderr:
                assert _in_orch_or_click(stderr) == [], (delay, command, stderr)
                outcomes["in Python's start-up"] += 1
                continue
            assert process.returncode in (0, exitcodes.INTERRUPTED, -signal.SIGINT), (
                delay,
                command,
                process.returncode,
                stderr,
            )
            outcomes[str(process.returncode)] += 1
    print(dict(outcomes))
    assert outcomes[str(exitcodes.INTERRUPTED)] > 0


def test_a_ctrl_c_wrapped_by_python_is_still_an_interruption() -> None:
    """A KeyboardInterrupt that struck while a module was imported can reach orch wrapped in
    another exception (a RuntimeError of dataclass creation): exit 130, not 'internal error'."""
    from orch.cli.main import _interrupted

    def wrapped(how: str) -> BaseException:
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as inner:
                if how == "cause":
                    raise RuntimeError("while creating a dataclass") from inner
                raise RuntimeError("while creating a dataclass")  # noqa: B904 - its context
        except RuntimeError as outer:
            return outer
        raise AssertionError("unreachable")

    assert _interrupted(wrapped("cause")) and _interrupted(wrapped("context"))
    assert not _interrupted(RuntimeError("a real bug"))
