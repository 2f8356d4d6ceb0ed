"""Test kit for tap-sage300: the Sage 300 simulator's admin API and the tap run as a process.

The tap runs as its own CLI (`tap-sage300 --config --state`), exactly as Meltano runs it, and
what it asked the simulator for is read back from the simulator's request log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from tap_sage300.tap import TapSage300

TAP = str(Path(sys.executable).with_name("tap-sage300"))


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1]

    def of(self, stream: str, company: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records.get(stream, [])
                if company is None or r["company_id"] == company]


def parse_singer(stdout: str) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]],
                                      list[dict[str, Any]]]:
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    states = []
    for message in messages:
        if message["type"] == "RECORD":
            records[message["stream"]].append(message["record"])
        elif message["type"] == "STATE":
            states.append(message["value"])
    return messages, dict(records), states


class SageSandbox:
    """The Sage 300 simulator of the test session, with its admin API."""

    def __init__(self, server: Any, tmp_path: Path) -> None:
        self.root = server.base_url
        self.admin = f"{self.root}/_sandbox"
        self.base_url = f"{self.root}/Sage300WebApi/v1.0/-"
        self.tmp_path = tmp_path
        self._runs = 0

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The tap's config; no ledger unless a test asks for one (`ledger_url=...`, or
        `ledger_url=None` for the default: $ML_CONNECTOR_LEDGER_URL, else the project's)."""
        config = {"base_url": self.base_url, "company_ids": ["SAMINC", "SAMLTD"],
                  "username": SAGE_USER.lower(), "password": SAGE_PASSWORD, "ledger_url": "off"}
        config.update(overrides)
        return {name: value for name, value in config.items() if value is not None}

    def run(self, config: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
            catalog: dict[str, Any] | None = None, env: dict[str, str] | None = None
            ) -> TapRun:
        """Run the tap CLI to completion (or failure) and parse what it printed."""
        self._runs += 1
        args = [TAP]
        for name, value in (("config", config or self.config()), ("state", state),
                            ("catalog", catalog)):
            if value is not None:
                path = self.tmp_path / f"{name}-{self._runs}.json"
                path.write_text(json.dumps(value))
                args += [f"--{name}", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env,
                              cwd=self.tmp_path, check=False)
        messages, records, states = parse_singer(done.stdout)
        return TapRun(done.returncode, done.stdout, done.stderr, messages, records, states)

    def run_discover(self) -> dict[str, Any]:
        path = self.tmp_path / "discover-config.json"
        path.write_text(json.dumps(self.config()))
        done = subprocess.run([TAP, "--config", str(path), "--discover"], capture_output=True,
                              text=True, timeout=120, check=True)
        return json.loads(done.stdout)

    # -- admin API -------------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.admin}/requests", timeout=10)
        response.raise_for_status()
        return response.json()["requests"]

    def reads(self, resource: str) -> list[dict[str, list[str]]]:
        """The query options of every GET of a collection, e.g. ``SAMINC/AP/APVendors``."""
        return [parse_qs(r["query"], keep_blank_values=True) for r in self.requests()
                if r["method"] == "GET" and r["path"].endswith("/" + resource)]

    def reset(self, data: str) -> None:
        """Reseed with another data set, e.g. ``"1000"`` (the demo plus 1,000 vendors)."""
        requests.post(f"{self.admin}/reset", json={"seed": 0, "data": data},
                      timeout=120).raise_for_status()

    def clear_requests(self) -> None:
        requests.delete(f"{self.admin}/requests", timeout=10).raise_for_status()

    def settings(self, **changes: Any) -> None:
        requests.patch(f"{self.admin}/settings", json=changes, timeout=10).raise_for_status()

    def faults(self, **config: Any) -> None:
        requests.put(f"{self.admin}/faults", json=config, timeout=10).raise_for_status()

    def touch(self, company: str, resource: str, key: Any, **changes: Any) -> dict[str, Any]:
        response = requests.post(f"{self.admin}/touch", json={
            "company": company, "resource": resource, "key": key, "changes": changes},
            timeout=10)
        response.raise_for_status()
        return response.json()

    def delete(self, company: str, resource: str, key: Any) -> None:
        """Delete a record as a Sage user would: over the Web API."""
        from ml_connector_core.sage300_api import entity_key

        response = requests.delete(f"{self.base_url}/{company}/{resource}{entity_key(key)}",
                                   auth=(SAGE_USER, SAGE_PASSWORD.upper()), timeout=10)
        assert response.status_code == 204, response.text

    def state(self) -> dict[str, Any]:
        response = requests.get(f"{self.admin}/state", timeout=30)
        response.raise_for_status()
        return response.json()

    def table(self, company: str, resource: str) -> list[dict[str, Any]]:
        return self.state()["companies"][company][resource]

    def post(self, company: str, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a record the way a Sage user (or target-sage300) would: over the Web API."""
        from ml_connector_core.sage300_api import Sage300Client

        client = Sage300Client(base_url=self.base_url, company=company, username=SAGE_USER,
                               password=SAGE_PASSWORD)
        return client.create(resource, body)


def ap_batch(vendor: str, document: str, account: str, amount: float) -> dict[str, Any]:
    """A small AP invoice batch as target-sage300 would create it."""
    return {
        "BatchDate": "2026-10-01", "Description": f"ml-connector test {document}",
        "Invoices": [{
            "VendorNumber": vendor, "DocumentNumber": document, "DocumentType": "Invoice",
            "InvoiceDescription": "test", "DocumentDate": "2026-10-01",
            "InvoiceDetails": [{"GLAccount": account, "DistributedAmount": amount}],
            "InvoiceOptionalFields": [{"OptionalField": "BWINVID", "Value": document.lower()}],
        }],
    }


def run_in_process(config: dict[str, Any], capsysbinary: pytest.CaptureFixture[bytes]
                   ) -> list[dict[str, Any]]:
    """Sync the tap in this process (pytest captures its output); the vendors records."""
    tap = TapSage300(config=config)
    try:
        tap.sync_all()
    finally:  # what a failed run buffered goes out now, not at the interpreter's exit
        tap.message_writer.flush()
    out = capsysbinary.readouterr().out.decode()
    return [m["record"] for m in map(json.loads, out.splitlines())
            if m["type"] == "RECORD" and m["stream"] == "vendors"]
