"""Records of the simulated Sage 300: tables, payload deserialization, serialization, details.

Internal form: a record is a dict holding every property of its type in ``$metadata`` order;
dates are ``YYYY-MM-DD`` strings (Sage stores them date-only), amounts ints or floats, details
lists of dicts of the same form. Serialization adds the time and the server's offset to dates.

Deserialization follows ODL's strictness (guesses where noted):

- an unknown property is 400 ``InvalidPayload``; ``@odata.*`` annotations are ignored;
- a JSON type that does not fit the property (a number for ``Edm.String``, a string for
  ``Edm.Decimal``, a non-member for an enum, ``"1"`` for an enum) is 400 ``InvalidPayload``
  (guess: numeric enum strings are refused; the reference marks them unknown);
- dates may be ``YYYY-MM-DD`` or an ISO date-time with or without a zone; the date part as
  written is kept;
- ``null`` for a string is stored as ``""`` (Sage strings are never null); for a number or an
  enum it is 400.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .data import Company
from .odata import BOOL, COLLECTION, DATE, ENUM, NUMBER, STRING, ODataError
from .sage300_schema import ResourceSpec, StructSpec

Record = dict[str, Any]
Key = tuple[Any, ...]

_DATE_INPUT = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})?)?")


# --------------------------------------------------------------------------------------------
# Errors and money
# --------------------------------------------------------------------------------------------

def invalid_payload(message: str) -> ODataError:
    return ODataError(400, "InvalidPayload", message)


def business_error(message: str, code: str = "FieldInvalid") -> ODataError:
    """A rule of the Sage view refused the change: 409 with the view's message."""
    return ODataError(409, code, message)


def not_found() -> ODataError:
    return ODataError(404, "RecordNotFound", "A Record cannot be found for the specified entity key")


CENT = Decimal("0.01")


