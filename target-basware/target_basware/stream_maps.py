"""A shortcut for the stream maps' plain renames (`vendorCode: VendorNumber` in meltano.yml).

The SDK evaluates every mapped property with simpleeval, copying the record into a names dict
each time: about two thirds of this target's CPU per record at 100,000 records, and most of
the properties are bare field names. For an expression that is one name of a record field
(and not one of the names the SDK binds itself), the value is read from the record directly,
exactly what simpleeval would return; everything else goes to the SDK as before.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from typing import Any

from singer_sdk.mapper import CustomStreamMap

_SDK_EVAL = CustomStreamMap._eval
# Names the SDK binds over record fields of the same name (mapper.CustomStreamMap._eval).
_BOUND = frozenset({"_", "record", "config", "self", "fake", "__stream_name__",
                    "__original_stream_name__"})
_PLAIN = (str, int, float, Decimal, type(None))  # bool is an int


def _eval(self: CustomStreamMap, expr: str, expr_parsed: ast.Expr, record: dict,
          property_name: str | None) -> Any:
    node = getattr(expr_parsed, "value", None)
    if node.__class__ is ast.Name and node.id not in _BOUND and node.id in record:
        value = record[node.id]
        if isinstance(value, _PLAIN):
            return value
    return _SDK_EVAL(self, expr, expr_parsed, record, property_name)


def install() -> None:
    """Route the SDK's map evaluation through the shortcut (idempotent)."""
    CustomStreamMap._eval = _eval  # type: ignore[method-assign]
