"""Secrets never leak from executors: the shared masker (whole occurrences, short secrets named
in a warning instead of garbled), and the files that hold the inputs on a site or on this
machine (private folders and modes, removed whatever the outcome), with real runs: the script
executor on this machine and over SSH to the test sshd as its unprivileged user, playbooks
with ansible-runner's artifacts, Slurm batch scripts on the loopback Slurm site."""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.executors.masking import (
    ANYWHERE_LENGTH,
    MASK,
    MIN_SECRET_LENGTH,
    Masker,
    short_secret_warnings,
)
from orch.executors.script import ENV_FILE, ScriptExecutor
from orch.transport.local import LocalTransport

NOBODY = 65534

# -- the masker ---------------------------------------------------------------------------


def test_short_secrets_are_left_alone_and_named_in_a_warning():
    mask = Masker(("x", "42", "abc"))
    text = "exit 42: xylophone box abc"
    assert mask(text) == text, "masking 1-3 characters garbles every message"
    assert mask.skipped == ("42", "abc", "x")
    warnings = short_secret_warnings(
        {"pin": "x", "token": "long-enough", "empty": "", "other": "ab"},
        ["pin", "token", "empty", "unknown"],
    )
    assert len(warnings) == 1
    assert "'pin'" in warnings[0] and f"shorter than {MIN_SECRET_LENGTH}" in warnings[0]
    assert "'x'" not in warnings[0], "the warning names the input, never the value"


def test_whole_occurrences_only():
    mask = Masker(("abcd", "p@ss!", "$1.50"))
    assert mask("xabcdx abcdx xabcd") == "xabcdx abcdx xabcd", "glued to word characters"
    assert mask("abcd, (abcd) 'abcd' abcd.") == f"{MASK}, ({MASK}) '{MASK}' {MASK}."
    assert mask("user:p@ss!@host") == f"user:{MASK}@host"
    assert mask("=p@ss!x") == f"={MASK}x", "'!' is no word character: nothing to glue to"
    assert mask("xp@ss!") == "xp@ss!"
    assert mask("price $1.50, not $1.505") == f"price {MASK}, not $1.505"
    long = "T" * ANYWHERE_LENGTH
    assert Masker((long,))(f"user_{long}_x") == f"user_{MASK}_x", "long ones anywhere"


def test_regex_metacharacters_and_longest_first():
    mask = Masker(("a.b*c+d", "(x|y)[z]", "a.b*c+d/e?f", "\\1\\g<0>$x"))
    assert mask("aXbbbcd a.b*c+d") == f"aXbbbcd {MASK}"
    assert mask("a.b*c+dd a.b*c+d_") == "a.b*c+dd a.b*c+d_", "glued: another word"
    assert mask("[\\1\\g<0>$x]") == f"[{MASK}]"
    assert mask("x (x|y)[z] y z") == f"x {MASK} y z"
    assert mask("path a.b*c+d/e?f") == f"path {MASK}", "the longer secret wins, whole"
    assert mask("\\1 \\g<0>") == "\\1 \\g<0>"


def test_multi_line_secret_is_masked_whole_and_line_by_line():
    key = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\nabc\n-----END KEY-----\n"
    mask = Masker((key,))
    assert mask(f"key:\n{key}done") == f"key:\n{MASK}done"
    # output is masked line by line: each line of the key on its own
    assert mask("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY") == MASK
    assert mask("-----END KEY-----") == MASK
    assert mask("abc") == "abc", "a line too short to mask alone"


def test_json_escaped_forms():
    secret = 'pa"ss\\wörd-42'
    mask = Masker((secret,))
    once = json.dumps(secret)[1:-1]
    twice = json.dumps(json.dumps(secret)[1:-1])[1:-1]  # JSON text inside JSON
    ascii_once = json.dumps(secret, ensure_ascii=True)[1:-1]
    for form in (secret, once, twice, ascii_once):
        assert mask(f'{{"msg": "the token is {form}"}}') == f'{{"msg": "the token is {MASK}"}}'


