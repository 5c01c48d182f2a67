"""The type registry: every type of every kind, by name, with inheritance resolved lazily.

Names are found as written (``tosca.nodes.Compute``), by the short name TOSCA allows for its
normative types (``Compute``, ``tosca:Compute``) and with an import's namespace prefix
(``prefix:Name``). Inherited members (properties, capabilities, ...) are merged once per type and
cached, which keeps thousands of node templates of a few types cheap to check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean

KINDS = (
    "artifact_types",
    "data_types",
    "capability_types",
    "interface_types",
    "relationship_types",
    "node_types",
    "group_types",
    "policy_types",
)

KIND_LABEL = {
    "artifact_types": "artifact type",
    "data_types": "data type",
    "capability_types": "capability type",
    "interface_types": "interface type",
    "relationship_types": "relationship type",
    "node_types": "node type",
    "group_types": "group type",
    "policy_types": "policy type",
}

_SHORT_PREFIX = {
    "artifact_types": "tosca.artifacts.",
    "data_types": "tosca.datatypes.",
    "capability_types": "tosca.capabilities.",
    "interface_types": "tosca.interfaces.",
    "relationship_types": "tosca.relationships.",
    "node_types": "tosca.nodes.",
    "group_types": "tosca.groups.",
    "policy_types": "tosca.policies.",
}

# Members merged along derived_from, and whether they are lists of single-key maps.
MEMBER_LISTS = {"requirements"}
ROOT_TYPES = frozenset(
    {
        "tosca.datatypes.Root",
        "tosca.artifacts.Root",
        "tosca.capabilities.Root",
        "tosca.interfaces.Root",
        "tosca.relationships.Root",
        "tosca.nodes.Root",
        "tosca.groups.Root",
        "tosca.policies.Root",
        "tosca.entity.Root",
    }
)


@dataclass(eq=False)
class TypeDef:
    """One type definition as written, and where."""

    kind: str
    name: str
    body: dict[str, Any]
    where: Where
    builtin: bool = False
    _merged: dict[str, dict[str, tuple[Any, TypeDef]]] = field(default_factory=dict, repr=False)

    @property
    def parent_name(self) -> str | None:
        parent = self.body.get("derived_from")
        return parent if isinstance(parent, str) else None

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"


class TypeRegistry:
    """All types known to one validation run."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.types: dict[str, dict[str, TypeDef]] = {kind: {} for kind in KINDS}
        self.aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        # ``tosca:Compute``-style names by last segment, looked at only after exact aliases
        self.loose_aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self._parents: dict[int, TypeDef | None] = {}
        self._ancestry: dict[int, tuple[TypeDef, ...]] = {}

    # ---------------------------------------------------------------- registration
    def add(self, typedef: TypeDef, prefix: str | None = None) -> None:
        table = self.types[typedef.kind]
        existing = table.get(typedef.name)
        if existing is not None and existing is not typedef:
            if existing.builtin and not typedef.builtin:
                pass  # an imported library redefines a normative type: the import wins
            elif typedef.builtin and not existing.builtin:
                return
            elif existing.where.file.path != typedef.where.file.path and _same(existing, typedef):
                return  # the same library reached twice (two versions of one catalog entry)
            elif existing.where.file.path != typedef.where.file.path:
                self.reporter.warning(
                    "types.redefined",
                    typedef.where,
                    f"{KIND_LABEL[typedef.kind]} '{typedef.name}' is also defined in "
                    f"{existing.where.file.path}; this definition wins",
                    key=True,
                )
        table[typedef.name] = typedef
        aliases = self.aliases[typedef.kind]
        short_prefix = _SHORT_PREFIX[typedef.kind]
        if typedef.name.startswith(short_prefix):
            short = typedef.name[len(short_prefix) :]
            aliases.setdefault(short, typedef.name)
            aliases.setdefault("tosca:" + short, typedef.name)
            last = short.rsplit(".", 1)[-1]
            if last != short:
                loose = self.loose_aliases[typedef.kind]
                loose.setdefault(last, typedef.name)
                loose.setdefault("tosca:" + last, typedef.name)
        if prefix:
            aliases[f"{prefix}:{typedef.name}"] = typedef.name
            aliases[f"{prefix}.{typedef.name}"] = typedef.name

    # ---------------------------------------------------------------- lookup
    def get(self, kind: str, name: Any) -> TypeDef | None:
        if not isinstance(name, str):
            return None
        table = self.types[kind]
        found = table.get(name)
        if found is None:
            alias = self.aliases[kind].get(name) or self.loose_aliases[kind].get(name)
            if alias is not None:
                found = table.get(alias)
        return found

    def names(self, kind: str) -> list[str]:
        return list(self.types[kind])

    def require(
        self, kind: str, name: Any, where: Where, rule: str = "types.unknown", *, key: bool = False
    ) -> TypeDef | None:
        """Look a type up; report it, with the nearest names, when it does not exist."""
        found = self.get(kind, name)
        if found is None:
            label = KIND_LABEL[kind]
            if not isinstance(name, str):
                self.reporter.error(rule, where, f"{label} name must be a string", key=key)
            else:
                other = self._other_kind(name, kind)
                extra = f" (it is a {KIND_LABEL[other]})" if other else ""
                self.reporter.error(
                    rule,
                    where,
                    f"unknown {label} '{name}'{extra}",
                    did_you_mean(name, self._suggestions(kind)),
                    key=key,
                )
        return found

    def _suggestions(self, kind: str) -> list[str]:
        return [n for n in self.types[kind] if not n.startswith("tosca.") or "." in n]

    def _other_kind(self, name: str, kind: str) -> str | None:
        for other in KINDS:
            if other != kind and self.get(other, name) is not None:
                return other
        return None

    # ---------------------------------------------------------------- inheritance
    def parent(self, typedef: TypeDef) -> TypeDef | None:
        key = id(typedef)
        if key not in self._parents:
            name = typedef.parent_name
            self._parents[key] = self.get(typedef.kind, name) if name else None
        return self._parents[key]

    def ancestry(self, typedef: TypeDef) -> tuple[TypeDef, ...]:
        """The type and its ancestors, nearest first; stops at a cycle (reported elsewhere)."""
        key = id(typedef)
        cached = self._ancestry.get(key)
        if cached is not None:
            return cached
        chain: list[TypeDef] = []
        seen: set[int] = set()
        current: TypeDef | None = typedef
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            chain.append(current)
            current = self.parent(current)
        result = tuple(chain)
        self._ancestry[key] = result
        return result

    def find_cycle(self, typedef: TypeDef) -> list[str] | None:
        order: list[TypeDef] = []
        current: TypeDef | None = typedef
        while current is not None:
            if current in order:
                cycle = order[order.index(current) :]
                return [t.name for t in cycle] + [current.name]
            order.append(current)
            current = self.parent(current)
        return None

    def is_a(self, typedef: TypeDef | None, name: str | TypeDef | None) -> bool:
        if typedef is None or name is None:
            return False
        target = name if isinstance(name, TypeDef) else self.get(typedef.kind, name)
        if target is None:
            return False
        return any(t is target for t in self.ancestry(typedef))

    def members(self, typedef: TypeDef, section: str) -> dict[str, tuple[Any, TypeDef]]:
        """A section (properties, capabilities, ...) merged along derived_from.

        Values are ``(definition, owner)``; a derived type's definition replaces its parent's,
        except that interface definitions merge their operations.
        """
        cached = typedef._merged.get(section)
        if cached is not None:
            return cached
        merged: dict[str, tuple[Any, TypeDef]] = {}
        for owner in reversed(self.ancestry(typedef)):
            for name, definition in _entries(owner.body.get(section)):
                if section == "interfaces":
                    name = same_interface(merged, name, definition)
                if section == "interfaces" and name in merged:
                    definition = merge_interface(merged[name][0], definition)
                elif (
                    section in ("properties", "attributes")
                    and name in merged
                    and isinstance(definition, dict)
                    and isinstance(merged[name][0], dict)
                    and "type" not in definition
                ):
                    definition = {**merged[name][0], **definition}
                merged[name] = (definition, owner)
        typedef._merged[section] = merged
        return merged


