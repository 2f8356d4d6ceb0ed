"""A stream's POSTs and requestStatus polls `max_requests_in_flight` at a time (issue 19).

Overlap is counted from the simulator's request log (each request's answer time and how long
the simulator took), never from the test's wall clock. The slow fault (300 ms on every import
POST and requestStatus poll) stands in for Basware's cloud latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ml_connector_core.ledger import Action
from mlc_sandbox.testing import peak_in_flight, started

LATENCY_MS = 300
SLOW = {"rates": {"slow": 1.0}, "slow_ms": LATENCY_MS, "methods": ["GET", "POST"],
        "path": r"^/v1/(vendors|paymentTerms|matchingOrders|requestStatus)"}
ORDERS = 30
BATCH = 3  # records per POST: 10 POSTs of orders
REFUSED = {"CC-PO07", "CC-PO20"}  # Basware refuses the whole POST (400) for each of these



def schema(stream: str, *names: str) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": stream, "key_properties": ["externalCode"],
            "schema": {"type": "object", "properties": {
                name: {"type": ["boolean", "null"]} if name in ("active", "isClosed")
                else {"type": ["integer", "null"]} if name == "dueDays"
                else {"type": ["string", "null"]} for name in names}}}


def orders_fixture(path: Path) -> Path:
    """A payment term, the vendor that uses it and ORDERS orders of that vendor: three
    streams Basware must process one after the other."""
    order = [f"CC-PO{n:02d}" for n in range(1, ORDERS + 1)]
    messages = [
        schema("payment_terms", "externalCode", "paymentTermCode", "name", "companyCode",
               "active", "dueDays"),
        {"type": "RECORD", "stream": "payment_terms", "record": {
            "externalCode": "CC-US01-N30", "paymentTermCode": "CCN30", "name": "Net 30",
            "companyCode": "US01", "active": True, "dueDays": 30}},
        schema("vendors", "externalCode", "vendorCode", "name", "companyCode",
               "paymentTermCode", "active"),
        {"type": "RECORD", "stream": "vendors", "record": {
            "externalCode": "CC-V1", "vendorCode": "CCV1", "name": "Concurrent Vendor",
            "companyCode": "US01", "active": True, "paymentTermCode": "CCN30"}},
        schema("matching_orders", "externalCode", "orderNumber", "companyCode",
               "organizationElementCode", "supplierCode", "currencyCode", "isClosed"),
        *({"type": "RECORD", "stream": "matching_orders", "record": {
            "externalCode": key, "orderNumber": key[3:], "companyCode": "US01",
            "supplierCode": "CCV1", "currencyCode": "USD", "isClosed": False,
            **({"organizationElementCode": "X"} if key in REFUSED else {})}}
          for key in order),
        {"type": "STATE", "value": {"bookmarks": {"purchase_orders": "done"}}},
    ]
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def outcomes(ledger_entries) -> dict[str, tuple[Action, str | None]]:
    keys = ["CC-US01-N30", "CC-V1", *(f"CC-PO{n:02d}" for n in range(1, ORDERS + 1))]
    return {key: (entry.action, entry.error) for key in keys
            for entry in ledger_entries(key)[-1:]}


@pytest.mark.parametrize("in_flight", [1, 4])
def test_posts_and_polls_go_out_in_flight_stream_after_stream(
        run_target, basware, ledger_entries, tmp_path, in_flight):
    basware.faults(SLOW)

    run = run_target(orders_fixture(tmp_path / "orders.singer"), batch_size_rows=BATCH,
                     max_requests_in_flight=in_flight)

    assert run.returncode == 0, run.stderr
    assert run.states == [{"bookmarks": {"purchase_orders": "done"}}]
    log = [c for c in basware.requests() if c["path"].startswith("/v1/")
           and c["path"] != "/v1/tokens"]
    posts = [c for c in log if c["method"] == "POST" and c["path"] == "/v1/matchingOrders"]
    polls = [c for c in log if c["path"].startswith("/v1/requestStatus/")]
    # Never more than the setting on the wire; with 4 the POSTs and the polls overlap.
    assert peak_in_flight(log) <= in_flight
    if in_flight == 1:
        assert peak_in_flight(posts) == peak_in_flight(polls) == 1
    else:
        assert peak_in_flight(posts) > 1 and peak_in_flight(polls) > 1
    # Dependency order holds: no order is POSTed before its vendor's import was processed
    # (its last poll answered), and no vendor before its payment term's.
    vendor_post = next(c for c in log if c["path"] == "/v1/vendors")
    term_post = next(c for c in log if c["path"] == "/v1/paymentTerms")
    assert min(started(c) for c in posts) > max(
        c["time"] for c in polls if c["seq"] < min(p["seq"] for p in posts))
    assert started(vendor_post) > term_post["time"]
    # The two refused records were narrowed down and rejected; every other order arrived.
    refused = [c for c in posts if c["status"] == 400]
    assert len(refused) >= len(REFUSED)
    result = outcomes(ledger_entries)
    assert {key for key, (action, _) in result.items() if action == Action.REJECTED} == REFUSED
    assert all(result[key][1].startswith("Basware refused the record (HTTP 400)")
               for key in REFUSED)
    assert {action for key, (action, _) in result.items() if key not in REFUSED} == {
        Action.CREATED}
    statuses = basware.item_statuses()
    assert {statuses[("MatchingOrder", f"CC-PO{n:02d}")] for n in range(1, ORDERS + 1)
            if f"CC-PO{n:02d}" not in REFUSED} == {"Success"}
    assert set(basware.records("matchingOrders")) >= {
        f"CC-PO{n:02d}" for n in range(1, ORDERS + 1)} - REFUSED
    print(f"\n{len(posts)} order POSTs and {len(polls)} polls at {LATENCY_MS} ms, {in_flight} "
          f"in flight: peak {peak_in_flight(log)}")


def test_the_outcomes_are_the_same_whatever_is_in_flight(run_target, basware, tmp_path):
    fixture = orders_fixture(tmp_path / "orders.singer")
    seen = []
    for in_flight in (1, 4):
        basware.reset()
        basware.faults(SLOW)
        run = run_target(fixture, batch_size_rows=BATCH, max_requests_in_flight=in_flight,
                         ledger_url=f"sqlite:///{tmp_path}/ledger-{in_flight}.sqlite")
        assert run.returncode == 0, run.stderr
        seen.append((run.states, sorted(basware.records("matchingOrders"))))
    assert seen[0] == seen[1]


def test_an_outage_fails_the_run_and_the_next_run_delivers_the_rest(
        run_target, basware, ledger_entries, tmp_path):
    # Orders' POSTs from the 4th on meet a Basware that keeps answering 503: the run fails
    # loudly, keeps no state, and says of every order it did not see through that it failed.
    fixture = orders_fixture(tmp_path / "orders.singer")
    basware.faults({**SLOW, "retry_after": 0, "schedule": [
        {"nth": n, "fault": "503", "method": "POST", "path": "matchingOrders"}
        for n in range(4, 60)]})

    failed_run = run_target(fixture, batch_size_rows=BATCH, max_requests_in_flight=4)

    assert failed_run.returncode != 0
    assert "run FAILED" in failed_run.stderr
    assert failed_run.states == []
    result = outcomes(ledger_entries)
    assert result["CC-V1"][0] == Action.CREATED
    failed = {key for key, (action, _) in result.items() if action == Action.FAILED}
    assert failed, result
    # Nothing is claimed delivered that Basware does not hold.
    created = {key for key, (action, _) in result.items()
               if action == Action.CREATED and key.startswith("CC-PO")}
    assert created <= set(basware.records("matchingOrders"))

    basware.faults({})
    resumed = run_target(fixture, batch_size_rows=BATCH, max_requests_in_flight=4)

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.states == [{"bookmarks": {"purchase_orders": "done"}}]
    result = outcomes(ledger_entries)
    assert {key for key, (action, _) in result.items() if action == Action.REJECTED} == REFUSED
    assert {action for key, (action, _) in result.items() if key not in REFUSED} <= {
        Action.CREATED, Action.UNCHANGED}
    orders = {f"CC-PO{n:02d}" for n in range(1, ORDERS + 1)} - REFUSED
    assert set(basware.records("matchingOrders")) >= orders
    statuses = basware.item_statuses()
    assert {statuses[("MatchingOrder", key)] for key in orders} <= {"Success", "NotProcessed"}