def test_result_and_sink_are_masked():
    mask = Masker(("hunter22",))
    result = mask.result(OperationResult(
        "failed", rc=1, outputs={"url": "https://u:hunter22@h", "n": 3},  # type: ignore[dict-item]
        stdout_tail=["hunter22"], stderr_tail=["x hunter22"], message="bad hunter22",
    ))  # fmt: skip
    assert result.outputs == {"url": f"https://u:{MASK}@h", "n": 3}
    assert (result.stdout_tail, result.stderr_tail) == ([MASK], [f"x {MASK}"])
    assert result.message == f"bad {MASK}" and result.rc == 1
    lines: list[tuple[str, str]] = []
    mask.sink(lambda stream, line: lines.append((stream, line)))("stdout", "hunter22!")
    assert lines == [("stdout", f"{MASK}!")]


# -- the script executor: folders, modes, leftovers -----------------------------------------


class Files:
    """Looks at files where the operations ran, as the user they ran as."""

    def __init__(self, transport):
        self.transport = transport

    def mode(self, path: str) -> int | None:
        result = self.transport.run(f"stat -c %a {path} 2>/dev/null || echo none")
        text = result.stdout.strip()
        return None if text == "none" else int(text, 8)

    def listing(self, path: str) -> list[str]:
        return self.transport.run(f"ls -A {path}").stdout.split()

    def write(self, path: str, text: str, mode: int) -> None:
        self.transport.run(f"mkdir -p $(dirname {path}) && cat > {path} && chmod {mode:o} {path}",
                           stdin=text.encode())


class Site:
    """Runs scripts with the script executor on a host, each deployment its own."""

    def __init__(self, host: Host, provider, folder: Path, work_root: str):
        self.host, self.provider, self.folder, self.work_root = host, provider, folder, work_root
        self.executor = ScriptExecutor()
        self.deployment = f"sec-{secrets.token_hex(4)}"
        self.logs: list[tuple[str, str]] = []
        self.files = Files(provider(host))

    @property
    def root(self) -> str:
        if self.work_root.startswith("/"):
            return self.work_root
        return posixpath.join(self.provider(self.host).home(), self.work_root)

    @property
    def deployment_dir(self) -> str:
        return f"{self.root}/{self.deployment}"

    def run(self, script: str, *, cancel: threading.Event | None = None,
            **kwargs) -> OperationResult:
        path = self.folder / "blueprint" / "op.sh"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
        task = Task(deployment=self.deployment, node="web", instance="web/0",
                    interface="Standard", operation="create",
                    implementation=Artifact("op.sh", path), host=self.host, **kwargs)
        context = RunContext(transport=self.provider, cancel=cancel or threading.Event(),
                             log=lambda stream, line: self.logs.append((stream, line)),
                             work_root=self.work_root)
        return self.executor.run(task, context)

    def kept_dir(self, result: OperationResult) -> str:
        match = re.search(r"work dir kept: (.+)\)$", result.message)
        if match:
            return match.group(1)
        [name] = self.files.listing(self.deployment_dir)
        return f"{self.deployment_dir}/{name}"


@pytest.fixture(params=["local", "ssh"])
def site(request, tmp_path) -> Iterator[Site]:
    """On this machine (under tmp_path), or over SSH as the unprivileged user with the default
    work root in its home (which is open to others: 0755); its deployment folder is removed
    afterwards."""
    if request.param == "local":
        made = Site(Host("localhost"), lambda host: LocalTransport(), tmp_path,
                    str(tmp_path / "work"))
    else:
        pool = request.getfixturevalue("ssh_pool")
        made = Site(request.getfixturevalue("ssh_user_host"), pool.get, tmp_path, ".orch-work")
    yield made
    made.files.transport.run(f"rm -rf {made.deployment_dir}")


def _readable_by_nobody(path: str) -> bool:
    """Whether another unprivileged user of the machine can list ``path``."""
    probe = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "ls", path],
        capture_output=True,
    )
    return probe.returncode == 0


def test_while_the_script_runs_its_folders_are_private_and_no_environment_is_on_disk(site):
    result = site.run(
        """
        echo "umask $(umask)"
        stat -c '%a' . "$(dirname "$PWD")" "$ORCH_OUTPUTS"
        ls -A
        touch mine && stat -c '%a' mine
        """,
        inputs={"TOKEN": "s3cr3t-value"}, secret_values=("s3cr3t-value",),
    )
    assert result.ok, (result.message, result.stderr_tail)
    umask, work, deployment, outputs, *listing, mine = result.stdout_tail
    assert (work, deployment, outputs) == ("700", "700", "600")
    assert ENV_FILE not in listing, "the environment before the script goes to stdout"
    assert umask.endswith("022") and mine == "644", "the script keeps the user's umask"
    assert site.files.listing(site.deployment_dir) == [], "success leaves nothing"


