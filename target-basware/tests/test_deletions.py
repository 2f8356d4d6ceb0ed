"""Records deleted in the source reach Basware inactive or closed, once (deletions.py).

Singer input as tap-sage300 and meltano.yml's stream maps produce it, run by run through the
target process against the Basware simulator and a ledger: ACTIVATE_VERSION after a complete
list (accounts, a key list for vendors), an order's lineKeys for its lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml_connector_core.ledger import Action, Ledger

US, CA = "US01", "CA01"


def account(code: str, company: str = US, name: str | None = None,
            active: bool = True) -> dict[str, Any]:
    prefix = "SAMINC" if company == US else "SAMLTD"
    return {"externalCode": f"{prefix}-{code}", "sourceKey": f"{prefix}/{code}",
            "accountCode": f"{code[:4]}-{code[4:]}", "name": name or f"Account {code}",
            "companyCode": company, "active": active}


def vendor(number: str, active: bool = True) -> dict[str, Any]:
    return {"externalCode": f"SAMINC-{number}", "sourceKey": f"SAMINC/{number}",
            "vendorCode": number, "name": f"Vendor {number}", "companyCode": US,
            "active": active}


def order(lines: list[int]) -> dict[str, Any]:
    return {"externalCode": "SAMINC-PO1", "sourceKey": "SAMINC/1", "orderNumber": "PO1",
            "companyCode": US, "supplierCode": "1200", "currencyCode": "USD",
            "lineKeys": [f"SAMINC/1/{n}" for n in lines]}


def line(number: int) -> dict[str, Any]:
    return {"externalCode": f"SAMINC-PO1-{number}", "sourceKey": f"SAMINC/1/{number}",
            "orderExternalCode": "SAMINC-PO1", "lineNumber": number, "quantity": 2,
            "netPrice": 5, "netSum": 10, "accountCode": "6100-100"}


def schema(stream: str) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": stream, "key_properties": ["externalCode"],
            "schema": {"type": "object", "properties": {}}}


def stream(name: str, records: list[dict[str, Any]], complete: bool = False
           ) -> list[dict[str, Any]]:
    messages = [schema(name)] + [{"type": "RECORD", "stream": name, "record": r,
                                  **({"version": 7} if complete else {})} for r in records]
    if complete:
        messages.append({"type": "ACTIVATE_VERSION", "stream": name, "version": 7})
    return messages


@pytest.fixture
def send(run_target: Callable[..., Any], basware: Any, tmp_path: Path
         ) -> Callable[..., Any]:
    """Run the target on these messages (a STATE at the end) after clearing the request log."""
    runs = [0]

    def run(*streams: list[dict[str, Any]], **config: Any) -> Any:
        runs[0] += 1
        path = tmp_path / f"run-{runs[0]}.singer"
        messages = [m for part in streams for m in part]
        messages.append({"type": "STATE", "value": {"bookmarks": {"run": runs[0]}}})
        path.write_text("".join(json.dumps(m) + "\n" for m in messages))
        basware.clear_log()
        done = run_target(path, **config)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return run


def posted(basware: Any, endpoint: str) -> dict[str, dict[str, Any]]:
    return {r["externalCode"]: r for post in basware.posts(endpoint) for r in post["body"]}


def actions(ledger: Ledger, stream: str, key: str) -> list[str]:
    return [e.action.value for e in ledger.trace(key)
            if e.stream == stream and e.source_key == key]


def test_an_account_missing_from_the_complete_list_is_deactivated_once(
        send: Callable[..., Any], basware: Any, ledger: Ledger) -> None:
    everything = [account("6100100"), account("6100900"), account("6200100", CA)]
    send(stream("accounts", everything, complete=True))
    assert len(posted(basware, "accounts")) == 3

    # 6100900 deleted in Sage: the complete list lacks it.
    second = send(stream("accounts", [everything[0], everything[2]], complete=True))

    assert list(posted(basware, "accounts")) == ["SAMINC-6100900"]
    stored = basware.records("accounts")["SAMINC-6100900"]
    assert stored["companies"] == [{"companyCode": US, "inherit": False, "active": False}]
    assert stored["accountNames"] == [{"language": "en-US", "translation": "Account 6100900"}]
    assert basware.records("accounts")["SAMINC-6100100"]["companies"][0]["active"] is True
    (entry,) = [e for e in ledger.trace("SAMINC/6100900")
                if e.action == Action.DEACTIVATED]
    assert entry.target_key == "SAMINC-6100900" and entry.bw_request_id
    assert "deleted in the source" in entry.error
    assert entry.payload["active"] is False
    assert "1 deactivated" in second.stderr  # the run's summary line

    # Once: the same list again sends nothing.
    send(stream("accounts", [everything[0], everything[2]], complete=True))
    assert basware.posts() == []
    assert actions(ledger, "accounts", "SAMINC/6100900") == ["created", "deactivated"]

    # Back in Sage: sent active again.
    send(stream("accounts", everything, complete=True))
    assert list(posted(basware, "accounts")) == ["SAMINC-6100900"]
    assert basware.records("accounts")["SAMINC-6100900"]["companies"][0]["active"] is True
    assert actions(ledger, "accounts", "SAMINC/6100900")[-1] == "updated"


def test_only_a_complete_list_deletes_and_only_in_the_companies_it_names(
        send: Callable[..., Any], basware: Any) -> None:
    everything = [account("6100100"), account("6100900"), account("6200100", CA),
                  account("6200900", CA, active=False)]
    send(stream("accounts", everything, complete=True))

    # No ACTIVATE_VERSION (a run cut short): nothing is deleted.
    send(stream("accounts", everything[:1]))
    assert basware.posts() == []
    # A list naming only US01: CA01's accounts are left alone; a rejected record (no name)
    # still says its key exists.
    broken = {**everything[1], "name": None}
    send(stream("accounts", [everything[0], broken], complete=True))
    assert basware.posts() == []
    # A record without a usable key: no comparison at all in this run.
    keyless = {k: v for k, v in everything[0].items() if k not in ("externalCode",
                                                                     "sourceKey")}
    send(stream("accounts", [keyless], complete=True))
    assert basware.posts() == []
    # CA01's complete list without its accounts: the active one goes inactive; the one
    # already inactive in Sage (and so in Basware) is not sent again.
    send(stream("accounts", [everything[0], everything[1], account("6200500", CA)],
                complete=True))
    # (SAMINC-6100900 goes again too: its last outcome was the rejection.)
    sent = posted(basware, "accounts")
    assert sorted(sent) == ["SAMINC-6100900", "SAMLTD-6200100", "SAMLTD-6200500"]
    assert sent["SAMLTD-6200100"]["companies"][0]["active"] is False
    assert sent["SAMINC-6100900"]["companies"][0]["active"] is True


def test_a_vendor_missing_from_the_key_list_is_deactivated_once(
        send: Callable[..., Any], basware: Any, ledger: Ledger) -> None:
    send(stream("vendors", [vendor("9001"), vendor("9002")]))
    keys = [{"externalCode": "SAMINC-9001", "sourceKey": "SAMINC/9001", "companyCode": US}]

    run = send(stream("vendors", []), stream("vendor_keys", keys, complete=True))

    assert list(posted(basware, "vendors")) == ["SAMINC-9002"]
    stored = basware.records("vendors")["SAMINC-9002"]
    assert stored["processingStatus"]["active"] is False
    assert stored["name"] == "Vendor 9002"
    assert basware.records("vendors")["SAMINC-9001"]["processingStatus"]["active"] is True
    assert actions(ledger, "vendors", "SAMINC/9002") == ["created", "deactivated"]
    assert "1 listed" in run.stderr
    # The key list itself is not in the ledger.
    assert not [e for e in ledger.trace("SAMINC/9001") if e.stream == "vendor_keys"]

    send(stream("vendor_keys", keys, complete=True))
    assert basware.posts() == []


def test_a_line_removed_from_its_order_is_closed_once(
        send: Callable[..., Any], basware: Any, ledger: Ledger) -> None:
    send(stream("vendors", [{**vendor("1200")}]), stream("accounts", [account("6100100")]),
         stream("matching_order_lines", [line(1000), line(2000)]),
         stream("matching_orders", [order([1000, 2000])]))
    assert sorted(posted(basware, "matchingOrderLines")) == ["SAMINC-PO1-1000",
                                                             "SAMINC-PO1-2000"]

    # Line 2000 removed in Sage: the order is read again with its lines.
    send(stream("matching_order_lines", [line(1000)]),
         stream("matching_orders", [order([1000])]))
    assert list(posted(basware, "matchingOrderLines")) == ["SAMINC-PO1-2000"]
    closed = basware.records("matchingOrderLines")["SAMINC-PO1-2000"]
    assert closed["isClosed"] is True and closed["quantity"] == 2
    assert basware.records("matchingOrderLines")["SAMINC-PO1-1000"]["isClosed"] is False
    assert basware.posts("matchingOrders") == []  # the order itself did not change
    assert actions(ledger, "matching_order_lines", "SAMINC/1/2000") == ["created",
                                                                        "deactivated"]

    # Once.
    send(stream("matching_order_lines", [line(1000)]),
         stream("matching_orders", [order([1000])]))
    assert basware.posts() == []

    # A line added (the order itself unchanged), then removed: closed too.
    send(stream("matching_order_lines", [line(1000), line(3000)]),
         stream("matching_orders", [order([1000, 3000])]))
    assert list(posted(basware, "matchingOrderLines")) == ["SAMINC-PO1-3000"]
    send(stream("matching_order_lines", [line(1000)]),
         stream("matching_orders", [order([1000])]))
    assert list(posted(basware, "matchingOrderLines")) == ["SAMINC-PO1-3000"]
    assert basware.records("matchingOrderLines")["SAMINC-PO1-3000"]["isClosed"] is True

    # Line 2000 back on the order: open again.
    send(stream("matching_order_lines", [line(1000), line(2000)]),
         stream("matching_orders", [order([1000, 2000])]))
    assert list(posted(basware, "matchingOrderLines")) == ["SAMINC-PO1-2000"]
    assert basware.records("matchingOrderLines")["SAMINC-PO1-2000"]["isClosed"] is False


def test_a_dry_run_says_what_would_be_deactivated(
        send: Callable[..., Any], basware: Any, tmp_path: Path) -> None:
    everything = [account("6100100"), account("6100900")]
    send(stream("accounts", everything, complete=True))
    report = tmp_path / "verdicts.jsonl"

    send(stream("accounts", everything[:1], complete=True), dry_run=True,
         dry_run_report=str(report))

    assert basware.posts() == []
    verdicts = [json.loads(line) for line in report.read_text().splitlines()]
    (deactivation,) = [v for v in verdicts if v["key"] == "SAMINC-6100900"]
    assert deactivation["verdict"] == "update"
    assert "deleted in the source" in deactivation["reason"]
