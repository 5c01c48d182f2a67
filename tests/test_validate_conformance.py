"""What peers' conformance suites expect of a validator, class by class.

Each class has cases that must be reported (with the place and a hint) and cases that processors
accept and orch must accept too: missing required requirements, substitution mappings, function
arity and argument kinds, errors deep inside nested data types, malformed versions, duplicate
keys, sections present with a null value and constraints written as a single map.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Blueprints, Checked, at
from orch.tosca.diagnostics import Severity


def errors(checked: Checked) -> list[str]:
    return [d.rule for d in checked.diagnostics if d.severity is Severity.ERROR]


def clean(checked: Checked) -> None:
    assert checked.diagnostics == [], checked.describe()


# ------------------------------------------------------------------------------ requirements
APP = """
    node_types:
      my.App:
        derived_from: tosca.nodes.Root
        requirements:
          - db:
              capability: tosca.capabilities.Endpoint.Database
              node: tosca.nodes.Database
              relationship: tosca.relationships.ConnectsTo
          - cache:
              capability: tosca.capabilities.Endpoint
              occurrences: [0, 1]
    topology_template:
      node_templates:
        app:
          type: my.App
"""


def test_missing_required_requirement_is_an_error(bp: Blueprints) -> None:
    checked = bp.check(APP)
    diagnostic = checked.one("topology.missing-requirement")
    assert diagnostic.severity is Severity.ERROR
    assert at(diagnostic) == checked.pos("app:")
    assert "'db'" in diagnostic.message and "my.App" in diagnostic.message
    assert "tosca.capabilities.Endpoint.Database" in (diagnostic.hint or "")
    assert "- db:" in (diagnostic.hint or "")


def test_missing_requirement_is_reported_where_the_requirements_are(bp: Blueprints) -> None:
    checked = bp.check(APP.replace("type: my.App", "type: my.App\n          requirements: []"))
    diagnostic = checked.one("topology.missing-requirement")
    assert at(diagnostic) == checked.pos("requirements: []")


def test_an_unassigned_host_is_the_machine_orch_runs_on(bp: Blueprints) -> None:
    # orch runs a node without a host locally: its HostedOn requirement is always fulfilled
    clean(
        bp.check("""
        node_types:
          my.Job:
            derived_from: tosca.nodes.Root
            requirements:
              - runs_on:
                  capability: tosca.capabilities.Compute
                  relationship: tosca.relationships.HostedOn
        topology_template:
          node_templates:
            web: {type: tosca.nodes.SoftwareComponent}
            job: {type: my.Job}
    """)
    )


def test_explicit_lower_bound_counts_assignments(bp: Blueprints) -> None:
    checked = bp.check("""
        node_types:
          my.Pair:
            derived_from: tosca.nodes.Root
            requirements:
              - peer:
                  capability: my.Peer
                  occurrences: [1, 2]
        capability_types:
          my.Peer: {derived_from: tosca.capabilities.Root}
        topology_template:
          node_templates:
            a: {type: my.Pair}
    """)
    assert "needs" not in checked.one("topology.missing-requirement").message
    assert "'peer'" in checked.one("topology.missing-requirement").message


OFFERS = """
    node_types:
      my.App:
        derived_from: tosca.nodes.Root
        requirements:
          - db:
              capability: tosca.capabilities.Endpoint.Database
              node: tosca.nodes.Database
      my.Offers:
        derived_from: tosca.nodes.Root
        capabilities:
          db: tosca.capabilities.Endpoint.Database
    topology_template:
      node_templates:
        app: {type: my.App}
        other: {type: my.Offers}
