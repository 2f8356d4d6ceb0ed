"""pytest fixtures that run the sandbox over real HTTP on loopback, and what tests read from
the simulators' request logs.

Enable the fixtures with ``pytest_plugins = ["mlc_sandbox.testing"]`` in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests

from .serve import Sandbox, start_sandbox


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """Both simulators with demo data, shared by the session; see ``fresh_sandbox``."""
    running = start_sandbox(data="demo", seed=0)
    yield running
    running.stop()


@pytest.fixture
def fresh_sandbox(sandbox: Sandbox) -> Sandbox:
    """The session sandbox, reseeded, with faults, settings and request logs cleared."""
    for server in (sandbox.sage300, sandbox.basware):
        admin = f"{server.base_url}/_sandbox"
        requests.delete(f"{admin}/faults", timeout=10).raise_for_status()
        requests.post(f"{admin}/reset", json={"seed": 0, "data": "demo"}, timeout=60).raise_for_status()
    return sandbox


def started(entry: dict[str, Any]) -> float:
    """When the simulator began serving a logged request (its ``time`` is when the answer was
    ready, ``duration_ms`` how long that took)."""
    return entry["time"] - entry["duration_ms"] / 1000


def peak_in_flight(calls: Iterable[dict[str, Any]]) -> int:
    """The most of these logged requests the simulator was serving at one moment: requests in
    flight counted from the server's side, never from a test's wall clock."""
    calls = list(calls)
    events = sorted([(started(c), 1) for c in calls] + [(c["time"], -1) for c in calls])
    peak = current = 0
    for _, step in events:  # at one instant an end sorts before a start: no false overlap
        current += step
        peak = max(peak, current)
    return peak
