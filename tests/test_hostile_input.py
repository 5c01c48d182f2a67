"""Hostile and broken input to every reader of files (blueprints, imports, CSARs, inputs,
sites.yaml, key files): bounded in time and memory, confined to the blueprint's root, never
echoing a file that is not TOSCA, and always a diagnostic, never a hang or exit 70.

The command-line cases run orch as a process under a 2 GiB address-space limit and a timeout,
so that a regression fails the test instead of eating the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orch.sites.config import SitesError, load_sites
from orch.tosca.diagnostics import Severity
from orch.tosca.loader import (
    MAX_ALIASES,
    MAX_INT_DIGITS,
    FileRefused,
    YamlError,
    load_bytes,
    read_regular,
    yaml_error_diagnostics,
)
from orch.tosca.validator import validate

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
MEMORY_LIMIT = 2 << 30
SECRET = "hunter2-SECRET-line"


# ------------------------------------------------------------------------------ helpers
def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


class Run:
    """One finished orch process: its exit status, output and wall time."""

    def __init__(self, proc: subprocess.CompletedProcess[str], elapsed: float):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return f"exit {self.code} in {self.elapsed:.2f}s\n{self.stdout}\n{self.stderr}"


def orch(*args: object, cwd: Path, timeout: float = 30, **env: str) -> Run:
    """orch as a user runs it, under a memory limit; its own state and data folders."""
    full = {k: v for k, v in os.environ.items() if k not in ("ORCH_CATALOG", "ORCH_SITES")}
    full.update(NO_COLOR="1", ORCH_STATE_DIR=str(cwd / ".orch"),
                ORCH_DATA_HOME=str(cwd / ".orch-data"), **env)  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "orch", *map(str, args)], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_limited)
    return Run(proc, time.monotonic() - start)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), "utf-8")
    return path


def bomb(levels: int = 9, width: int = 9, indent: str = "") -> tuple[str, int, int]:
    """A 'billion laughs' mapping: ``width**levels`` nodes once expanded. Returns the text
    and the line and column of the alias that crosses orch's bound."""
    lines = [f"{indent}a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"{indent}a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width)
                     + "]")  # fmt: skip
    # Aliases of a0..a5 add 672,588 nodes; the first alias of a6 adds a5's 597,871 nodes and
    # crosses the bound of 1,000,000.
    text = "\n".join(lines) + "\n"
    return text, 7, len(indent) + len("a6: &a6 [") + 1


def rules(run: Run) -> set[str]:
    found = set()
    for line in run.output.splitlines():
        if line.rstrip().endswith("]") and "[" in line:
            found.add(line.rstrip()[line.rstrip().rindex("[") + 1 : -1])
    return found


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    yield path


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that costs no disk."""
    with open(path, "wb") as stream:
        stream.truncate(size)
    return path


INPUT_BLUEPRINT = HEADER + """\
topology_template:
  inputs:
    n:
      type: integer
      default: 1
  node_templates:
    here:
      type: tosca.nodes.Root