def _same(a: TypeDef, b: TypeDef) -> bool:
    return a.body == b.body


def _entries(section: Any) -> list[tuple[str, Any]]:
    """Name/definition pairs of a map section, or of a list of single-key maps."""
    if isinstance(section, dict):
        return [(k, v) for k, v in section.items() if isinstance(k, str)]
    if isinstance(section, list):
        pairs = []
        for item in section:
            if isinstance(item, dict) and len(item) == 1:
                ((name, definition),) = item.items()
                pairs.append((name, definition))
        return pairs
    return []


_INTERFACE_KEYNAMES = frozenset(
    {
        "derived_from",
        "version",
        "metadata",
        "description",
        "inputs",
        "notifications",
        "type",
        "operations",
    }
)


def interface_operations(body: dict[str, Any]) -> dict[str, Any]:
    """An interface's operations: TOSCA 1.3's ``operations`` map, or (1.0-1.2) its other keys."""
    operations = body.get("operations")
    if isinstance(operations, dict):
        return operations
    return {k: v for k, v in body.items() if isinstance(k, str) and k not in _INTERFACE_KEYNAMES}


def entries(section: Any) -> list[tuple[str, Any]]:
    return _entries(section)


STANDARD_INTERFACE = "tosca.interfaces.node.lifecycle.Standard"
CONFIGURE_INTERFACE = "tosca.interfaces.relationship.Configure"


