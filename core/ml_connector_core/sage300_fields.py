"""What a Sage 300 install offers, read from its own ``$metadata``, against what the connector
uses of it.

Sage publishes no field list for the AP, PO and GL resources, and Sage 300 versions differ:
many names the connector depends on come from third-party code or are inferred
(docs/sage-fields.md lists each with its evidence). A wrong name in ``$select``/``$filter``
is a 400 for the whole request; a wrong name in a response is a value silently missing. The
one authority is the customer's server: ``GET .../-/{COMPANY}/{MODULE}/$metadata`` returns the
EDMX (entity sets, entity and complex types, properties, keys) of that install.

- :class:`FieldUse`: one thing a plugin depends on (an entity set, or a property reached
  through detail collections), the kind of value it needs, and what the plugin does with it.
- :class:`FieldNames`: the ``field_names`` setting of both Sage plugins, for an install that
  names a field differently: ``{"PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount":
  "GLExpenseAccount"}``. Keys are the connector's names (the resource, then the property
  path through detail collections, all joined by ``/``: Meltano drops the keys of an object
  setting that hold a dot); values are the install's name of the last segment.
- :class:`Metadata`: one module's EDMX, parsed (v4, and the v3 of older installs).
- :func:`verify`: each use that does not fit the install, with what to do about it.
"""

from __future__ import annotations

import difflib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .sage300_api import Sage300Client, Sage300Error, raise_for_sage_status

#: The value kinds a use can need, and the EDM types that carry them. Sage serializes enums
#: as member names, so an enum type (or, in v3 metadata, Edm.String) passes for text.
_NUMBERS = {"Edm.Decimal", "Edm.Double", "Edm.Single", "Edm.Int16", "Edm.Int32", "Edm.Int64",
            "Edm.Byte", "Edm.SByte"}
_KINDS: dict[str, set[str]] = {
    "text": {"Edm.String"},
    "choice": {"Edm.String"},
    "number": _NUMBERS,
    "integer": _NUMBERS,  # Sage keys are Edm.Decimal with integral values
    "date": {"Edm.DateTimeOffset", "Edm.DateTime", "Edm.Date"},
    "boolean": {"Edm.Boolean", "Edm.String"},
    "details": set(),  # a Collection(...) of a complex type
    "any": set(),
}
KINDS = frozenset(_KINDS)


@dataclass(frozen=True)
class FieldUse:
    """One dependency of a plugin on the Sage install.

    ``path`` is empty for the entity set itself; otherwise property names from the entity
    down through detail collections, e.g. ``("Invoices", "InvoiceDetails", "GLAccount")``.
    ``members``: enum members the plugin filters on or writes (``BatchStatus eq 'Posted'``).
    ``optional``: the plugin works without it (it leaves the field out): a warning, not an
    error. ``fix``: what to do when it is missing, in the plugin's words.
    """

    plugin: str
    role: str  # "stream vendors", "invoice batches it creates", ...
    resource: str  # MODULE/Resource, e.g. AP/APVendors
    path: tuple[str, ...] = ()
    kind: str = "any"
    members: tuple[str, ...] = ()
    optional: bool = False
    fix: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} (one of {sorted(KINDS)})")

    @property
    def module(self) -> str:
        return self.resource.split("/", 1)[0]

    @property
    def entity_set(self) -> str:
        return self.resource.split("/", 1)[1]

    @property
    def name(self) -> str:
        """The connector's name of the field: ``AP/APVendors/VendorNumber``."""
        return "/".join([self.resource, *self.path])


def field_use(plugin: str, role: str, name: str, kind: str = "any", **kwargs: Any) -> FieldUse:
    """A use written as its name: ``field_use(p, r, "AP/APVendors/Status", "choice")``."""
    resource, path = split_name(name)
    return FieldUse(plugin, role, resource, path, kind, **kwargs)


