"""What tap-sage300 reads from the Sage 300 install, as the install's ``$metadata`` must offer it.

Every selected stream uses its entity set, each selected field (with its value kind, detail
collections and their fields included), the field its incremental filter compares and any
field of its fixed filter. The PO lines stream also reads the line's expense account and
completion, and the GL account the line is coded to (``core`` checks them all:
``ml_connector_core.sage300_fields``). Only what the catalog selects is checked, so an install
without an optional field is fixed by deselecting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ml_connector_core.sage300_fields import FieldUse

PLUGIN = "tap-sage300"


class ReadStream(Protocol):
    """What these uses take from a stream (tap_sage300.client.Sage300Stream)."""

    name: str
    resource: str
    replication_key: str | None
    primary_keys: Sequence[str] | None
    filter_fields: tuple[str, ...]

    @property
    def schema(self) -> dict[str, Any]: ...

    @property
    def shape(self) -> Any: ...  # RecordShape: the selected fields, in ``fields``


def schema_kind(schema: Mapping[str, Any]) -> str:
    """The value kind (sage300_fields.KINDS) a JSON schema property takes from Sage."""
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    if "enum" in schema:
        return "choice"
    if "string" in kinds:
        return "date" if schema.get("format") in ("date-time", "date") else "text"
    if "array" in kinds:
        return "details"
    for kind in ("integer", "number", "boolean"):
        if kind in kinds:
            return kind
    return "any"


#: `select` in a Meltano environment replaces the plugin's list instead of adding to it: a
#: deselection typed with an environment active would deselect everything else.
SELECT = "meltano --no-environment select tap-sage300"


def stream_off_fix(stream: str) -> str:
    return (f"turn the stream off (`{SELECT} --rm {stream} '*'`) or upgrade Sage 300 to a "
            "version that offers it")


def deselect_fix(stream: str, *fields: str) -> str:
    commands = ", ".join(f"`{SELECT} --exclude {stream} {field}`" for field in fields)
    return f"deselect {' and '.join(fields)} ({commands})"


def _property_uses(stream: ReadStream, path: tuple[str, ...], schema: Mapping[str, Any],
                   fix: str) -> Iterable[FieldUse]:
    yield FieldUse(PLUGIN, f"stream {stream.name}", stream.resource, path, schema_kind(schema),
                   fix=fix)
    items = schema.get("items") or {}
    for name, child in (items.get("properties") or {}).items():
        yield from _property_uses(stream, (*path, name), child, fix)


def stream_uses(stream: ReadStream) -> list[FieldUse]:
    """The entity set, the selected fields and the filter fields of one stream."""
    role = f"stream {stream.name}"
    off = stream_off_fix(stream.name)
    uses = [FieldUse(PLUGIN, role, stream.resource, fix=off)]
    properties = stream.schema["properties"]
    for name in stream.shape.fields:
        fix = deselect_fix(stream.name, name) if name not in (stream.primary_keys or ()) \
            else off
        uses.extend(_property_uses(stream, (name,), properties[name], fix))
    if stream.replication_key:
        uses.append(FieldUse(PLUGIN, f"{role} (its incremental filter)", stream.resource,
                             (stream.replication_key,), "date", fix=off))
    for name in stream.filter_fields:
        uses.append(FieldUse(PLUGIN, f"{role} (its filter)", stream.resource, (name,), "text",
                             fix=off))
    return uses


def gl_lookup_uses(cost_center_field: str, role: str) -> list[FieldUse]:
    """The GL chart look-up that gives a PO line its formatted account and cost center."""
    fix = ("the PO lines' GL account and cost center are looked up there; deselect "
           "cost_center and gl_account_formatted of purchase_order_lines to do without")
    return [FieldUse(PLUGIN, f"{role} (GL account look-up)", "GL/GLAccounts", path, kind,
                     fix=fix)
            for path, kind in ((("UnformattedAccount",), "text"),
                               (("AccountNumber",), "text"),
                               ((cost_center_field,), "text"))]