def interface_type_of(name: Any, definition: Any) -> str | None:
    """The interface type an interface entry stands for: its ``type``, else what its name
    says (``Standard`` and ``Configure`` are the normative ones; a dotted name is a type)."""
    if isinstance(definition, dict) and isinstance(definition.get("type"), str):
        return definition["type"]
    if name == "Standard":
        return STANDARD_INTERFACE
    if name == "Configure":
        return CONFIGURE_INTERFACE
    return str(name) if isinstance(name, str) and "." in name else None


def same_interface(known: dict[str, Any], name: str, definition: Any) -> str:
    """The key under which ``known`` already holds the interface that ``name`` names: one
    interface written ``Standard:`` in one file and ``tosca.interfaces.node.lifecycle.Standard:``
    in another (Alien4Cloud's normative types) is one interface, whose operations merge; two
    keys would leave an implementation where no plan looks for it. ``name`` when none."""
    if name in known:
        return name
    wanted = interface_type_of(name, definition)
    short = (wanted or name).rsplit(".", 1)[-1]
    for key, held in known.items():
        held_definition = held[0] if isinstance(held, tuple) else held
        existing = interface_type_of(key, held_definition)
        if wanted is not None and existing is not None:
            if _short_or_full(wanted) == _short_or_full(existing):
                return key
        elif (existing or key).rsplit(".", 1)[-1] == short:
            return key
    return name


def _short_or_full(type_name: str) -> str:
    """Interface types compared as Alien4Cloud does: ``tosca.interfaces.node.lifecycle.X``
    and ``X`` are one type when no namespace says otherwise."""
    for prefix in ("tosca.interfaces.node.lifecycle.", "tosca.interfaces.relationship."):
        if type_name.startswith(prefix):
            return type_name[len(prefix):]
    return type_name


def merge_interface(base: Any, derived: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(derived, dict):
        return derived
    result = dict(base)
    for key, value in derived.items():
        if key in ("operations", "notifications", "inputs") and isinstance(value, dict):
            inner = dict(base.get(key) or {}) if isinstance(base.get(key), dict) else {}
            inner.update(value)
            result[key] = inner
        else:
            result[key] = value
    return result