def split_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``MODULE/Resource/field/...`` as (resource, field path); ValueError if it is not one."""
    module, _, rest = str(name).partition("/")
    entity_set, _, fields = rest.partition("/")
    path = tuple(fields.split("/")) if fields else ()
    if not module or not entity_set or not all(path):
        raise ValueError(name)
    return f"{module}/{entity_set}", path


# -- the install's own names ---------------------------------------------------------------------

FIELD_NAMES_DESCRIPTION = (
    "Where this Sage 300 install names a field differently from the connector's default: "
    "{\"<MODULE>/<Resource>/<field path>\": \"<the install's name>\"}, e.g. "
    "{\"PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount\": \"GLExpenseAccount\"}. "
    "The defaults and their evidence: docs/sage-fields.md; `ml-connector check` names a "
    "missing field and its likely name in the install's $metadata.")


class FieldNames:
    """The ``field_names`` setting: the install's name for some of the connector's fields."""

    def __init__(self, setting: Mapping[str, Any] | None = None) -> None:
        self._renames: dict[str, dict[tuple[str, ...], str]] = {}
        for key, value in (setting or {}).items():
            try:
                resource, path = split_name(key)
            except ValueError:
                path = ()
            if not path:
                raise ValueError(f"field_names: key {key!r} is not '<MODULE>/<Resource>/"
                                 "<field>' (e.g. 'AP/APVendors/TaxRegistrationCode1')")
            if not isinstance(value, str) or not value.strip() or not value.isidentifier():
                raise ValueError(f"field_names: the value for {key!r} must be the install's "
                                 f"property name (letters and digits), got {value!r}")
            self._renames.setdefault(resource, {})[path] = value.strip()

    def __bool__(self) -> bool:
        return bool(self._renames)

    def has_renames(self, resource: str) -> bool:
        return resource in self._renames

    def wire(self, resource: str, *path: str) -> str:
        """The install's name of the last segment of ``path``."""
        return self._renames.get(resource, {}).get(tuple(path), path[-1])

    def wire_path(self, resource: str, path: Iterable[str]) -> tuple[str, ...]:
        path = tuple(path)
        return tuple(self.wire(resource, *path[:i + 1]) for i in range(len(path)))

    def to_wire(self, resource: str, payload: Any) -> Any:
        """A request body (or its part) with the connector's names changed to the install's."""
        renames = self._renames.get(resource)
        return _rename(payload, (), renames, forward=True) if renames else payload

    def from_wire(self, resource: str, record: Any) -> Any:
        """A record as the install wrote it, with the connector's names."""
        renames = self._renames.get(resource)
        return _rename(record, (), renames, forward=False) if renames else record


def _rename(value: Any, path: tuple[str, ...], renames: dict[tuple[str, ...], str],
            *, forward: bool) -> Any:
    if isinstance(value, list):
        return [_rename(item, path, renames, forward=forward) for item in value]
    if not isinstance(value, dict):
        return value
    if forward:
        names = {key: renames.get((*path, key), key) for key in value}
        children = {key: (*path, key) for key in value}
    else:
        back = {wire: p[-1] for p, wire in renames.items() if p[:-1] == path}
        names = {key: back.get(key, key) for key in value}
        children = {key: (*path, names[key]) for key in value}
    return {names[key]: _rename(item, children[key], renames, forward=forward)
            for key, item in value.items()}


# -- $metadata -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Property:
    name: str
    type: str  # "Edm.String", "Sage...Enums.Status", "Collection(Sage...Models.Invoice)"

    @property
    def element_type(self) -> str | None:
        """For a collection, the type of its rows."""
        if self.type.startswith("Collection(") and self.type.endswith(")"):
            return self.type[len("Collection("):-1]
        return None


@dataclass
class StructType:
    name: str  # full name, Namespace.Name
    properties: dict[str, Property] = field(default_factory=dict)
    key: list[str] = field(default_factory=list)


