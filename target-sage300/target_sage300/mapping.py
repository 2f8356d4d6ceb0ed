"""A stream map that fails on one record rejects that record, not the run.

The SDK evaluates the stream maps of the target's config on every record before any sink sees
it, and an expression that raises (``netSum < 0`` on the string ``'125.00'``, ``r['netTotal']``
on a null coding row) ends the whole run: nothing is written, for every company, run after
run. ml-connector's own maps only rename (``record.get('netSum')``), so they cannot fail; a
map an operator writes may. :func:`guard` wraps each map that feeds ``ap_invoices`` so that a
failure becomes a :class:`MappingFailed` record: what could be evaluated (the ``source_id``
above all, so the source hears of it) and which property's expression failed on what. The
sink rejects it alone like any contract violation, naming the field.
"""

from __future__ import annotations

import ast
from typing import Any

_GUARDED = "_ml_connector_guarded"


class MappingFailed(dict):
    """The properties a stream map could evaluate for a record, and its failures
    ``[(property, "TypeError: ...")]`` (``(record)`` when no single property failed)."""

    def __init__(self, values: dict[str, Any], failures: list[tuple[str, str]]) -> None:
        super().__init__(values)
        self.failures = failures


def _why(error: BaseException) -> str:
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {cause}"[:200]


def _evaluate(stream_map: Any, expressions: Any, record: Any,
              error: BaseException) -> MappingFailed:
    """Each property on its own, to name the one that fails (SDK 0.54's CustomStreamMap
    evaluates with ``_eval(expr, parsed, record, property)``)."""
    values: dict[str, Any] = {}
    failures: list[tuple[str, str]] = []
    evaluate = getattr(stream_map, "_eval", None)
    if isinstance(record, dict) and isinstance(expressions, dict) and callable(evaluate):
        for name, expression in expressions.items():
            if str(name).startswith("__") or not isinstance(expression, str) \
                    or expression == "__NULL__":
                continue
            try:
                values[name] = evaluate(expression, ast.parse(expression).body[0], record, name)
            except Exception as exc:  # noqa: BLE001 - any failure is this record's problem
                failures.append((name, _why(exc)))
    return MappingFailed(values, failures or [("(record)", _why(error))])


def guard(stream_maps: list[Any], config_maps: Any) -> None:
    """Wrap each of these stream maps (once) so that a failing record comes out as
    :class:`MappingFailed` instead of raising. ``config_maps``: the ``stream_maps`` setting."""
    for stream_map in stream_maps:
        if getattr(stream_map, _GUARDED, False):
            continue
        expressions = (config_maps or {}).get(stream_map.stream_name) \
            if isinstance(config_maps, dict) else None
        original = stream_map.transform

        def transform(record: Any, _map: Any = stream_map, _original: Any = original,
                      _expressions: Any = expressions) -> Any:
            try:
                return _original(record)
            except Exception as exc:  # noqa: BLE001 - rejected alone by the sink
                return _evaluate(_map, _expressions, record, exc)

        stream_map.transform = transform
        setattr(stream_map, _GUARDED, True)
