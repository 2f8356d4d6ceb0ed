"""What several target-basware test modules share (on sys.path through conftest.py)."""

from __future__ import annotations

from typing import Any

from ml_connector_core.restore import MARK_KEY, read_mark
from ml_connector_core.systems import DELIVERED_TO_KEY


def tap_states(values: list[Any], system: str) -> list[Any]:
    """The tap's STATE values as target-basware passed them on: every one names the tenant
    the records before it were delivered to (``delivered_to``) and carries the run's mark
    (``ledger_mark``, ml_connector_core.restore), which are taken off here."""
    found = []
    for value in values:
        assert isinstance(value, dict) and value.get(DELIVERED_TO_KEY) == system, value
        assert read_mark(value) is not None, value
        found.append({k: v for k, v in value.items() if k not in (DELIVERED_TO_KEY, MARK_KEY)})
    return found