@dataclass
class Metadata:
    """One module's ``$metadata``: entity sets, entity and complex types, enums."""

    module: str
    entity_sets: dict[str, str] = field(default_factory=dict)  # set name -> entity type
    types: dict[str, StructType] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)

    def entity(self, entity_set: str) -> StructType | None:
        type_name = self.entity_sets.get(entity_set)
        return self.types.get(type_name) if type_name else None

    def struct(self, type_name: str) -> StructType | None:
        return self.types.get(type_name)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_metadata(module: str, document: str | bytes) -> Metadata:
    """The EDMX of one module. Namespaces are matched by local name, so the OData v4 document
    of current installs and the v3 one of older ones both read; aliases are resolved."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise ValueError(f"the {module} $metadata is not XML: {exc}") from None
    if _local(root.tag) != "Edmx":
        raise ValueError(f"the {module} $metadata is not an EDMX document (root "
                         f"<{_local(root.tag)}>)")
    metadata = Metadata(module)
    aliases: dict[str, str] = {}
    schemas = [el for el in root.iter() if _local(el.tag) == "Schema"]
    for schema in schemas:
        if schema.get("Alias"):
            aliases[schema.get("Alias", "")] = schema.get("Namespace", "")

    def full(name: str) -> str:
        if name.startswith("Collection(") and name.endswith(")"):
            return f"Collection({full(name[len('Collection('):-1])})"
        prefix, _, local = name.rpartition(".")
        return f"{aliases.get(prefix, prefix)}.{local}" if prefix else name

    for schema in schemas:
        namespace = schema.get("Namespace", "")
        for element in schema:
            kind = _local(element.tag)
            if kind in ("EntityType", "ComplexType"):
                struct = StructType(f"{namespace}.{element.get('Name')}")
                for part in element:
                    if _local(part.tag) == "Property":
                        name = part.get("Name", "")
                        struct.properties[name] = Property(name, full(part.get("Type", "")))
                    elif _local(part.tag) == "Key":
                        struct.key = [ref.get("Name", "") for ref in part.iter()
                                      if _local(ref.tag) == "PropertyRef"]
                metadata.types[struct.name] = struct
            elif kind == "EnumType":
                metadata.enums[f"{namespace}.{element.get('Name')}"] = [
                    member.get("Name", "") for member in element if _local(member.tag) == "Member"]
            elif kind == "EntityContainer":
                for entity_set in element:
                    if _local(entity_set.tag) == "EntitySet":
                        metadata.entity_sets[entity_set.get("Name", "")] = full(
                            entity_set.get("EntityType", ""))
    return metadata


def fetch_metadata(client: Sage300Client, module: str) -> Metadata:
    """``GET .../{company}/{module}/$metadata`` of the client's company, parsed."""
    url = f"{client.base_url}/{client.company}/{module}/$metadata"
    response = client.call("GET", url, accept="application/xml")
    raise_for_sage_status(response, client.username, f"Reading {module}/$metadata of company "
                          f"{client.company} (module {module})",
                          keep_password_case=client.keep_password_case)
    try:
        return parse_metadata(module, response.content)
    except ValueError as exc:
        raise Sage300Error(f"GET {module}/$metadata: {exc}. Fix: check that base_url ends "
                           "in /Sage300WebApi/v1.0/- (a proxy or login page may answer "
                           "instead of Sage).", status=response.status_code) from None


# -- verification --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """A use that does not fit the install."""

    use: FieldUse
    problem: str  # what is wrong, in the install's names
    candidates: tuple[str, ...] = ()  # similar names the install has
    missing: bool = False  # the install has no property of that name (field_names may help)
    whole_resource: bool = False  # the install lacks the entity set: one finding for all uses

    @property
    def severity(self) -> str:
        return "warning" if self.use.optional else "error"

    def message(self) -> str:
        use = self.use
        text = f"{use.plugin}, {use.role}: {self.problem}."
        if use.optional:
            text += " The connector goes on without it (the field is left out)."
        fixes = [use.fix] if use.fix else []
        if self.missing:
            hint = f" (similar names in this install: {', '.join(self.candidates)})" \
                if self.candidates else ""
            fixes.append(f"if this install names it differently, set {use.plugin}'s "
                         f"field_names to {{\"{use.name}\": \"<its name>\"}}{hint}")
        if fixes:
            text += " Fix: " + "; or ".join(fixes) + "."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "plugin": self.use.plugin, "role": self.use.role,
                "field": self.use.resource if self.whole_resource else self.use.name, "problem": self.problem, "missing": self.missing,
                "candidates": list(self.candidates), "message": self.message()}


