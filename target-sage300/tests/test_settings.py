"""Timeouts: the flat settings every Sage 300 plugin has, and the old `timeouts` object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from target_sage300.target import TargetSage300


def _policies(tmp_path: Path, **config: Any) -> tuple[tuple[float, float], float]:
    target = TargetSage300(config={
        "base_url": "https://erp.example.com/Sage300WebApi/v1.0/-", "username": "WEBAPI",
        "password": "pw", "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}", **config})
    run = target.invoice_run
    try:
        return run.read_policy.timeout, run.write_policy.read_timeout
    finally:
        run.finish("success")


@pytest.mark.parametrize(("config", "read", "write"), [
    ({}, (10, 120), 120),  # the defaults, as in tap-sage300
    ({"connect_timeout": 3, "read_timeout": 30, "write_timeout": 300}, (3, 30), 300),
    # The old form still works, and wins: a config that still has it meant it.
    ({"timeouts": {"connect": 5, "read": 2, "write": 2}, "read_timeout": 30}, (5, 2), 2),
    ({"timeouts": {"write": 300}}, (10, 120), 300),
])
def test_timeouts_flat_or_old_form(tmp_path: Path, config: dict[str, Any],
                                   read: tuple[float, float], write: float) -> None:
    assert _policies(tmp_path, **config) == (read, write)