"""


def test_requirement_wanting_a_node_type_that_no_template_has(bp: Blueprints) -> None:
    # an Endpoint.Database capability is offered, but not by a tosca.nodes.Database
    checked = bp.check(OFFERS)
    assert "tosca.nodes.Database" in (checked.one("topology.missing-requirement").hint or "")
    clean(bp.check(OFFERS.replace("              node: tosca.nodes.Database\n", "")))


@pytest.mark.parametrize(
    "extra",
    [
        # a node template that offers the capability: processors fill the requirement with it
        """
        db:
          type: tosca.nodes.Database
          properties: {name: x}
          requirements:
            - host: dbms
        dbms:
          type: tosca.nodes.DBMS
          requirements:
            - host: server
        server: {type: tosca.nodes.Compute}
    """,
    ],
)
def test_requirement_fulfilled_by_a_node_of_the_topology(bp: Blueprints, extra: str) -> None:
    clean(bp.check(APP + extra))


def test_software_component_hosted_by_the_only_compute(bp: Blueprints) -> None:
    clean(
        bp.check("""
        topology_template:
          node_templates:
            web: {type: tosca.nodes.SoftwareComponent}
            server: {type: tosca.nodes.Compute}
    """)
    )


def test_optional_and_normative_root_requirements_are_not_required(bp: Blueprints) -> None:
    clean(
        bp.check("""
        node_types:
          my.Opt:
            derived_from: tosca.nodes.Root
            requirements:
              - maybe: {capability: tosca.capabilities.Endpoint, occurrences: [0, 1]}
        topology_template:
          node_templates:
            plain: {type: tosca.nodes.Root}
            opt: {type: my.Opt}
    """)
    )


def test_requirement_left_to_the_substituting_topology(bp: Blueprints) -> None:
    clean(
        bp.check("""
        node_types:
          my.Super:
            derived_from: tosca.nodes.Root
            requirements:
              - outer_host: {capability: tosca.capabilities.Compute, occurrences: [0, 1]}
        topology_template:
          substitution_mappings:
            node_type: my.Super
            requirements:
              outer_host: [web, host]
          node_templates:
            web: {type: tosca.nodes.SoftwareComponent}
    """)
    )


def test_abstract_node_templates_are_not_required_to_assign(bp: Blueprints) -> None:
    clean(bp.check(APP.replace("type: my.App", "type: my.App\n          directives: [select]")))


def test_alien4cloud_topologies_get_a_warning(bp: Blueprints) -> None:
    checked = bp.check(
        "tosca_definitions_version: alien_dsl_2_0_0\n" + APP.replace("\n    ", "\n"), header=False
    )
    diagnostic = checked.one("topology.missing-requirement")
    assert diagnostic.severity is Severity.WARNING
    assert checked.ok


# ------------------------------------------------------------------------------ substitution
SUBSTITUTION = """
    node_types:
      my.Service:
        derived_from: tosca.nodes.Root
        properties:
          size: {type: integer}
          label: {type: string, required: false}
        attributes:
          url: {type: string}
    topology_template:
      inputs:
        size: {type: integer}
      substitution_mappings:
        node_type: my.Service
        properties:
          {properties}
        attributes:
          url: [web, state]
      node_templates:
        web:
          type: tosca.nodes.WebServer
          requirements:
            - host: server
        server: {type: tosca.nodes.Compute}
"""


def _substitution(properties: str) -> str:
    return SUBSTITUTION.replace("{properties}", properties)


def test_substitution_property_mapped_to_an_undeclared_input(bp: Blueprints) -> None:
    checked = bp.check(_substitution("size: [ sise ]"))
    diagnostic = checked.one("topology.substitution")
    assert at(diagnostic) == checked.pos("sise")
    assert "undeclared input 'sise'" in diagnostic.message
    assert "size" in (diagnostic.hint or "")


def test_substitution_property_the_node_type_does_not_have(bp: Blueprints) -> None:
    checked = bp.check(_substitution("colour: [ size ]"))
    diagnostic = checked.one("topology.substitution")
    assert at(diagnostic) == checked.pos("colour")
    assert "has no property 'colour'" in diagnostic.message


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ("label: [ nobody, component_version ]", "nobody"),
        ("label: [ web, colour ]", "colour"),
        ("size: { mapping: [ nothing ] }", "nothing"),
        ("size: [ a, b, c ]", "[ a, b, c ]"),
    ],
)
def test_substitution_property_mapping_targets(bp: Blueprints, mapping: str, needle: str) -> None:
    checked = bp.check(_substitution(mapping))
    diagnostic = checked.one("topology.substitution")
    assert diagnostic.location.line == checked.pos(needle)[0]


@pytest.mark.parametrize(
    "mapping",
    [
        "size: [ size ]",
        "size: { mapping: [ size ] }",
        "label: [ web, component_version ]",
        "label: { value: fixed }",
    ],
)
def test_substitution_property_mappings_that_hold(bp: Blueprints, mapping: str) -> None:
    clean(bp.check(_substitution(mapping)))


def test_substitution_attribute_mappings(bp: Blueprints) -> None:
    checked = bp.check(
        _substitution("size: [ size ]").replace("url: [web, state]", "link: [web, state]")
    )
    assert "has no attribute 'link'" in checked.one("topology.substitution").message
    checked = bp.check(
        _substitution("size: [ size ]").replace("url: [web, state]", "url: [web, nostate]")
    )
    assert at(checked.one("topology.substitution")) == checked.pos("nostate")


# ------------------------------------------------------------------------------ functions
FUNCTIONS = """
    data_types:
      my.Endpoint:
        derived_from: tosca.datatypes.Root
        properties:
          host: {type: string}
          ports: {type: list, entry_schema: {type: integer}, required: false}
    node_types:
      my.Node:
        derived_from: tosca.nodes.Root
        properties:
          text: {type: string, required: false}
          names: {type: list, entry_schema: {type: string}, required: false}
          labels: {type: map, entry_schema: {type: string}, required: false}
          endpoint: {type: my.Endpoint, required: false}
        attributes:
          slots:
            type: list
            entry_schema: {type: integer}
            default: [1, 2]
    topology_template:
      inputs:
        name: {type: string, default: x}
      node_templates:
        free:
          type: my.Node
          properties:
            names: [a, b, c]
            endpoint: {host: h, ports: [80]}
        hosted:
          type: tosca.nodes.SoftwareComponent
          requirements:
            - host: server
        server: {type: tosca.nodes.Compute}
        node:
          type: my.Node
          properties:
            text: {call}
