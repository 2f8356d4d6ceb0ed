"""pytest fixtures that run the sandbox over real HTTP on loopback.

Enable with ``pytest_plugins = ["mlc_sandbox.testing"]`` in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

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
