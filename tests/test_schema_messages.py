"""One mistake, one wording: a blueprint (the compiled TOSCA grammar) and sites.yaml (jsonschema)
word the same schema violation alike, through ``orch.schema_messages``; each keeps its own rule
codes, its own names for places, and its file:line:col."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import Blueprints, at, position
from orch import schema_messages
from orch.sites.config import SitesError, load_sites
from orch.sites.config import schema as sites_schema
from orch.tosca.diagnostics import Diagnostic
from orch.tosca.grammar import schema as tosca_schema


def site_errors(tmp_path: Path, text: str) -> tuple[list[Diagnostic], str]:
    body = textwrap.dedent(text).lstrip("\n")
    path = tmp_path / "sites.yaml"
    path.write_text(body, "utf-8")
    with pytest.raises(SitesError) as caught:
        load_sites(path)
    return caught.value.diagnostics, body


def one(diagnostics: list[Diagnostic], rule: str) -> Diagnostic:
    found = [d for d in diagnostics if d.rule == rule]
    assert len(found) == 1, "\n".join(str(d) for d in diagnostics)
    return found[0]


def shape(text: str | None, **names: str) -> str:
    """The wording with its particulars (the place, the word) replaced by their role."""
    assert text is not None
    for role, name in names.items():
        assert name in text, (name, text)
        text = text.replace(name, role.upper())
    return text


def valid_keys(node: dict, root: dict) -> list[str]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = root[section][name]
    return sorted(node["properties"])


def test_an_unknown_key_with_a_close_match(bp: Blueprints, tmp_path: Path) -> None:
    checked = bp.check("""
        topology_template:
          node_templates:
            server:
              type: tosca.nodes.Compute
              propertes: {}
    """)
    in_blueprint = checked.one("grammar.unknown-key")
    assert at(in_blueprint) == checked.pos("propertes")  # at the key itself
    errors, text = site_errors(tmp_path, """
        sites:
          hpc1:
            host: login.example.org
            hots: other
    """)
    in_sites = one(errors, "sites.unknown-key")
    assert at(in_sites) == position(text, "hots")

    assert in_blueprint.message == "unknown key 'propertes' in node template"
    assert in_sites.message == "unknown key 'hots' in site 'hpc1'"
    assert shape(in_blueprint.message, word="propertes", place="node template") == shape(
        in_sites.message, word="hots", place="site 'hpc1'"
    ) == "unknown key 'WORD' in PLACE"
    # the hint: the close match, then every valid key, sorted
    tosca = tosca_schema()
    node_keys = valid_keys(tosca["definitions"]["node_template"], tosca)
    site_keys = valid_keys(sites_schema()["$defs"]["site"], sites_schema())
    assert in_blueprint.hint == f"did you mean 'properties'? valid: {', '.join(node_keys)}"
    assert in_sites.hint == f"did you mean 'host'? valid: {', '.join(site_keys)}"
    assert in_blueprint.message == schema_messages.unknown_key(
        "propertes", "node template", node_keys).message
    assert in_sites.message == schema_messages.unknown_key(
        "hots", "site 'hpc1'", site_keys).message


def test_a_value_outside_an_enum(bp: Blueprints, tmp_path: Path) -> None:
    checked = bp.check("""
        data_types:
          my.Type:
            derived_from: tosca.datatypes.Root
            properties:
              p:
                type: string
                status: supportd
    """)
    in_blueprint = checked.one("grammar.enum")
    assert at(in_blueprint) == checked.pos("supportd")  # at the value
    errors, text = site_errors(tmp_path, """
        sites:
          hpc1:
            host: login.example.org
            scheduler: slurmm
    """)
    in_sites = one(errors, "sites.value")
    assert at(in_sites) == position(text, "slurmm")

    statuses = "supported, unsupported, experimental, deprecated"
    schedulers = "slurm, sge, pbs, none"
    assert in_blueprint.message == f"status: 'supportd' is not one of {statuses}"
    assert in_sites.message == f"'scheduler' of site 'hpc1': 'slurmm' is not one of {schedulers}"
    assert shape(in_blueprint.message, word="supportd", place="status", valid=statuses) == shape(
        in_sites.message, word="slurmm", place="'scheduler' of site 'hpc1'", valid=schedulers
    ) == "PLACE: 'WORD' is not one of VALID"
    assert in_blueprint.hint == ("did you mean 'supported' or 'unsupported'? "
                                 "valid: deprecated, experimental, supported, unsupported")
    assert in_sites.hint == "did you mean 'slurm'? valid: none, pbs, sge, slurm"


def test_a_value_of_the_wrong_kind(bp: Blueprints, tmp_path: Path) -> None:
    checked = bp.check("description: [not, text]\n")
    in_blueprint = checked.one("grammar.type")
    assert at(in_blueprint) == checked.pos("description")  # a collection: at its key
    errors, text = site_errors(tmp_path, """
        sites:
          hpc1:
            host: login.example.org
            user: [not, text]
    """)
    in_sites = one(errors, "sites.value")
    assert at(in_sites) == position(text, "user")  # likewise

    assert in_blueprint.message == "description must be a string, not a list"
    assert in_sites.message == "'user' of site 'hpc1' must be a string, not a list"
    assert shape(in_blueprint.message, place="description") == shape(
        in_sites.message, place="'user' of site 'hpc1'"
    ) == "PLACE must be a string, not a list"


def test_the_same_words_for_each_kind_of_value() -> None:
    """Both schemas allow "null" beside other kinds (a key left empty); it is never suggested."""
    place = "x"
    assert schema_messages.wrong_type(None, place, schema_messages.expected(["integer", "null"])
                                      ).message == "x must be a whole number, not empty"
    assert schema_messages.wrong_type(True, place, schema_messages.expected("object")
                                      ).message == "x must be a mapping, not true/false"
    assert schema_messages.out_of_range(0, "'port'", 1, 65535).message == (
        "'port': 0 is out of range (1-65535)")
    assert schema_messages.too_few("x", 1).message == "x needs at least 1 item"
    assert schema_messages.too_many("x", 2, entries=True).message == "x takes at most 2 entries"


def test_a_clean_check_never_imports_difflib(tmp_path: Path) -> None:
    """Close matches are worked out for shown hints only: not for the branches of an anyOf
    that failed on the way to one that fits, not on a clean run."""
    blueprint = tmp_path / "blueprint.yaml"
    blueprint.write_text(textwrap.dedent("""
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          inputs:
            n: {type: integer, default: 2, constraints: [{greater_than: 0}]}
          node_templates:
            server:
              type: tosca.nodes.Compute
            app:
              type: tosca.nodes.SoftwareComponent
              requirements:
                - host: server
            other:
              type: tosca.nodes.SoftwareComponent
              requirements:
                - host: {node: server, relationship: tosca.relationships.HostedOn}
    """).lstrip(), "utf-8")
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  hpc1: {host: login.example.org, port: 22, modules: [gcc]}\n")
    script = textwrap.dedent(f"""
        import json, sys
        from orch.sites.config import load_sites
        from orch.tosca.validator import validate
        result = validate({str(blueprint)!r})
        load_sites({str(sites)!r})
        print(json.dumps([[str(d) for d in result.diagnostics], "difflib" in sys.modules]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    diagnostics, imported = json.loads(proc.stdout)
    assert diagnostics == []
    assert imported is False