"""


def check_call(bp: Blueprints, call: str) -> Checked:
    return bp.check(FUNCTIONS.replace("{call}", call))


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ("{ concat: [] }", "concat"),
        ("{ concat: abc }", "concat"),
        ("{ concat: [ a, [ b, c ] ] }", "[ b, c ]"),
        ("{ concat: [ a, { nofunction: x } ] }", "nofunction"),
        ("{ join: [ [ a, [ b ] ], ',' ] }", "[ b ]"),
        ("{ join: [ [ a, b ], ',', x ] }", "join"),
        ("{ token: [ 'a:b', ':', -1 ] }", "-1"),
        ("{ token: [ [ a ], ':', 1 ] }", "[ a ]"),
        ("{ token: [ 'a:b', '', 1 ] }", "''"),
        ("{ token: [ 'a:b', ':', 1, 2 ] }", "token"),
        ("{ get_property: [ SELF ] }", "get_property"),
        ("{ get_property: [ SELF, 5 ] }", "5 ]"),
        ("{ get_property: [ free, names, 1.5 ] }", "1.5"),
        ("{ get_property: [ free, names, [0] ] }", "[0]"),
        ("{ get_attribute: [ free ] }", "get_attribute"),
    ],
)
def test_function_arity_and_argument_kinds(bp: Blueprints, call: str, needle: str) -> None:
    checked = check_call(bp, call)
    diagnostic = checked.one("function.args")
    assert diagnostic.location.line == checked.pos(needle, 2 if needle in FUNCTIONS else 1)[0]
    assert diagnostic.hint


@pytest.mark.parametrize(
    "call",
    [
        "{ concat: [ a, 1, 2.5, true, { get_input: name } ] }",
        "{ join: [ [ a, { get_input: name } ], ',' ] }",
        "{ join: [ [ a, b ] ] }",
        "{ token: [ { get_input: name }, ':', 0 ] }",
        "{ get_property: [ free, names, 2 ] }",
        "{ get_property: [ free, endpoint, ports, 0 ] }",
        "{ get_property: [ free, labels, somekey ] }",
        "{ get_attribute: [ free, slots, 1 ] }",
    ],
)
def test_function_calls_that_hold(bp: Blueprints, call: str) -> None:
    clean(check_call(bp, call))


@pytest.mark.parametrize(
    ("call", "needle", "words"),
    [
        ("{ get_property: [ free, names, 3 ] }", "3 ]", "index 3 is out of range"),
        ("{ get_attribute: [ free, slots, 2 ] }", "2 ]", "has 2 entries"),
        ("{ get_property: [ free, endpoint, ports, 1 ] }", "1 ]", "has 1 entry"),
    ],
)
def test_index_out_of_range_of_a_statically_known_list(
    bp: Blueprints, call: str, needle: str, words: str
) -> None:
    checked = check_call(bp, call)
    diagnostic = checked.one("function.index")
    assert at(diagnostic) == checked.pos(needle)
    assert words in diagnostic.message
    assert "valid indexes: 0 to" in (diagnostic.hint or "")


def test_path_into_a_data_type_names_its_fields(bp: Blueprints) -> None:
    checked = check_call(bp, "{ get_property: [ free, endpoint, hots ] }")
    diagnostic = checked.one("function.unknown-member")
    assert at(diagnostic) == checked.pos("hots")
    assert "did you mean 'host'" in (diagnostic.hint or "")
    checked = check_call(bp, "{ get_property: [ free, endpoint, host, deeper ] }")
    assert "is a string" in checked.one("function.args").message


def test_get_attribute_of_host_on_a_node_without_one(bp: Blueprints) -> None:
    checked = check_call(bp, "{ get_attribute: [ HOST, public_address ] }")
    diagnostic = checked.one("function.host")
    assert at(diagnostic) == checked.pos("HOST")
    assert "'node' (my.Node) has no host" in diagnostic.message
    assert diagnostic.hint


HOSTS = """
    node_types:
      my.Tool:
        derived_from: tosca.nodes.Root
        interfaces:
          Standard:
            type: tosca.interfaces.node.lifecycle.Standard
            operations:
              create:
                inputs:
                  address: {type: string, required: false}
    topology_template:
      inputs:
        name: {type: string, default: x}
      node_templates:
        server: {type: tosca.nodes.Compute}
        tool:
          type: {type}
          {requirements}
          interfaces:
            Standard:
              create:
                implementation: create.sh
                inputs:
                  address: {call}