def test_after_a_failure_the_work_dir_is_kept_without_the_inputs(site):
    result = site.run('echo "KEY=$TOKEN" >> "$ORCH_OUTPUTS"; export OTHER=$TOKEN; exit 3',
                      inputs={"TOKEN": "s3cr3t-value"}, secret_values=("s3cr3t-value",))
    assert result.status == "failed" and result.rc == 3
    kept = site.kept_dir(result)
    assert site.files.listing(kept) == ["op.sh"], "no .orch_env, no .orch_outputs"
    assert site.files.mode(kept) == 0o700
    assert site.files.mode(site.deployment_dir) == 0o700
    if site.host.user:  # over SSH, in a home other users can enter
        assert not _readable_by_nobody(kept)
        assert not _readable_by_nobody(site.deployment_dir)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_after_a_kill_the_environment_files_are_removed(site, how):
    cancel = threading.Event()
    if how == "cancel":
        threading.Timer(1.0, cancel.set).start()
    result = site.run('echo "KEY=$TOKEN" >> "$ORCH_OUTPUTS"; export T=$TOKEN; sleep 30',
                      timeout=1.0 if how == "timeout" else 30, cancel=cancel,
                      inputs={"TOKEN": "s3cr3t-value"}, secret_values=("s3cr3t-value",))
    assert result.status == ("timeout" if how == "timeout" else "cancelled")
    kept = site.kept_dir(result)
    assert site.files.listing(kept) == ["op.sh"]


def test_a_new_work_root_is_private(site):
    """Made by the artifact cache (over SSH) or in Python (on this machine)."""
    base = f"{site.root}-fresh-{secrets.token_hex(4)}"
    fresh = Site(site.host, site.provider, site.folder, f"{base}/work")
    try:
        assert fresh.run("true").ok
        assert fresh.files.mode(f"{base}/work") == 0o700
        assert fresh.files.mode(fresh.deployment_dir) == 0o700
    finally:
        fresh.files.transport.run(f"rm -rf {base}")


def test_a_deployment_folder_left_open_by_an_older_orch_is_closed(site):
    old = f"{site.deployment_dir}/web_0-Standard-create-00000000"
    site.files.write(f"{old}/.orch_env", "TOKEN=s3cr3t-value\0", 0o644)
    site.files.transport.run(f"chmod 755 {site.deployment_dir} {old}")
    assert site.run("true").ok
    assert site.files.mode(site.deployment_dir) == 0o700
    if site.host.user:
        assert not _readable_by_nobody(f"{old}/.orch_env")


def test_script_logs_mask_each_line_of_a_multi_line_secret_and_do_not_garble(site):
    key = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n-----END KEY-----"
    result = site.run('printf "%s\\n" "$KEY"; echo "exit box"; exit 1',
                      inputs={"KEY": key}, secret_values=(key, "x"))
    assert result.status == "failed"
    assert [line for _, line in site.logs] == [MASK, MASK, MASK, "exit box"]
    assert result.stdout_tail == [MASK, MASK, MASK, "exit box"]


# -- Ansible: JSON-escaped secrets and the kept private data dir -----------------------------