"""


@pytest.fixture
def blueprint(tmp_path: Path) -> Path:
    return write(tmp_path / "bp" / "blueprint.yaml", INPUT_BLUEPRINT)


# ------------------------------------------------------------------------------ read_regular
def test_read_regular_refuses_a_fifo_without_blocking(fifo: Path) -> None:
    start = time.monotonic()
    with pytest.raises(FileRefused, match="named pipe"):
        read_regular(fifo, 100)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("path, kind", [("/dev/zero", "character device"), ("/", "directory")])
def test_read_regular_refuses_what_is_not_a_regular_file(path: str, kind: str) -> None:
    with pytest.raises(FileRefused, match=kind):
        read_regular(path, 100)


def test_read_regular_caps_the_size(tmp_path: Path) -> None:
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 1000)
    assert read_regular(exact, 1000) == b"x" * 1000
    with pytest.raises(FileRefused, match="larger than 999 bytes, the most orch reads for a key"):
        read_regular(exact, 999, "a key")
    assert read_regular(exact, 10, head=True) == b"x" * 10


def test_validate_refuses_devices_and_fifos_at_once(tmp_path: Path, fifo: Path) -> None:
    run = orch("validate", "/dev/zero", fifo, cwd=tmp_path, timeout=20)
    assert run.code == 1, run
    assert f"{fifo}: error: cannot read '{fifo}': it is a named pipe (FIFO)" in run.stdout
    assert "/dev/zero: error: cannot read '/dev/zero': it is a character device" in run.stdout
    assert rules(run) == {"document.read"}


def test_a_blueprint_past_the_cap_is_refused_unread(tmp_path: Path) -> None:
    big = sparse(tmp_path / "big.yaml", 64 * 1024 * 1024 + 1)
    run = orch("validate", big, cwd=tmp_path)
    assert run.code == 1, run
    assert "larger than 64 MiB, the most orch reads for a blueprint file" in run.stdout


def test_an_import_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "types.yaml")
    main = write(tmp_path / "main.yaml", HEADER + "imports: [types.yaml]\n")
    run = orch("validate", main, cwd=tmp_path, timeout=20)
    assert run.code == 1, run
    assert "main.yaml:2:11: error: cannot read" in run.stdout
    assert "it is a named pipe (FIFO)" in run.stdout


def test_deploy_inputs_from_devices_fifos_and_oversized_files(
    tmp_path: Path, blueprint: Path, fifo: Path
) -> None:
    big = sparse(tmp_path / "big.yaml", 16 * 1024 * 1024 + 1)
    run = orch("deploy", blueprint, "-i", "/dev/zero", "-i", fifo, "-i", big, cwd=tmp_path,
               timeout=30)  # fmt: skip
    assert run.code == 1, run
    assert "cannot read inputs file '/dev/zero': it is a character device" in run.stderr
    assert f"cannot read inputs file '{fifo}': it is a named pipe (FIFO)" in run.stderr
    assert "larger than 16 MiB, the most orch reads for an inputs file" in run.stderr


def test_sites_yaml_past_the_cap_is_refused_unread(tmp_path: Path) -> None:
    big = sparse(tmp_path / "sites.yaml", 4 * 1024 * 1024 + 1)
    run = orch("sites", "list", "--sites", big, cwd=tmp_path)
    assert run.code == 3, run
    assert "it is larger than 4 MiB, the most orch reads for sites.yaml" in run.stderr


def test_credentials_add_refuses_devices_fifos_and_oversized_files(
    tmp_path: Path, fifo: Path
) -> None:
    big = sparse(tmp_path / "id_big", 1024 * 1024 + 1)
    for path, why in (("/dev/zero", "it is a character device"),
                      (fifo, "it is a named pipe (FIFO)"),
                      (big, "it is larger than 1 MiB, the most orch reads for a private key file")):
        run = orch("credentials", "add", path, cwd=tmp_path, timeout=20)
        assert run.code == 3, run
        assert f"orch: cannot read {path}: {why}" in run.stderr


def test_credentials_add_does_not_block_on_a_fifo_beside_the_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "id_ed25519"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))  # fmt: skip
    key.chmod(0o600)
    os.mkfifo(tmp_path / "id_ed25519.pub")
    run = orch("credentials", "add", key, cwd=tmp_path, timeout=20)
    assert run.code == 0, run
    assert run.stdout.strip()  # the token


# ------------------------------------------------------------------------------ aliases
BOMB, BOMB_LINE, BOMB_COL = bomb()


def _inputs_bomb(tmp_path: Path) -> tuple[list[str], str, int]:
    path = write(tmp_path / "inputs.yaml", "n: 1\n" + BOMB)
    return ["-i", str(path)], str(path), BOMB_LINE + 1


def _inline_bomb(tmp_path: Path) -> tuple[list[str], str, int]:
    flow = "{" + ", ".join(line.strip() for line in BOMB.splitlines()) + "}"
    return ["-i", f"n={flow}"], "<-i #1>", 1


@pytest.mark.parametrize("reader", ["blueprint", "inputs file", "inline -i", "sites.yaml"])
def test_an_alias_bomb_is_refused_at_its_alias_by_every_reader(
    tmp_path: Path, blueprint: Path, reader: str
) -> None:
    if reader == "blueprint":
        path = write(tmp_path / "bomb.yaml", HEADER + "dsl_definitions:\n" + bomb(indent="  ")[0])
        run = orch("validate", path, cwd=tmp_path)
        where = f"{path}:{BOMB_LINE + 2}:{BOMB_COL + 2}:"
        code = 1
    elif reader == "sites.yaml":
        path = write(tmp_path / "sites.yaml", BOMB + "sites: {}\n")
        run = orch("sites", "list", "--sites", path, cwd=tmp_path)
        where = f"{path}:{BOMB_LINE}:{BOMB_COL}:"
        code = 3
    else:
        maker = _inputs_bomb if reader == "inputs file" else _inline_bomb
        args, source, line = maker(tmp_path)
        run = orch("deploy", blueprint, *args, cwd=tmp_path)
        col = BOMB_COL if reader == "inputs file" else BOMB_COL + len("n: {") + len(
            ", ".join(s.strip() for s in BOMB.splitlines()[: BOMB_LINE - 1])) + 2
        where = f"{source}:{line}:{col}:"
        code = 1
    assert run.code == code, run
    assert f"{where} error: the document holds aliases that expand to more than" in run.output
    assert "[yaml.alias-bomb]" in run.output
    assert run.elapsed < 10, run


def test_too_many_aliases_are_refused_before_expanding() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    start = time.monotonic()
    with pytest.raises(YamlError) as caught:
        load_bytes(text.encode(), "many.yaml")
    assert time.monotonic() - start < 5
    (diagnostic,) = yaml_error_diagnostics(caught.value)
    assert diagnostic.rule == "yaml.alias-bomb"
    assert f"more than {MAX_ALIASES:,} aliases" in diagnostic.message
    assert diagnostic.location.line == 2


def test_shared_anchors_within_the_bounds_still_load() -> None:
    text = (
        "base: &base {cpus: 2, mem: 4 GB}\n"
        "nodes: [" + ", ".join(["*base"] * 1000) + "]\n"
        "merged: {<<: *base, cpus: 4}\n"
        "nested: &n [*base, *base]\n"
        "twice: [*n, *n]\n"
    )
    data = load_bytes(text.encode(), "ok.yaml").data
    assert len(data["nodes"]) == 1000 and data["nodes"][999] == {"cpus": 2, "mem": "4 GB"}
    assert data["merged"] == {"cpus": 4, "mem": "4 GB"}
    assert data["twice"][1][1] == {"cpus": 2, "mem": "4 GB"}


# ------------------------------------------------------------------------------ integers
def _too_large(text: str) -> Any:
    with pytest.raises(YamlError) as caught:
        load_bytes(text.encode(), "int.yaml")
    (diagnostic,) = yaml_error_diagnostics(caught.value)
    assert diagnostic.rule == "yaml.int-too-large"
    return diagnostic


@pytest.mark.parametrize(
    "value",
    ["1" * (MAX_INT_DIGITS + 1), "-" + "9" * 5000, "0x" + "f" * 3600, "!!int " + "1" * 5000],
    ids=["decimal", "negative", "hex", "tagged"],
)
def test_integers_too_large_for_python_are_a_diagnostic(value: str) -> None:
    diagnostic = _too_large(f"a: 1\nbig: {value}\n")
    assert (diagnostic.location.line, diagnostic.location.col) == (2, 6)
    assert diagnostic.severity is Severity.ERROR


def test_the_longest_integer_python_prints_still_loads() -> None:
    data = load_bytes(f"n: {'7' * MAX_INT_DIGITS}\n".encode(), "ok.yaml").data
    assert str(data["n"]) == "7" * MAX_INT_DIGITS


def test_huge_integers_are_diagnostics_on_the_command_line(
    tmp_path: Path, blueprint: Path
) -> None:
    digits = "1" * 5000
    bad = write(tmp_path / "bad.yaml", INPUT_BLUEPRINT.replace("default: 1", f"default: {digits}")
                + "  outputs:\n    v: {value: " + f"1.{digits}" + "}\n")  # fmt: skip
    run = orch("validate", bad, cwd=tmp_path)
    assert run.code == 1, run
    assert f"{bad}:6:16: error: integer of 5,000 characters" in run.stdout
    inputs = write(tmp_path / "inputs.yaml", f"n: {digits}\n")
    run = orch("deploy", blueprint, "-i", inputs, "-i", f"n={digits}", cwd=tmp_path)
    assert run.code == 1, run
    assert f"{inputs}:1:4: error: integer of 5,000 characters" in run.stderr
    assert "<-i #2>:1:4: error: integer of 5,000 characters" in run.stderr
    version = write(tmp_path / "version.yaml", INPUT_BLUEPRINT.replace(
        "type: integer\n      default: 1", f"type: version\n      default: 1.{digits}"))
    run = orch("validate", version, cwd=tmp_path)
    assert run.code == 1, run
    assert "a version of 5,002 characters is too long" in run.stdout
    floating = write(tmp_path / "float.yaml", INPUT_BLUEPRINT.replace(
        "type: integer\n      default: 1", f"type: float\n      default: {'9' * 400}"))
    run = orch("validate", floating, cwd=tmp_path)
    assert run.code == 1, run
    assert f"{floating}:6:16: error: the integer is too large for a float" in run.stdout


# ------------------------------------------------------------------------------ confinement
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file beside, not inside, the blueprint's folder, holding a secret line."""
    return write(tmp_path / "outside" / "secret.yaml", f"{SECRET}: x\npassword: {SECRET}\n")