"""


def _hosts(node_type: str, requirements: str, call: str) -> str:
    return (
        HOSTS.replace("{type}", node_type)
        .replace("{requirements}", requirements)
        .replace("{call}", call)
    )


@pytest.mark.parametrize(
    ("node_type", "requirements"),
    [
        ("tosca.nodes.SoftwareComponent", "requirements: [ {host: server} ]"),
        ("tosca.nodes.SoftwareComponent", ""),  # declared by the type, filled by the only Compute
        (
            "my.Tool",
            "requirements: [ {dependency: {node: server, "
            "relationship: tosca.relationships.HostedOn}} ]",
        ),
    ],
)
def test_host_of_hosted_nodes(bp: Blueprints, node_type: str, requirements: str) -> None:
    bp.write("echo\n", "create.sh", header=False)
    clean(bp.check(_hosts(node_type, requirements, "{ get_attribute: [ HOST, public_address ] }")))


def test_host_of_a_node_hosted_nowhere(bp: Blueprints) -> None:
    bp.write("echo\n", "create.sh", header=False)
    checked = bp.check(
        _hosts(
            "my.Tool",
            "requirements: [ {dependency: server} ]",
            "{ get_attribute: [ HOST, public_address ] }",
        )
    )
    diagnostic = checked.one("function.host")
    assert at(diagnostic) == checked.pos("HOST")
    assert "'tool' (my.Tool) has no host" in diagnostic.message


def test_get_input_of_an_unknown_input_in_operation_inputs(bp: Blueprints) -> None:
    bp.write("echo\n", "create.sh", header=False)
    checked = bp.check(_hosts("my.Tool", "", "{ concat: [ a, { get_input: nmae } ] }"))
    diagnostic = checked.one("function.unknown-input")
    assert at(diagnostic) == checked.pos("nmae")
    assert "did you mean 'name'" in (diagnostic.hint or "")


# ------------------------------------------------------------------------------ nested data types
NESTED = """
    data_types:
      my.Port:
        derived_from: tosca.datatypes.Root
        properties:
          number: {type: integer, constraints: [ {in_range: [1, 100]} ]}
          name: {type: string}
      my.Service:
        derived_from: tosca.datatypes.Root
        properties:
          ports: {type: list, entry_schema: {type: my.Port}}
          by_name: {type: map, entry_schema: {type: my.Port}, required: false}
    capability_types:
      my.Cap:
        derived_from: tosca.capabilities.Root
        properties:
          service: {type: my.Service, required: false}
    node_types:
      my.Node:
        derived_from: tosca.nodes.Root
        properties:
          service: {type: my.Service, required: false}
        capabilities:
          cap: my.Cap
        interfaces:
          Standard:
            type: tosca.interfaces.node.lifecycle.Standard
            operations:
              create:
                inputs:
                  service: {type: my.Service}
    topology_template:
      inputs:
        service:
          type: my.Service
          default: {ports: [{number: 1, name: ok}]}
      node_templates:
        node:
          type: my.Node
