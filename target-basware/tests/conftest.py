"""Helpers: run target-basware as a process against the sandbox, and look at what arrived.

The target runs as its own process (as Meltano runs it), fed a `.singer` fixture file; the
assertions read the Basware simulator's request log and state over HTTP, and the ledger.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from ml_connector_core.ledger import Entry, Ledger
from ml_connector_core.systems import basware_system
from mlc_sandbox.data import BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET
from mlc_sandbox.serve import Sandbox

sys.path.insert(0, str(Path(__file__).parent))  # target_basware_testkit, for the test modules
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class TargetRun:
    returncode: int
    states: list[Any]  # the tap's STATE values the target emitted, in order (tap_states)
    stderr: str


class Basware:
    """The Basware simulator as the tests see it: request log, state, faults, settings."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.admin = f"{base_url}/_sandbox"

    def requests(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.admin}/requests", timeout=30).json()["requests"]

    def posts(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Import POSTs (not token requests), optionally to one endpoint, e.g. "vendors"."""
        return [r for r in self.requests() if r["method"] == "POST"
                and r["path"].startswith("/v1/") and r["path"] != "/v1/tokens"
                and (endpoint is None or r["path"] == f"/v1/{endpoint}")]

    def clear_log(self) -> None:
        requests.delete(f"{self.admin}/requests", timeout=30).raise_for_status()

    def reset(self) -> None:
        """Back to the demo data, with no faults and an empty log."""
        requests.post(f"{self.admin}/reset", json={"seed": 0, "data": "demo"},
                      timeout=60).raise_for_status()

    def tenant(self) -> dict[str, Any]:
        state = requests.get(f"{self.admin}/state", timeout=60).json()
        return state["tenants"][BASWARE_CLIENT_ID]

    def records(self, endpoint: str) -> dict[str, dict[str, Any]]:
        """Stored records of one endpoint by externalCode (without Basware's lastUpdated)."""
        stored = self.tenant()["master_data"].get(endpoint, [])
        return {r["externalCode"]: {k: v for k, v in r.items() if k != "lastUpdated"}
                for r in stored}

    def item_statuses(self) -> dict[tuple[str, str], str]:
        """(entityType, externalCode) -> item status of its latest requestStatus entry."""
        statuses: dict[tuple[str, str], str] = {}
        for entry in self.tenant()["request_status"]:
            for system in entry["systems"]:
                for item in system["items"]:
                    statuses[(entry["entityType"], item["externalCode"])] = item["status"]
        return statuses

    def faults(self, config: dict[str, Any]) -> None:
        requests.put(f"{self.admin}/faults", json=config, timeout=30).raise_for_status()

    def settings(self, changes: dict[str, Any]) -> None:
        requests.patch(f"{self.admin}/settings", json=changes, timeout=30).raise_for_status()


@pytest.fixture
def basware(fresh_sandbox: Sandbox) -> Basware:
    return Basware(fresh_sandbox.basware.base_url)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


@pytest.fixture
def target_config(basware: Basware, ledger_url: str) -> dict[str, Any]:
    return {"client_id": BASWARE_CLIENT_ID, "client_secret": BASWARE_CLIENT_SECRET,
            "base_url": basware.base_url, "ledger_url": ledger_url,
            "request_status_timeout": 60}


@pytest.fixture
def run_target(target_config: dict[str, Any], tmp_path: Path
               ) -> Callable[..., TargetRun]:
    """Run target-basware on a fixture file (name under fixtures/ or a path)."""

    def run(fixture: str | Path, **config: Any) -> TargetRun:
        path = Path(fixture) if Path(fixture).is_absolute() else FIXTURES / fixture
        config_file = tmp_path / "target-config.json"
        config_file.write_text(json.dumps({**target_config, **config}))
        done = subprocess.run(
            [sys.executable, "-m", "target_basware.target", "--config", str(config_file),
             "--input", str(path)],
            capture_output=True, text=True, timeout=300, check=False)
        states = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        from target_basware_testkit import tap_states

        system = basware_system({**target_config, **config})
        return TargetRun(done.returncode, tap_states(states, system), done.stderr)

    return run


def entries_of(ledger: Ledger, key: str) -> list[Entry]:
    """Every ledger entry of one record key, oldest first."""
    return [e for e in ledger.trace(key) if e.source_key == key]


@pytest.fixture
def ledger_entries(ledger: Ledger) -> Callable[[str], list[Entry]]:
    return lambda key: entries_of(ledger, key)