def test_imports_outside_the_root_are_refused_unread(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "bp"
    (root / "sub").mkdir(parents=True)
    (root / "link.yaml").symlink_to(outside)
    main = write(root / "main.yaml", HEADER + f"""\
        imports:
          - {outside}
          - ../outside/secret.yaml
          - sub/../../outside/secret.yaml
          - link.yaml
          - file://{outside}
          - file: /etc/passwd
    """.replace("        ", ""))  # fmt: skip
    for fmt in ("text", "json"):
        run = orch("validate", "-f", fmt, main, cwd=tmp_path, ORCH_SNIPPETS="1")
        assert run.code == 1, run
        assert SECRET not in run.output and "root:" not in run.output
    run = orch("validate", main, cwd=tmp_path, ORCH_SNIPPETS="1")
    outside_lines = [line for line in run.stdout.splitlines() if "[imports.outside-root]" in line]
    assert [line.split(": error")[0] for line in outside_lines] == [
        f"{main}:{n}:5" for n in (3, 4, 5, 6, 7, 8)]
    assert f"is outside the blueprint's folder {root} and the catalogs: not read" in run.stdout


def test_catalog_folders_outside_the_root_may_be_imported(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "types.yaml", HEADER + "node_types:\n  my.T:\n"
          "    derived_from: tosca.nodes.Root\n")  # fmt: skip
    main = write(tmp_path / "bp" / "main.yaml", HEADER + "imports: [../lib/types.yaml]\n"
                 "topology_template:\n  node_templates:\n    a: {type: my.T}\n")  # fmt: skip
    assert "imports.outside-root" in rules(orch("validate", main, cwd=tmp_path))
    run = orch("validate", "--catalog", tmp_path / "lib", main, cwd=tmp_path)
    assert run.code == 0, run


def test_a_file_that_is_not_tosca_is_never_quoted(tmp_path: Path) -> None:
    root = tmp_path / "bp"
    write(root / "creds.yaml", f"description: x\nuser: root\n{SECRET}: {SECRET}\n")
    write(root / "broken.yaml", f"key: *{SECRET.replace('-', '')}\n")
    main = write(root / "main.yaml", HEADER + "imports: [creds.yaml, broken.yaml]\n")
    run = orch("validate", main, cwd=tmp_path, ORCH_SNIPPETS="1")
    assert run.code == 1, run
    assert SECRET not in run.output and SECRET.replace("-", "") not in run.output
    assert "user" not in run.output
    assert (f"{main}:2:11: error: '{root / 'creds.yaml'}' is not a TOSCA file: no "
            "tosca_definitions_version, and its line 2 holds a key that is not a TOSCA "
            "keyname [document.not-tosca]") in run.stdout  # fmt: skip
    assert f"{root / 'broken.yaml'}:1:6: error: found undefined alias [yaml.syntax]" in run.stdout
    entry = orch("validate", root / "creds.yaml", cwd=tmp_path, ORCH_SNIPPETS="1")
    assert entry.code == 1 and SECRET not in entry.output, entry
    assert rules(entry) == {"document.not-tosca"}


def test_an_imported_type_file_may_leave_out_its_version(tmp_path: Path) -> None:
    write(tmp_path / "types" / "t.yaml", "node_types:\n  my.T:\n    derived_from: "
          "tosca.nodes.Root\n")  # fmt: skip
    main = write(tmp_path / "main.yaml", HEADER + "imports: [types/t.yaml]\n"
                 "topology_template:\n  node_templates:\n    a: {type: my.T}\n")  # fmt: skip
    assert validate(main).diagnostics == []


ARTIFACT_BLUEPRINT = HEADER + """\
topology_template:
  node_templates:
    a:
      type: tosca.nodes.Root
      interfaces:
        Standard:
          create: ../outside/run.sh
      artifacts:
        data: ../../../../../../../../etc/passwd
"""


def test_artifacts_outside_the_root_are_errors_and_never_deployed(tmp_path: Path) -> None:
    write(tmp_path / "outside" / "run.sh", f"echo {SECRET}\n")
    main = write(tmp_path / "bp" / "main.yaml", ARTIFACT_BLUEPRINT)
    run = orch("validate", main, cwd=tmp_path)
    assert run.code == 1, run
    assert f"{main}:8:19: error: implementation artifact '../outside/run.sh' is outside" in (
        run.stdout)
    assert f"{main}:10:15: error: artifact '../../../../../../../../etc/passwd' is outside" in (
        run.stdout)
    deploy = orch("deploy", main, cwd=tmp_path)
    assert deploy.code == 1, deploy
    assert SECRET not in deploy.output
    for path in (tmp_path / ".orch").rglob("*") if (tmp_path / ".orch").exists() else ():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_read_blueprint_file_reads_only_inside_the_confinement(tmp_path: Path) -> None:
    """What deploy snapshots: artifacts inside the root (a folder or a CSAR zip) only."""
    from orch.tosca.imports import Confinement, read_blueprint_file

    write(tmp_path / "outside" / "run.sh", f"echo {SECRET}\n")
    main = write(tmp_path / "bp" / "main.yaml", HEADER)
    write(tmp_path / "bp" / "run.sh", "echo ok\n")
    (tmp_path / "bp" / "link.sh").symlink_to(tmp_path / "outside" / "run.sh")
    confinement = Confinement.of(main)
    assert read_blueprint_file(tmp_path / "bp" / "run.sh", confinement) == b"echo ok\n"
    for escaping in ("bp/../outside/run.sh", "bp/link.sh"):
        with pytest.raises(FileRefused, match=f"outside the blueprint's folder {main.parent}"):
            read_blueprint_file(tmp_path / escaping, confinement)
    archive = _zip(tmp_path / "bp", tmp_path / "app.zip")
    in_zip = Confinement.of(archive)
    assert read_blueprint_file(archive / "sub" / ".." / "run.sh", in_zip) == b"echo ok\n"
    with pytest.raises(FileRefused, match="outside the blueprint's CSAR"):
        read_blueprint_file(archive / ".." / "outside" / "run.sh", in_zip)
    assert Confinement.of(main).artifact_path("/run.sh", "/elsewhere") == str(
        tmp_path / "bp" / "run.sh")  # '/x' is the root's, as xOpera reads it
    assert confinement.artifact_path("../outside/run.sh", str(main.parent)) is None


# ------------------------------------------------------------------------------ CSAR
def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return target


def _csar(tmp_path: Path, kind: str, files: dict[str, str]) -> Path:
    folder = tmp_path / "csar"
    for name, text in files.items():
        write(folder / name, text)
    return folder if kind == "folder" else _zip(folder, tmp_path / "app.csar")


CSAR_KINDS = ["folder", "zip"]


@pytest.mark.parametrize("kind", CSAR_KINDS)
def test_a_csar_without_meta_names_its_candidate_entries(tmp_path: Path, kind: str) -> None:
    csar = _csar(tmp_path, kind, {"a.yaml": HEADER, "b.yml": HEADER, "sub/c.yaml": HEADER})
    (diagnostic,) = validate(csar).diagnostics
    assert diagnostic.rule == "csar.entry"
    assert diagnostic.message == ("not a CSAR: no TOSCA-Metadata/TOSCA.meta, and 2 YAML files "
                                  "at the top (a.yaml, b.yml), so none is the entry")
    assert "Entry-Definitions" in (diagnostic.hint or "")


@pytest.mark.parametrize("kind", CSAR_KINDS)
def test_a_malformed_tosca_meta_is_reported_by_line(tmp_path: Path, kind: str) -> None:
    meta = "TOSCA-Meta-File-Version: 1.1\nthis line has no colon\nCreated-By: me\n"
    csar = _csar(tmp_path, kind, {"TOSCA-Metadata/TOSCA.meta": meta, "main.yaml": HEADER})
    found = {(d.rule, d.location.line, d.message) for d in validate(csar).diagnostics}
    assert found == {
        ("csar.meta", 2, "line 2 of TOSCA.meta is not 'Name: value'"),
        ("csar.meta", 1, "TOSCA.meta has no Entry-Definitions"),
    }
    assert all(d.location.file == str(csar / "TOSCA-Metadata" / "TOSCA.meta")
               for d in validate(csar).diagnostics)  # fmt: skip


@pytest.mark.parametrize("kind", CSAR_KINDS)
@pytest.mark.parametrize("entry, words", [("../../etc/passwd", "is outside the CSAR"),
                                          ("nope.yaml", "which is not in the CSAR")])
def test_a_bad_entry_definitions_is_reported_at_its_line(
    tmp_path: Path, kind: str, entry: str, words: str
) -> None:
    meta = f"TOSCA-Meta-File-Version: 1.1\nEntry-Definitions: {entry}\n"
    csar = _csar(tmp_path, kind, {"TOSCA-Metadata/TOSCA.meta": meta, "main.yaml": HEADER})
    (diagnostic,) = validate(csar).diagnostics
    assert (diagnostic.rule, diagnostic.location.line) == ("csar.meta", 2)
    assert words in diagnostic.message


NESTED_CSAR = {
    "TOSCA-Metadata/TOSCA.meta": "TOSCA-Meta-File-Version: 1.1\nCSAR-Version: 1.1\n"
                                 "Created-By: me\nEntry-Definitions: defs/main.yaml\n",
    "defs/main.yaml": HEADER + "imports: [../types/t.yaml]\n"
                      "topology_template:\n  node_templates:\n    a: {type: my.T}\n"
                      "    b: {type: my.U}\n",
    "types/t.yaml": "imports: [more/u.yaml]\nnode_types:\n  my.T: {derived_from: "
                    "tosca.nodes.Root}\n",
    "types/more/u.yaml": "imports: [../t.yaml]\nnode_types:\n  my.U: {derived_from: "
                         "tosca.nodes.Root}\n",
}  # fmt: skip


@pytest.mark.parametrize("kind", CSAR_KINDS)
def test_relative_imports_inside_a_csar_and_version_less_type_files(
    tmp_path: Path, kind: str
) -> None:
    csar = _csar(tmp_path, kind, NESTED_CSAR)
    result = validate(csar)
    assert result.diagnostics == []
    assert len([f for f in result.files if "/types/" in f.path]) == 2  # each file loaded once


def test_a_zip_csar_cannot_import_beside_itself(tmp_path: Path) -> None:
    write(tmp_path / "types.yaml", HEADER)
    csar = _csar(tmp_path, "zip", {"main.yaml": HEADER + "imports: [../types.yaml]\n"})
    (diagnostic,) = validate(csar).diagnostics
    assert diagnostic.rule == "imports.outside-root"
    assert f"outside the blueprint's CSAR {csar}" in diagnostic.message


def test_a_zip_bomb_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as writer:
        writer.writestr("main.yaml", HEADER + "imports: [lib/big.yaml]\n")
        with writer.open("lib/big.yaml", "w", force_zip64=True) as member:
            for _ in range(65):
                member.write(b"#" * (1 << 20))
    run = orch("validate", archive, cwd=tmp_path)
    assert run.code == 1, run
    assert "it unpacks to more than 64 MiB, the most orch reads for a blueprint file" in run.stdout


def test_a_zip_member_lying_about_its_size_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as writer:
        writer.writestr("main.yaml", HEADER + "imports: [lib/big.yaml]\n")
        writer.writestr("lib/big.yaml", b"#" * (8 << 20))
    data = bytearray(archive.read_bytes())
    for signature, size_at, name_at, length_at in ((b"PK\x01\x02", 24, 46, 28),
                                                   (b"PK\x03\x04", 22, 30, 26)):
        at = data.find(signature)
        while at >= 0:  # declare 100 bytes where 8 MiB are packed
            length = int.from_bytes(data[at + length_at : at + length_at + 2], "little")
            if data[at + name_at : at + name_at + length] == b"lib/big.yaml":
                data[at + size_at : at + size_at + 4] = (100).to_bytes(4, "little")
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))
    run = orch("validate", archive, cwd=tmp_path)
    assert run.code == 1, run
    assert "cannot read" in run.stdout and "cannot unpack it from the zip" in run.stdout