def dec(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def money(value: Decimal) -> int | float:
    """A decimal rounded to cents, as the JSON number Sage serializes."""
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

class Table:
    """The records of one resource in one company, keyed by their entity key."""

    def __init__(self, spec: ResourceSpec, records: Iterable[Record] = ()) -> None:
        self.spec = spec
        self.key_fields = tuple(spec.entity.key)
        self.rows: dict[Key, Record] = {}
        self.version = 0
        self._ordered: list[Record] | None = None
        for record in records:
            self.rows[self.key_of(record)] = record

    def key_of(self, record: Record) -> Key:
        return tuple(record[name] for name in self.key_fields)

    def get(self, key: Key) -> Record | None:
        return self.rows.get(key)

    def put(self, record: Record) -> None:
        self.rows[self.key_of(record)] = record
        self.changed()

    def delete(self, key: Key) -> None:
        del self.rows[key]
        self.changed()

    def changed(self) -> None:
        self.version += 1
        self._ordered = None

    def ordered(self) -> list[Record]:
        """All records in key order (cached until the next change)."""
        if self._ordered is None:
            self._ordered = [self.rows[key] for key in sorted(self.rows)]
        return self._ordered


@dataclass
class CompanyState:
    company: Company
    tables: dict[str, Table]
    tax_group: str = ""
    next_batch: int = 1
    next_posting_sequence: int = 1
    counters: dict[str, int] = field(default_factory=dict)
    # sage300_ap's (table versions, taken (vendor, document) pairs): see _taken_documents.
    taken_documents: tuple[tuple[int, int], set[tuple[str, str]]] | None = None

    def table(self, path: str) -> Table:
        return self.tables[path]


# --------------------------------------------------------------------------------------------
# Loading seed data
# --------------------------------------------------------------------------------------------

def load_record(spec: StructSpec, raw: Record) -> Record:
    """A seed record in internal form; every property present, dates date-only."""
    unknown = set(raw) - set(spec.types)
    if unknown:
        raise ValueError(f"seed data has properties not in {spec.type_name}: {sorted(unknown)}")
    record = {**spec.defaults, **raw}
    for name in spec.date_fields:
        value = record[name]
        if value is not None:
            record[name] = value[:10]
    for name, child in spec.details.items():
        record[name] = [load_record(child, row) for row in record[name] or []]
    return record


# --------------------------------------------------------------------------------------------
# Deserialization (request payloads)
# --------------------------------------------------------------------------------------------

def coerce_struct(spec: StructSpec, payload: Any, where: str = "") -> Record:
    """The properties given in ``payload``, typed and in internal form; 400 if malformed."""
    if not isinstance(payload, dict):
        raise invalid_payload(f"The request payload{where} must be a JSON object of type "
                              f"'{spec.full_name}'.")
    result: Record = {}
    for name, value in payload.items():
        if name.startswith("@") or "@odata." in name:
            continue
        edm = spec.types.get(name)
        if edm is None:
            raise invalid_payload(f"The property '{name}' does not exist on type "
                                  f"'{spec.full_name}'. Make sure to only use property names "
                                  "that are defined by the type.")
        if edm.kind == COLLECTION:
            if value is None:
                value = []
            if not isinstance(value, list):
                raise invalid_payload(f"The property '{name}' must be a JSON array.")
            child = spec.details[name]
            result[name] = [coerce_struct(child, row, f" ({name}[{index}])")
                            for index, row in enumerate(value)]
        else:
            result[name] = coerce_value(name, edm.kind, edm.name, edm.members, edm.integer, value)
    return result


def coerce_value(name: str, kind: str, type_name: str, members: tuple[str, ...], integer: bool,
                 value: Any) -> Any:
    def wrong() -> ODataError:
        return invalid_payload(f"Cannot convert the value {value!r} of property '{name}' to the "
                               f"expected type '{type_name}'.")
    if kind == STRING:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise wrong()
        return value
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        if integer and value != int(value):
            raise wrong()
        return int(value) if integer else value
    if kind == DATE:
        if value is None:
            return None
        if not isinstance(value, str):
            raise wrong()
        match = _DATE_INPUT.fullmatch(value)
        if not match:
            raise wrong()
        try:
            return date.fromisoformat(match.group(1)).isoformat()
        except ValueError:
            raise wrong() from None
    if kind == ENUM:
        if value not in members:
            raise invalid_payload(f"The value {value!r} of property '{name}' is not a member of "
                                  f"'{type_name}'. Valid members: {', '.join(members)}.")
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise wrong()
        return value
    raise wrong()


def check_key_unchanged(spec: StructSpec, data: Record, key: Key) -> None:
    """Drop the key fields from ``data``; 400 if they name another record than the URL."""
    for name, value in zip(spec.key, key, strict=True):
        if name in data and data.pop(name) != value:
            raise invalid_payload(f"The key property '{name}' in the payload does not match the "
                                  "entity key in the URL.")


# --------------------------------------------------------------------------------------------
# Details (complex-type collections)
# --------------------------------------------------------------------------------------------

def _detail_key(child: StructSpec, row: Record) -> Key | None:
    """The row's own key, or None when it has none (numbered rows with 0 count as none)."""
    values = []
    for name in child.key:
        value = row.get(name)
        if value in (None, "") or (child.number_step and value == 0):
            return None
        values.append(value)
    return tuple(values)


def _next_number(child: StructSpec, rows: list[Record]) -> int:
    name = child.key[0]
    return max((int(row[name]) for row in rows), default=0) + child.number_step


def new_detail(child: StructSpec, data: Record, parent_keys: Record) -> Record:
    """A detail row from its payload: defaults filled, the parent's key fields repeated."""
    row = {**child.defaults, **{k: v for k, v in data.items() if k not in child.details}}
    for name in child.details:
        row[name] = []
    row.update({k: v for k, v in parent_keys.items() if k in child.types})
    if "UpdateOperation" in row:
        row["UpdateOperation"] = "Unspecified"
    return row


def parent_keys_of(spec: StructSpec, record: Record) -> Record:
    """The fields every detail row repeats: the parent's key (reference §4)."""
    return {name: record[name] for name in spec.key}


def build_details(child: StructSpec, rows: list[Record], parent_keys: Record,
                  renumber: bool = False) -> list[Record]:
    """Fresh detail rows for an insert or a PUT: numbered, parent keys repeated, no dupes."""
    result: list[Record] = []
    seen: set[Key] = set()
    for data in rows:
        if data.get("UpdateOperation") == "Delete":
            continue
        row = new_detail(child, data, parent_keys)
        if child.number_step and (renumber or _detail_key(child, row) is None):
            row[child.key[0]] = _next_number(child, result)
        key = _detail_key(child, row)
        if key is None:
            raise business_error(f"{child.type_name} key {', '.join(child.key)} cannot be blank.")
        if key in seen:
            raise business_error(f"{child.type_name} {', '.join(map(str, key))} already exists.",
                                 "RecordDuplicate")
        seen.add(key)
        result.append(row)
    return _sorted_rows(child, result)


def merge_details(child: StructSpec, existing: list[Record], patches: list[Record],
                  parent_keys: Record,
                  on_row: Callable[[Record, Record | None], Record] | None = None
                  ) -> list[Record]:
    """PATCH semantics of a detail collection, by ``UpdateOperation`` (reference §5).

    ``Unspecified``: update the row whose key matches, else insert. ``Insert``: add (numbered
    rows get the next number). ``Update``/``Delete``: the row must exist (404 otherwise).
    Rows not mentioned stay. ``on_row(new_row, old_row)`` may validate or complete a row.
    """
    rows = {_detail_key(child, row): row for row in existing}
    for data in patches:
        operation = data.get("UpdateOperation", "Unspecified")
        key = _detail_key(child, data)
        if operation == "Insert" or (operation == "Unspecified" and (key is None or key not in rows)):
            if key is not None and key in rows:
                raise business_error(f"{child.type_name} {', '.join(map(str, key))} already "
                                     "exists.", "RecordDuplicate")
            row = new_detail(child, data, parent_keys)
            if key is None:
                if not child.number_step:
                    raise business_error(f"{child.type_name} key {', '.join(child.key)} cannot "
                                         "be blank.")
                row[child.key[0]] = _next_number(child, list(rows.values()))
            row = on_row(row, None) if on_row else row
            rows[_detail_key(child, row)] = row
            continue
        if key is None or key not in rows:
            raise not_found()
        if operation == "Delete":
            del rows[key]
            continue
        row = copy.deepcopy(rows[key])
        row.update({k: v for k, v in data.items() if k not in child.details
                    and k != "UpdateOperation"})
        rows[key] = on_row(row, rows[key]) if on_row else row
    return _sorted_rows(child, list(rows.values()))


def _sorted_rows(child: StructSpec, rows: list[Record]) -> list[Record]:
    return sorted(rows, key=lambda row: tuple(row[name] for name in child.key))


# --------------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------------

class Serializer:
    """Internal records to response JSON objects, dates with the server's offset."""

    def __init__(self, offset: str) -> None:
        self.suffix = "T00:00:00" + offset

    def record(self, spec: StructSpec, record: Record, select: list[str] | None = None) -> Record:
        if select is None:
            out = dict(record)
            if len(out) != len(spec.types):  # an older version's spec lacks some fields
                out = {name: record[name] for name in spec.types if name in record}
        else:
            chosen = set(select)
            out = {name: record[name] for name in spec.types if name in chosen}
        suffix = self.suffix
        for name in spec.date_fields:
            value = out.get(name)
            if value is not None:
                out[name] = value + suffix
        for name, child in spec.details.items():
            if name in out:
                out[name] = [self.record(child, row) for row in out[name]]
        return out
