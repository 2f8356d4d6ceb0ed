"""What several target-basware test modules share (on sys.path through conftest.py)."""

from __future__ import annotations

from typing import Any

from ml_connector_core.systems import DELIVERED_TO_KEY


def tap_states(values: list[Any], system: str) -> list[Any]:
    """The tap's STATE values as target-basware passed them on: every one names the tenant
    the records before it were delivered to (``delivered_to``), which is taken off here."""
    found = []
    for value in values:
        assert isinstance(value, dict) and value.get(DELIVERED_TO_KEY) == system, value
        found.append({k: v for k, v in value.items() if k != DELIVERED_TO_KEY})
    return found