def test_ansible_records_keep_no_secret(tmp_path, monkeypatch):
    pytest.importorskip("ansible_runner")
    from orch.executors.ansible import AnsibleExecutor

    monkeypatch.setenv("ORCH_ANSIBLE_FORK_SERVER", "0")  # ansible-runner's own artifacts
    secret = 'pa"ss\\wörd-42'
    playbook = tmp_path / "op.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - debug:\n        msg: 'the token is {{ TOKEN }} and the pin {{ PIN }}'\n"
        "    - set_fact:\n        shown: '{{ TOKEN | to_json }}'\n"
        "    - fail:\n        msg: 'bad token {{ TOKEN }}'\n"
    )
    records = tmp_path / "records"
    logs: list[str] = []
    task = Task(deployment="dep", node="web", instance="web/0", interface="Standard",
                operation="create", implementation=Artifact("op.yml", playbook),
                inputs={"TOKEN": secret, "PIN": "007"}, secret_values=(secret, "007"))
    context = RunContext(transport=lambda host: pytest.fail("no transport"),
                         cancel=threading.Event(), log=lambda s, line: logs.append(line),
                         artifacts_dir=str(records))
    result = AnsibleExecutor().run(task, context)
    assert result.status == "failed"
    assert result.message == f"task 'fail' failed on localhost: bad token {MASK}"
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret))[1:-1],
             json.dumps(secret, ensure_ascii=True)[1:-1]}
    kept = {str(p): p.read_text(errors="replace") for p in records.rglob("*")
            if p.is_file() and "project" not in p.relative_to(records).parts}
    leaks = {path for path, text in kept.items() if any(f in text for f in forms)}
    assert not leaks
    assert not [line for line in logs if any(f in line for f in forms)]
    extravars = json.loads((records / "env" / "extravars").read_text())
    assert extravars["TOKEN"] == MASK and extravars["PIN"] == MASK, "short ones too, whole"
    assert stat.S_IMODE(records.stat().st_mode) == 0o700


# -- Slurm: the batch script and the job's output --------------------------------------------


def test_slurm_batch_script_is_private_and_job_output_masked(slurm_site):
    from orch.engine.jobs import JOB_ID
    from orch.executors.slurm import SlurmExecutor
    from orch.transport.ssh import TransportPool

    secret = "s3cr3t-token-value"
    pool = TransportPool(slurm_site.policy, connect_timeout=5)
    host = slurm_site.user_host
    transport = pool.get(host)
    folder = f"{transport.home()}/orch-secrets-{secrets.token_hex(4)}"
    transport.run(f"mkdir -p {folder} && touch {folder}/job.sbatch && chmod 644 {folder}/*")
    executor = SlurmExecutor()
    base = dict(deployment="dep", node="job", instance="job/0", interface="tosca.interfaces."
                "node.lifecycle.Runnable", implementation=Artifact("slurm", Path("slurm")),
                host=host, secret_values=(secret,),
                properties={"command": 'echo "token: $TOKEN"', "environment": {"TOKEN": secret},
                            "workdir": folder, "partition": "debug"})  # fmt: skip
    logs: list[str] = []
    # what the engine does for every executor (its preamble): mask what it logs and returns
    from orch.executors.masking import Masker

    mask = Masker((secret,))
    context = RunContext(transport=pool.get, cancel=threading.Event(),
                         log=mask.sink(lambda s, line: logs.append(line)))
    run = executor.run

    class executor:
        @staticmethod
        def run(task: Task, context: RunContext):  # type: ignore[no-untyped-def]
            return mask.result(run(task, context))

    try:
        submitted = executor.run(Task(operation="submit", **base), context)
        assert submitted.ok, submitted.message
        assert Files(transport).mode(f"{folder}/job.sbatch") == 0o600
        job_id = submitted.outputs[JOB_ID]
        deadline = time.monotonic() + 60
        watch = Task(operation="run", environment={JOB_ID: job_id}, **base)
        watched = executor.run(watch, context)
        while "elapsed" not in watched.outputs and time.monotonic() < deadline:
            time.sleep(0.5)
            watched = executor.run(watch, context)
        assert f"token: {MASK}" in watched.stdout_tail, watched
        assert not [line for line in logs if secret in line]
    finally:
        transport.run(f"rm -rf {folder}")
        pool.close_all()


# -- PyCOMPSs: nothing secret on a command line -----------------------------------------------


def test_pycompss_environment_stays_off_the_command_line():
    from orch.executors.pycompss import PyCOMPSsExecutor
    from orch.executors.slurm_script import JobFiles

    secret = "s3cr3t-token-value"
    task = Task(deployment="dep", node="wf", instance="wf/0", interface="Runnable",
                operation="submit", implementation=Artifact("pycompss", Path("pycompss")),
                properties={"app": "/apps/main.py", "environment": {"TOKEN": secret}})
    command, stdin = PyCOMPSsExecutor().submission(task, JobFiles("/w", "compss"))
    assert secret not in command, "other users of the login node read command lines (ps)"
    assert stdin is not None and secret.encode() in stdin
    # the shell that reads it exports the environment as before
    ran = LocalTransport().run(command, stdin=stdin + b'; printf "%s\\n" "$TOKEN"')
    assert ran.stdout.splitlines() == [secret]