def verify(uses: Iterable[FieldUse], metadata: Mapping[str, Metadata],
           names: FieldNames | None = None) -> list[Finding]:
    """Every use that the install's metadata does not offer with a compatible type (one
    finding per distinct field and plugin, in the order the uses came)."""
    names = names or FieldNames()
    findings: dict[tuple[str, str, str], Finding] = {}
    for use in uses:
        key = (use.plugin, use.name, ",".join(use.members))
        if key in findings or (use.plugin, use.resource, "") in findings:
            continue
        found = _check(use, metadata.get(use.module), names)
        if found is not None and found.whole_resource:  # said once, not once per field
            key = (use.plugin, use.resource, "")
        if found is not None:
            findings[key] = found
    return list(findings.values())


def _check(use: FieldUse, module: Metadata | None, names: FieldNames) -> Finding | None:
    if module is None:
        return Finding(use, f"module {use.module} has no $metadata in this install")
    struct = module.entity(use.entity_set)
    if struct is None:
        similar = difflib.get_close_matches(use.entity_set, module.entity_sets, n=3)
        return Finding(use, f"this install has no entity set {use.resource}", tuple(similar),
                       whole_resource=True)
    wire = names.wire_path(use.resource, use.path)
    for depth, name in enumerate(wire):
        where = "/".join([use.resource, *wire[:depth]])
        prop = struct.properties.get(name)
        if prop is None:
            similar = difflib.get_close_matches(name, struct.properties, n=3, cutoff=0.6)
            contains = [p for p in struct.properties if p != name and (
                name.lower() in p.lower() or p.lower() in name.lower())]
            candidates = tuple(dict.fromkeys([*similar, *contains[:3]]))[:4]
            return Finding(use, f"{where} has no property {name} in this install's $metadata",
                           candidates, missing=True)
        last = depth == len(wire) - 1
        element = prop.element_type
        if not last:
            struct = module.struct(element) if element else None
            if struct is None:
                return Finding(use, f"{where}/{name} is {prop.type}, not a detail collection")
            continue
        problem = _type_problem(use, prop, module)
        if problem:
            return Finding(use, f"{where}/{name} is {problem}")
    return None


def _type_problem(use: FieldUse, prop: Property, module: Metadata) -> str | None:
    kind = use.kind
    if kind == "any":
        return None
    if kind == "details":
        return None if prop.element_type else f"{prop.type}, not a detail collection"
    members = module.enums.get(prop.type)
    if members is not None:  # an enum: text to the client, checked member by member
        if kind not in ("text", "choice", "boolean"):
            return f"the enum {prop.type}, not {kind}"
        missing = [m for m in use.members if m not in members]
        if missing:
            return (f"the enum {prop.type} without the member(s) {', '.join(missing)} "
                    f"(it has {', '.join(members)})")
        return None
    if prop.type not in _KINDS[kind]:
        return f"{prop.type}, not {kind}"
    return None


def verify_install(client: Sage300Client, uses: list[FieldUse],
                   names: FieldNames | None = None) -> list[Finding]:
    """Read the ``$metadata`` of every module the uses name (one GET each, from the client's
    company) and verify the uses against it."""
    modules = sorted({use.module for use in uses})
    metadata = {module: fetch_metadata(client, module) for module in modules}
    return verify(uses, metadata, names)


class InstallMismatch(RuntimeError):
    """The install lacks fields the run needs: nothing was read or written."""

    def __init__(self, plugin: str, findings: list[Finding], base_url: str) -> None:
        errors = [f for f in findings if f.severity == "error"]
        shown = "\n".join(f"  - {f.message()}" for f in errors)
        super().__init__(
            f"{plugin}: the Sage 300 install at {base_url} does not offer {len(errors)} "
            f"field(s) this run needs (from its $metadata); nothing was read or written:\n"
            f"{shown}\n`ml-connector check` shows the same list; docs/sage-fields.md says "
            "where each name comes from.")
        self.findings = findings


def install_report(plugin: str, client: Sage300Client, uses: list[FieldUse],
                   names: FieldNames | None = None) -> str:
    """``metadata_check: only``: a plugin's uses checked, as the one JSON line it prints
    (read by ``ml-connector check``)."""
    findings = verify_install(client, uses, names)
    return json.dumps({"plugin": plugin, "uses": len(uses),
                       "modules": sorted({use.module for use in uses}),
                       "findings": [finding.as_dict() for finding in findings]})