# ------------------------------------------------------------------------------ duplicate keys
def test_duplicate_keys_are_the_same_diagnostic_in_every_file(
    tmp_path: Path, blueprint: Path
) -> None:
    duplicated = "n: 1\nn: 2\n"
    bp = write(tmp_path / "dup-bp.yaml", HEADER + "description: a\ndescription: b\n")
    checked = validate(bp)
    in_blueprint = [d for d in checked.diagnostics if d.rule == "yaml.duplicate-key"]
    assert [(d.location.line, d.location.col) for d in in_blueprint] == [(3, 1)]
    assert in_blueprint[0].severity is Severity.ERROR and not checked.ok  # a warning once
    inputs = write(tmp_path / "inputs.yaml", duplicated)
    run = orch("deploy", blueprint, "-f", "json", "-i", inputs, "-i", "n={a: 1, a: 2}",
               cwd=tmp_path)  # fmt: skip
    assert run.code == 1, run
    found = [(d["file"], d["line"], d["column"], d["severity"], d["message"])
             for d in json.loads(run.stdout)["diagnostics"]]  # fmt: skip
    message = "duplicate key 'n' (first defined at line 1)"
    assert (str(inputs), 2, 1, "error", message) in found
    assert ("<-i #2>", 1, 11, "error", message.replace("'n'", "'a'")) in found
    sites = write(tmp_path / "sites.yaml", "sites:\n  a: {host: x}\n  a: {host: y}\n")
    with pytest.raises(SitesError) as caught:
        load_sites(sites)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.rule, diagnostic.location.line, diagnostic.location.col) == (
        "yaml.duplicate-key", 3, 3)
    assert diagnostic.message == "duplicate key 'a' (first defined at line 2)"
    assert in_blueprint[0].message == "duplicate key 'description' (first defined at line 2)"


TYPE_ARTIFACT_BLUEPRINT = HEADER + """\
node_types:
  demo.Sneaky:
    derived_from: tosca.nodes.Root
    interfaces:
      Standard:
        create: ../outside/run.sh
topology_template:
  node_templates:
    here:
      type: demo.Sneaky
"""


def test_an_implementation_of_a_type_outside_the_root_is_never_run_nor_stored(
    tmp_path: Path,
) -> None:
    """Validation checks templates; a node type's own implementation reaches deploy, which
    reads only files inside the blueprint's root."""
    ran = tmp_path / "ran"
    write(tmp_path / "outside" / "run.sh", f"echo {SECRET}; touch {ran}\n")
    main = write(tmp_path / "bp" / "main.yaml", TYPE_ARTIFACT_BLUEPRINT)
    deploy = orch("deploy", main, cwd=tmp_path)
    assert deploy.code == 1, deploy
    assert f"({tmp_path}/outside/run.sh): it is outside" in deploy.stderr, deploy
    assert not ran.exists() and SECRET not in deploy.output
    for path in (tmp_path / ".orch").rglob("*") if (tmp_path / ".orch").exists() else ():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
