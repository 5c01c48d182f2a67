"""``orch`` on the command line: formats, exit codes, options, and what --help imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orch import __version__
from orch.cli import exitcodes
from orch.cli.main import cli

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
ERROR_BLUEPRINT = HEADER + """\
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compte
"""
WARNING_BLUEPRINT = HEADER + """\
topology_template:
  inputs:
    size:
      type: integer
      constraints: {greater_than: 1}
  node_templates:
    server:
      type: tosca.nodes.Compute
"""
DUPLICATE_KEY = HEADER + """\
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
      type: tosca.nodes.Compute
"""
CLEAN_BLUEPRINT = HEADER + """\
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
"""
SYNTAX_ERROR = HEADER + "topology_template:\n  node_templates: [\n"
ESC = "\x1b["


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in (("error", ERROR_BLUEPRINT), ("warning", WARNING_BLUEPRINT),
                       ("clean", CLEAN_BLUEPRINT), ("syntax", SYNTAX_ERROR)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, "utf-8")
        out[name] = path
    return out


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def orch(*args: object, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A real process, as a user or CI runs it."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("ORCH_CATALOG", "NO_COLOR")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "orch", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=60, check=False)


# ------------------------------------------------------------------------------ text
def test_text_format_and_exit_code(files: dict[str, Path]) -> None:
    result = run("validate", files["error"])
    assert result.exit_code == exitcodes.FINDINGS
    lines = result.stdout.splitlines()
    assert lines[0] == (f"{files['error']}:5:13: error: unknown node type 'tosca.nodes.Compte' "
                        "[types.unknown]")
    assert lines[1].startswith("  hint: did you mean 'tosca.nodes.Compute'")
    assert lines[-1] == "1 file checked: 1 error, 0 warnings"


def test_clean_blueprint_exits_zero(files: dict[str, Path]) -> None:
    result = run("validate", files["clean"])
    assert result.exit_code == exitcodes.OK
    assert result.stdout == "1 file checked: 0 errors, 0 warnings\n"


def test_warnings_alone_exit_zero_and_strict_makes_them_fail(files: dict[str, Path]) -> None:
    assert run("validate", files["warning"]).exit_code == exitcodes.OK
    strict = run("validate", "--strict", files["warning"])
    assert strict.exit_code == exitcodes.FINDINGS
    assert "[constraint.single-map]" in strict.stdout


def test_quiet_shows_only_errors(files: dict[str, Path]) -> None:
    result = run("-q", "validate", files["warning"], files["error"])
    assert "single-map" not in result.stdout
    assert "[types.unknown]" in result.stdout
    assert result.exit_code == exitcodes.FINDINGS


def test_several_files_in_one_call(files: dict[str, Path]) -> None:
    result = run("validate", "--format", "json", files["clean"], files["warning"],
                 files["error"])
    assert result.exit_code == exitcodes.FINDINGS
    report = json.loads(result.stdout)
    assert report["files"] == [str(files["clean"]), str(files["warning"]), str(files["error"])]
    assert report["summary"] == {"error": 1, "warning": 1, "info": 0}
    assert {d["file"] for d in report["diagnostics"]} == {str(files["warning"]),
                                                           str(files["error"])}
    text = run("validate", files["clean"], files["error"]).stdout
    assert text.endswith("2 files checked: 1 error, 0 warnings\n")


def test_missing_file_is_a_finding(tmp_path: Path) -> None:
    result = run("validate", tmp_path / "nope.yaml")
    assert result.exit_code == exitcodes.FINDINGS
    assert "[document.missing]" in result.stdout


def test_source_snippet_with_caret(files: dict[str, Path]) -> None:
    result = run("validate", files["error"], env={"ORCH_SNIPPETS": "1"})
    lines = result.stdout.splitlines()
    assert lines[1] == "    5 |       type: tosca.nodes.Compte"
    assert lines[2] == "      |             ^"


# ------------------------------------------------------------------------------ machine formats
def test_json_envelope(files: dict[str, Path]) -> None:
    result = run("validate", "-f", "json", files["error"], files["warning"])
    assert result.exit_code == exitcodes.FINDINGS
    report = json.loads(result.stdout)
    assert report["format"] == "orch.diagnostics"
    assert report["version"] == 1
    assert report["tool"] == {"name": "orch", "version": __version__}
    assert report["summary"] == {"error": 1, "warning": 1, "info": 0}
    by_rule = {d["rule"]: d for d in report["diagnostics"]}
    assert set(by_rule) == {"types.unknown", "constraint.single-map"}
    unknown = by_rule["types.unknown"]
    assert (unknown["line"], unknown["column"]) == (5, 13)
    assert unknown["severity"] == "error"
    assert unknown["file"] == str(files["error"])
    assert unknown["hint"].startswith("did you mean")
    single = by_rule["constraint.single-map"]
    assert (single["line"], single["column"], single["severity"]) == (6, 7, "warning")
    assert single["related"] == []
    for diagnostic in report["diagnostics"]:
        assert set(diagnostic) >= {"rule", "severity", "message", "file", "line", "column",
                                   "hint", "related"}
    # a finding with a related place: a duplicate key (an error, as YAML 1.2 has it)
    duplicate_file = files["clean"].with_name("duplicate.yaml")
    duplicate_file.write_text(DUPLICATE_KEY, "utf-8")
    (duplicate,) = json.loads(run("validate", "-f", "json", duplicate_file).stdout)["diagnostics"]
    assert (duplicate["rule"], duplicate["severity"]) == ("yaml.duplicate-key", "error")
    assert (duplicate["line"], duplicate["column"]) == (6, 7)
    assert duplicate["related"] == [{"file": str(duplicate_file), "line": 5, "column": 7}]


def test_sarif(files: dict[str, Path]) -> None:
    result = run("validate", "--format", "sarif", files["error"], files["warning"])
    assert result.exit_code == exitcodes.FINDINGS
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    assert "sarif" in log["$schema"]
    (the_run,) = log["runs"]
    rules = [r["id"] for r in the_run["tool"]["driver"]["rules"]]
    results = the_run["results"]
    assert len(results) == 2
    for item in results:
        assert rules[item["ruleIndex"]] == item["ruleId"]
        assert item["level"] in ("error", "warning", "note")
        location = item["locations"][0]["physicalLocation"]
        assert location["region"]["startLine"] >= 1
        assert location["region"]["startColumn"] >= 1
    error = next(r for r in results if r["ruleId"] == "types.unknown")
    assert error["level"] == "error"
    region = error["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (5, 13)
    assert error["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] \
        == str(files["error"])


def test_github_workflow_commands(files: dict[str, Path]) -> None:
    result = run("validate", "--format", "github", files["error"], files["warning"])
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    error = next(line for line in lines if line.startswith("::error "))
    assert error.startswith(f"::error file={files['error']},line=5,col=13,title=types.unknown::")
    assert any(line.startswith(f"::warning file={files['warning']},line=6,col=7") for line in lines)


def test_github_escapes_newlines_and_colons(tmp_path: Path) -> None:
    path = tmp_path / "a,b:c.yaml"
    path.write_text(ERROR_BLUEPRINT, "utf-8")
    line = run("validate", "-f", "github", path).stdout.splitlines()[0]
    assert line.startswith(f"::error file={tmp_path}/a%2Cb%3Ac.yaml,line=5")
    assert "\n" not in line


def test_junit(files: dict[str, Path]) -> None:
    result = run("validate", "--format", "junit", files["clean"], files["error"],
                 files["warning"])
    root = ET.fromstring(result.stdout)
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [str(files["clean"]), str(files["error"]),
                                             str(files["warning"])]
    failures = root.findall(".//failure")
    assert [f.get("type") for f in failures] == ["types.unknown"]
    assert root.get("failures") == "1"
    assert cases[0].find("failure") is None
    assert "single clause" in (cases[2].findtext("system-out") or "")


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "junit"])
def test_output_file(files: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"report.{fmt}"
    result = run("validate", "-f", fmt, "-o", target, files["error"])
    assert result.exit_code == exitcodes.FINDINGS
    assert result.stdout == ""
    written = target.read_text("utf-8")
    assert "types.unknown" in written
    if fmt in ("json", "sarif"):
        json.loads(written)
    if fmt == "junit":
        ET.fromstring(written)


# ------------------------------------------------------------------------------ colour
def test_no_escape_codes_when_not_a_terminal(files: dict[str, Path]) -> None:
    for args in (("validate",), ("--color", "never", "validate")):
        result = run(*args, files["error"])
        assert ESC not in result.output
    result = run("validate", files["error"], env={"NO_COLOR": "1"})
    assert ESC not in result.output


def _on_a_terminal(args: list[str], env: dict[str, str] | None = None) -> str:
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "ORCH_CATALOG")}
    full_env.update(env or {})
    try:
        process = subprocess.Popen([sys.executable, "-m", "orch", *args], stdout=slave,
                                   stderr=slave, stdin=subprocess.DEVNULL, env=full_env)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_colour_on_a_terminal_and_how_to_turn_it_off(files: dict[str, Path]) -> None:
    error = str(files["error"])
    assert ESC in _on_a_terminal(["validate", error])
    plain = _on_a_terminal(["validate", error], env={"NO_COLOR": "1"})
    assert ESC not in plain
    assert "unknown node type 'tosca.nodes.Compte'" in plain
    assert "      type: tosca.nodes.Compte" in plain  # the source snippet, still shown
    assert ESC not in _on_a_terminal(["--color", "never", "validate", error])


def test_color_always_colours_a_pipe(files: dict[str, Path]) -> None:
    result = orch("--color", "always", "validate", files["error"])
    assert ESC in result.stdout


# ------------------------------------------------------------------------------ exit codes
def test_missing_catalog_folder_exits_3(files: dict[str, Path], tmp_path: Path) -> None:
    result = run("validate", "--catalog", tmp_path / "no-such-dir", files["clean"])
    assert result.exit_code == exitcodes.CONFIG == 3
    assert "catalog folder not found" in result.stderr


def test_unknown_option_exits_2(files: dict[str, Path]) -> None:
    result = run("validate", "--bogus", files["clean"])
    assert result.exit_code == exitcodes.USAGE == 2
    assert "No such option" in result.output


def test_missing_argument_and_bad_format_exit_2() -> None:
    assert run("validate").exit_code == 2
    assert run("validate", "-f", "xml", "x.yaml").exit_code == 2
    assert run("nosuchcommand").exit_code == 2


def test_checker_crash_is_an_internal_error(files: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from orch.tosca import topology

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(topology.TopologyChecker, "_node_template", explode)
    result = run("validate", files["clean"])
    assert result.exit_code == exitcodes.INTERNAL == 70
    assert "bug in orch" in result.output


def test_yaml_syntax_error_exits_1_without_traceback(files: dict[str, Path]) -> None:
    result = orch("validate", files["syntax"])
    assert result.returncode == exitcodes.FINDINGS
    assert "[yaml.syntax]" in result.stdout
    assert f"{files['syntax']}:4:1:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_real_process_clean_and_json(files: dict[str, Path]) -> None:
    clean = orch("validate", files["clean"])
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout == "1 file checked: 0 errors, 0 warnings\n"
    report = orch("validate", "-f", "json", files["error"])
    assert report.returncode == 1
    assert json.loads(report.stdout)["summary"]["error"] == 1
    assert report.stderr == ""


def test_catalog_through_orch_catalog_in_a_real_process(files: dict[str, Path],
                                                        tmp_path: Path) -> None:
    library = tmp_path / "cat" / "lib.yaml"
    library.parent.mkdir()
    library.write_text(HEADER + "metadata:\n  template_name: lib\n  template_version: 1.0.0\n"
                       "node_types:\n  lib.Node:\n    derived_from: tosca.nodes.Root\n", "utf-8")
    user = tmp_path / "user.yaml"
    user.write_text(HEADER + "imports:\n  - lib:1.0.0\ntopology_template:\n  node_templates:\n"
                    "    n: {type: lib.Node}\n", "utf-8")
    assert orch("validate", user).returncode == 1
    assert orch("validate", user, env={"ORCH_CATALOG": str(tmp_path / "cat")}).returncode == 0


# ------------------------------------------------------------------------------ other commands
def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"orch, version {__version__}"
    assert orch("--version").stdout.strip() == f"orch, version {__version__}"


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft7Validator.check_schema(schema)
    assert "draft-07" in schema["$schema"]


def test_schema_accepts_a_valid_blueprint_and_rejects_an_unknown_key() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft7Validator(json.loads(run("schema").stdout))
    assert list(validator.iter_errors(yaml.safe_load(CLEAN_BLUEPRINT))) == []
    bad = yaml.safe_load(CLEAN_BLUEPRINT.replace("type:", "typo:"))
    assert list(validator.iter_errors(bad))


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "validate" in result.output
    assert "schema" in result.output
    assert "--catalog" in run("validate", "--help").output


def test_help_does_not_import_the_validator() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "orch", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "validate" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "orch.cli.main" in imported
    assert not [name for name in imported if name.startswith("orch.tosca")]
    assert "yaml" not in imported and "ryml" not in imported and "jsonschema" not in imported


def test_deep_nesting_leaves_stderr_clean(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HEADER + "description: x\ndsl_definitions:\n  x: " + "[" * 100 + "]" * 100
                    + "\n", "utf-8")
    result = orch("validate", path)
    assert result.returncode in (0, 1)
    assert result.stderr == ""