"""


PLACES = {
    "properties": """
          properties:
            service: {value}
""",
    "capabilities": """
          capabilities:
            cap:
              properties:
                service: {value}
""",
    "operation": """
          interfaces:
            Standard:
              create:
                implementation: create.sh
                inputs:
                  service: {value}
""",
}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize(
    ("value", "rule", "needle"),
    [
        ("{ports: [{number: 5, name: a}, {number: x, name: b}]}", "value.type", "x, name"),
        ("{ports: [{number: 5, name: a}, {number: 500, name: b}]}", "value.constraint", "500"),
        ("{ports: [{number: 5, name: a, colour: red}]}", "value.unknown-field", "colour"),
        ("{ports: [{number: 5, name: a}, {number: 6}]}", "value.missing-field", "number: 6}"),
        ("{ports: [], by_name: {web: {number: 0, name: w}}}", "value.constraint", "0, name: w"),
    ],
)
def test_errors_inside_nested_data_types(
    bp: Blueprints, place: str, value: str, rule: str, needle: str
) -> None:
    bp.write("echo\n", "create.sh", header=False)
    checked = bp.check(NESTED + PLACES[place].replace("{value}", value))
    diagnostic = checked.one(rule)
    assert at(diagnostic) == checked.pos(needle), checked.describe()
    assert len(checked.diagnostics) == 1, checked.describe()


def test_nested_errors_in_input_defaults(bp: Blueprints) -> None:
    checked = bp.check(NESTED.replace("{number: 1, name: ok}", "{number: 1000, name: ok}"))
    assert at(checked.one("value.constraint")) == checked.pos("1000")


def test_nested_values_that_hold(bp: Blueprints) -> None:
    bp.write("echo\n", "create.sh", header=False)
    clean(
        bp.check(
            NESTED
            + """
          properties:
            service: {ports: [{number: 5, name: a}], by_name: {web: {number: 8, name: w}}}
          interfaces:
            Standard:
              create:
                implementation: create.sh
                inputs:
                  service: {ports: [{number: 1, name: z}]}
                  extra: anything
"""
        )
    )


# ------------------------------------------------------------------------------ versions
@pytest.mark.parametrize(
    "version", ["1.a", "1.0.0.0.0", "1.0.0.qualifier-x-y", "'1'", "v1.0", "1.0.0-SNAPSHOT"]
)
def test_malformed_type_version(bp: Blueprints, version: str) -> None:
    checked = bp.check(f"""
        node_types:
          my.N:
            derived_from: tosca.nodes.Root
            version: {version}
    """)
    diagnostic = checked.one("types.version")
    assert at(diagnostic) == checked.pos(version)
    assert "major.minor" in diagnostic.message
    assert diagnostic.hint


@pytest.mark.parametrize("version", ["1.0", "1.10", "2.1.3", "1.0.0.beta", "1.0.0.beta-2", "'0.0'"])
def test_well_formed_type_version(bp: Blueprints, version: str) -> None:
    clean(
        bp.check(f"""
        node_types:
          my.N:
            derived_from: tosca.nodes.Root
            version: {version}
    """)
    )


def test_alien4cloud_types_take_maven_versions(bp: Blueprints) -> None:
    clean(
        bp.check(
            """
        tosca_definitions_version: alien_dsl_2_0_0
        node_types:
          my.N:
            derived_from: tosca.nodes.Root
            version: 1.0.0-SNAPSHOT
    """,
            header=False,
        )
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1.a", False),
        ("1.0.0.0.0", False),
        ("1.0.0.qualifier-x-y", False),
        ("2.0.1", True),
        ("1.0.0.alpha-10", True),
    ],
)
def test_values_of_type_version(bp: Blueprints, value: str, ok: bool) -> None:
    checked = bp.check(f"""
        node_types:
          my.N:
            derived_from: tosca.nodes.Root
            properties:
              v: {{type: version}}
        topology_template:
          node_templates:
            n:
              type: my.N
              properties:
                v: {value}
    """)
    if ok:
        clean(checked)
    else:
        assert at(checked.one("value.type")) == checked.pos(value)


# ------------------------------------------------------------------------------ duplicate keys
def test_duplicate_keys_are_reported_where_the_second_one_is(bp: Blueprints) -> None:
    checked = bp.check("""
        topology_template:
          node_templates:
            a: {type: tosca.nodes.Root}
            a: {type: tosca.nodes.Compute}
    """)
    diagnostic = checked.one("yaml.duplicate-key")
    assert at(diagnostic) == checked.pos("a:", 2)
    assert diagnostic.hint
    # YAML 1.2 wants unique keys and the peers' suites fail such a file: an error (it was a
    # warning), reported once, at the second key, the file's other checks still run
    assert diagnostic.severity is Severity.ERROR
    assert not checked.ok


# ------------------------------------------------------------------------------ null sections
NULLS = """
    metadata:
    description:
    imports:
    repositories:
    data_types:
    node_types:
      my.N:
        derived_from: tosca.nodes.Root
        metadata:
        properties:
        attributes:
        requirements:
        capabilities:
        interfaces:
          Standard:
            type: tosca.interfaces.node.lifecycle.Standard
            operations:
              create:
                inputs:
                outputs:
    topology_template:
      description:
      inputs:
      outputs:
      relationship_templates:
      groups:
      policies:
      workflows:
      node_templates:
        n:
          type: my.N
          metadata:
          directives:
          properties:
          attributes:
          requirements:
          capabilities:
          artifacts:
          interfaces:
            Standard:
              inputs:
              operations:
                create:
                  implementation: create.sh
                  inputs:
                  outputs:
"""


def test_sections_present_with_a_null_value(bp: Blueprints) -> None:
    bp.write("echo\n", "create.sh", header=False)
    clean(bp.check(NULLS))


@pytest.mark.parametrize(
    ("section", "value"), [("imports", "5"), ("metadata", "[a]"), ("description", "{a: 1}")]
)
def test_sections_of_the_wrong_kind_stay_errors(bp: Blueprints, section: str, value: str) -> None:
    bp.write("echo\n", "create.sh", header=False)
    checked = bp.check(NULLS.replace(f"\n    {section}:\n", f"\n    {section}: {value}\n", 1))
    assert not checked.ok
    assert checked.diagnostics[0].location.line == checked.pos(f"{section}: {value}")[0]


def test_an_empty_topology_is_a_topology(bp: Blueprints) -> None:
    clean(bp.check("topology_template:\n"))


# ------------------------------------------------------------------------------ constraints
CONSTRAINED = """
    node_types:
      my.N:
        derived_from: tosca.nodes.Root
        properties:
          p:
            type: integer
            constraints: {constraints}
    topology_template:
      node_templates:
        n:
          type: my.N
          properties:
            p: {value}
"""


def _constrained(constraints: str, value: int) -> str:
    return CONSTRAINED.replace("{constraints}", constraints).replace("{value}", str(value))


def test_constraints_as_a_single_map_are_read_with_a_warning(bp: Blueprints) -> None:
    checked = bp.check(_constrained("{greater_than: 1}", 5))
    diagnostic = checked.one("constraint.single-map")
    assert diagnostic.severity is Severity.WARNING
    assert at(diagnostic) == checked.pos("constraints")
    assert "constraints: [ {greater_than: 1} ]" in (diagnostic.hint or "")
    assert checked.ok


def test_a_single_map_constraint_still_constrains(bp: Blueprints) -> None:
    checked = bp.check(_constrained("{greater_than: 1}", 0))
    assert at(checked.one("value.constraint")) == checked.pos("0\n")


@pytest.mark.parametrize(
    "constraints", ["{greater_than: 1, less_than: 9}", "{}", "{bigger_than: 1}"]
)
def test_single_map_constraints_that_are_not_one_clause(bp: Blueprints, constraints: str) -> None:
    checked = bp.check(_constrained(constraints, 5))
    assert not checked.ok, checked.describe()


def test_constraints_as_a_list_have_no_warning(bp: Blueprints) -> None:
    clean(bp.check(_constrained("[ {greater_than: 1} ]", 5)))


# ------------------------------------------------------------------------------ the command
def test_validate_command_reports_with_positions_and_exit_status(bp: Blueprints) -> None:
    path = bp.write(APP)
    result = subprocess.run(
        [sys.executable, "-m", "orch", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    line, col = bp.check(APP).pos("app:")
    assert f"{path}:{line}:{col}: error: " in result.stdout
    assert "[topology.missing-requirement]" in result.stdout
    assert "Traceback" not in result.stderr


def test_validate_loads_only_what_it_needs(tmp_path: Path, bp: Blueprints) -> None:
    """Start-up is most of a run on small files: no YAML fallback, schema or SSH libraries."""
    path = bp.write("topology_template:\n  node_templates:\n    a: {type: tosca.nodes.Root}\n")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orch", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "orch.tosca.validator" in imported
    heavy = {
        "yaml",
        "jsonschema",
        "rich",
        "paramiko",
        "ansible",
        "ansible_runner",
        "sqlite3",
        "orch.engine",
        "orch.state",
        "orch.executors",
    }
    assert not heavy & imported, sorted(heavy & imported)


# ------------------------------------------------------------------------------ the grammar
def _tosca_documents(corpus: Path) -> list[tuple[str, object]]:
    from orch.tosca.loader import YamlError, load_file

    documents = []
    for path in sorted(corpus.rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            data = load_file(str(path)).data
        except (YamlError, OSError):
            continue
        if isinstance(data, dict) and "tosca_definitions_version" in data:
            documents.append((str(path), data))
    return documents


def test_compiled_grammar_agrees_with_jsonschema(corpus: Path, bp: Blueprints) -> None:
    """The grammar's compiled closures and a generic draft-07 validator give one verdict on
    every TOSCA file of the corpus and on the null sections and single-map constraints."""
    jsonschema = pytest.importorskip("jsonschema")
    from orch.tosca import grammar
    from orch.tosca.loader import load_file

    validator = jsonschema.Draft7Validator(grammar.schema())
    documents = _tosca_documents(corpus)
    for text in (
        NULLS,
        _constrained("{greater_than: 1}", 5),
        _constrained("{a: 1, b: 2}", 5),
        _substitution("size: [ size ]"),
    ):
        path = bp.write(text, f"doc{len(documents)}.yaml")
        documents.append((str(path), load_file(str(path)).data))
    assert len(documents) > 300
    disagree = [
        name
        for name, data in documents
        if bool(grammar.check_document(data)) != bool(list(validator.iter_errors(data)))
    ]
    assert disagree == []


def test_grammar_findings_carry_flat_paths(bp: Blueprints) -> None:
    checked = bp.check("""
        topology_template:
          node_templates:
            a:
              type: tosca.nodes.Root
              interfaces:
                Standard:
                  operations:
                    create: {implementation: x.sh, inptus: {}}
    """)
    diagnostic = checked.one("grammar.unknown-key")
    assert at(diagnostic) == checked.pos("inptus")
    assert "did you mean 'inputs'" in (diagnostic.hint or "")


# ------------------------------------------------------------------------------ caches
def test_what_is_remembered_clean_is_still_reported_for_each_node(bp: Blueprints) -> None:
    """The checks remember files, values and calls found clean; a problem is still reported
    at every node template that has it, not only at the first."""
    bp.write("echo\n", "ok.sh", header=False)
    template = """
            n{i}:
              type: my.N
              properties:
                port: {port}
                names: [a, b]
                first: {{ get_property: [ SELF, names, {index} ] }}
              interfaces:
                Standard:
                  create: {script}
    """
    nodes = "".join(
        template.format(i=i, port=port, index=index, script=script)
        for i, (port, index, script) in enumerate(
            [(80, 0, "ok.sh"), (0, 5, "gone.sh"), (80, 1, "ok.sh"), (0, 5, "gone.sh")]
        )
    )
    checked = bp.check(
        """
        node_types:
          my.N:
            derived_from: tosca.nodes.Root
            properties:
              port: {type: integer, constraints: [ {greater_than: 0} ]}
              names: {type: list, entry_schema: {type: string}}
              first: {type: string, required: false}
        topology_template:
          node_templates:
    """
        + nodes
    )
    assert len(checked.all("value.constraint")) == 2, checked.describe()
    assert len(checked.all("function.index")) == 2, checked.describe()
    assert len(checked.all("topology.missing-artifact")) == 2, checked.describe()
