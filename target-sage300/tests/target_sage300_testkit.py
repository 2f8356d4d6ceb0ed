"""Helpers for target-sage300's tests: run the target against the Sage 300 simulator over HTTP
and read back what Sage holds and what it was sent."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ml_connector_core.ledger import Ledger
from ml_connector_core.outcome_handover import INLINE_KEY, pending_replies, pending_runs
from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox
from target_sage300.target import TargetSage300

FIXTURES = Path(__file__).parent / "fixtures"
SAGE_AUTH = (SAGE_USER.upper(), SAGE_PASSWORD.upper())

# A purchase order the fixtures reference. Created through the Web API as a buyer would, so
# the fixtures do not depend on the demo data's random POs.
FIXTURE_PO = {
    "PurchaseOrderNumber": "POFX0001", "Vendor": "1200", "Description": "Fixture PO",
    "PurchaseOrderLines": [
        {"LineNumber": 1000, "ItemNumber": "FR-1020", "QuantityOrdered": 10, "UnitCost": 12.5,
         "ExpenseAccount": "6200300"},
        {"LineNumber": 2000, "ItemNumber": "PK-2040", "QuantityOrdered": 4, "UnitCost": 25,
         "ExpenseAccount": "6500400"},
        {"LineNumber": 3000, "ItemNumber": "OF-7002", "QuantityOrdered": 1, "UnitCost": 40,
         "ExpenseAccount": "6100900"},  # an inactive account: Sage let the PO keep it
    ],
}


@dataclass
class TargetRun:
    states: list[dict[str, Any]]
    error: BaseException | None = None
    target: TargetSage300 | None = None
    log: str = ""
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)


def sage_config(sandbox: Sandbox, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    info = sandbox.info()["sage300"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    return {"base_url": info["base_url"], "username": info["username"],
            "password": info["password"], "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
            **extra}


def run_target(config: dict[str, Any], singer: str | Path, *,
               caplog: Any = None) -> TargetRun:
    """Push Singer messages (text or a fixture file) through the target in-process."""
    text = singer.read_text() if isinstance(singer, Path) else singer
    stdout = io.StringIO()
    target = None
    error: BaseException | None = None
    with contextlib.redirect_stdout(stdout):
        try:
            target = TargetSage300(config=config)
            target.listen(io.StringIO(text))
        except Exception as exc:  # the test decides whether a failure was expected
            error = exc
    states = [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]
    outcomes = handed_over(states[-1], config["ledger_url"]) if states else {}
    log = caplog.text if caplog is not None else ""
    return TargetRun(states, error, target, log, outcomes)


def handed_over(state: dict[str, Any], ledger_url: str) -> dict[str, dict[str, Any]]:
    """The outcomes a STATE hands to tap-basware, by invoice id: those of the ledger runs it
    names (read from the ledger, as the tap reads them) and any carried in the state itself."""
    outcomes = dict(state.get(INLINE_KEY) or {})
    with Ledger.open(ledger_url) as ledger:
        outcomes.update((entry.source_key, entry.reply)
                        for entry in pending_replies(ledger, pending_runs(state)))
    return outcomes


def fixture(name: str) -> Path:
    return FIXTURES / name


def sage_state(sandbox: Sandbox) -> dict[str, Any]:
    response = requests.get(f"{sandbox.sage300.base_url}/_sandbox/state", timeout=60)
    response.raise_for_status()
    return response.json()


def batches(sandbox: Sandbox, company: str = "SAMINC") -> list[dict[str, Any]]:
    return sage_state(sandbox)["companies"][company]["AP/APInvoiceBatches"]


def connector_batches(sandbox: Sandbox, company: str = "SAMINC") -> list[dict[str, Any]]:
    return [b for b in batches(sandbox, company) if b["Description"].startswith("ml-connector")]


def entries_by_source(sandbox: Sandbox, company: str = "SAMINC",
                      field_name: str = "BWINVID") -> dict[str, list[dict[str, Any]]]:
    """Every AP invoice entry in the company by its idempotency field (a list: duplicates
    would show as two)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for batch in batches(sandbox, company):
        for entry in batch["Invoices"]:
            for optional in entry["InvoiceOptionalFields"]:
                if optional["OptionalField"] == field_name:
                    found.setdefault(optional["Value"], []).append({**entry,
                                                                    "_batch": batch})
    return found


def sage_requests(sandbox: Sandbox, since: int = 0) -> list[dict[str, Any]]:
    response = requests.get(f"{sandbox.sage300.base_url}/_sandbox/requests",
                            params={"since": since}, timeout=60)
    response.raise_for_status()
    return response.json()["requests"]


def set_sage_faults(sandbox: Sandbox, faults: dict[str, Any]) -> None:
    requests.put(f"{sandbox.sage300.base_url}/_sandbox/faults", json=faults,
                 timeout=10).raise_for_status()


def sage_api(sandbox: Sandbox, method: str, company: str, resource: str,
             **kwargs: Any) -> requests.Response:
    """Call the Sage 300 Web API as a Sage user would (test setup)."""
    base = sandbox.info()["sage300"]["base_url"]
    return requests.request(method, f"{base}/{company}/{resource}", auth=SAGE_AUTH, timeout=60,
                            **kwargs)


def create_fixture_po(sandbox: Sandbox) -> None:
    sage_api(sandbox, "POST", "SAMINC", "PO/POPurchaseOrders", json=FIXTURE_PO).raise_for_status()


def singer_lines(*messages: dict[str, Any]) -> str:
    return "".join(json.dumps(message) + "\n" for message in messages)


SCHEMA_MESSAGE = {"type": "SCHEMA", "stream": "ap_invoices",
                  "schema": {"type": "object", "properties": {"source_id": {"type": "string"}}},
                  "key_properties": ["source_id"]}


def invoice(source_id: str, document_number: str, *, vendor: str = "1200",
            company: str = "SAMINC", amount: float = 100.0, tax: float = 5.0,
            gl_account: str = "6300-100", **overrides: Any) -> dict[str, Any]:
    """A valid non-PO ap_invoices record."""
    record = {
        "source_id": source_id, "company": company, "vendor_number": vendor,
        "document_number": document_number, "document_type": "invoice",
        "document_date": "2026-10-01", "currency": "USD" if company == "SAMINC" else "CAD",
        "net_total": amount, "tax_total": tax, "gross_total": round(amount + tax, 2),
        "description": f"Test invoice {document_number}",
        "lines": [{"amount": amount, "gl_account": gl_account, "tax_amount": tax}],
    }
    record.update(overrides)
    return record


def record_message(record: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "ap_invoices", "record": record}
