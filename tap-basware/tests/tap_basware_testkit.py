"""Helpers for tap-basware's tests: the simulator's admin API and a tap run's output.

(A uniquely named module, not conftest: with --import-mode=importlib several packages'
conftest modules coexist and cannot be imported by name.)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mlc_sandbox.data import BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET

TAP_EXECUTABLE = Path(sys.executable).parent / "tap-basware"
COMPANIES = ["US01", "CA01"]


class BaswareAdmin:
    """The Basware simulator's admin API: its state, the requests it received, its faults."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.admin = f"{base_url}/_sandbox"

    def state(self) -> dict[str, Any]:
        response = requests.get(f"{self.admin}/state", timeout=30)
        response.raise_for_status()
        return response.json()

    def invoices(self) -> dict[str, dict[str, Any]]:
        """Every invoice the simulator holds, by invoiceId."""
        state = self.state()
        tenants = state.get("tenants", state)
        tenant = tenants.get(BASWARE_CLIENT_ID, tenants) if isinstance(tenants, dict) else {}
        invoices = tenant.get("invoices", {})
        if isinstance(invoices, list):
            return {invoice["invoiceId"]: invoice for invoice in invoices}
        return invoices

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        response = requests.get(f"{self.admin}/requests", params={"since": since}, timeout=30)
        response.raise_for_status()
        return response.json()["requests"]

    def last_seq(self) -> int:
        return requests.get(f"{self.admin}/requests", timeout=30).json()["last_seq"]

    def faults(self, config: dict[str, Any]) -> dict[str, Any]:
        response = requests.put(f"{self.admin}/faults", json=config, timeout=30)
        response.raise_for_status()
        return response.json()

    def settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        response = requests.patch(f"{self.admin}/settings", json=changes, timeout=30)
        response.raise_for_status()
        return response.json()

    def admin_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        """A new approved invoice waiting for transfer, as a P2P user would create it."""
        response = requests.post(f"{self.admin}/invoices", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def retransfer(self, invoice_id: str) -> dict[str, Any]:
        response = requests.post(f"{self.admin}/invoices/{invoice_id}/retransfer", json={},
                                 timeout=30)
        response.raise_for_status()
        return response.json()

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A call as another client would make it (Basic auth, which the P2P API accepts)."""
        headers = {"X-BW-REQUEST-ID": "0b0c6f4e-8a59-4c2b-9d41-5a2e6f1d7c30",
                   **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base_url}{path}", headers=headers,
                                auth=(BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET), timeout=30,
                                **kwargs)


def header(entry: dict[str, Any], name: str) -> str | None:
    """A header of a logged request, by case-insensitive name."""
    for key, value in entry.get("headers", {}).items():
        if key.lower() == name.lower():
            return value
    return None


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def records(self, stream: str = "accounting_documents") -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages
                if m["type"] == "RECORD" and m["stream"] == stream]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1]


