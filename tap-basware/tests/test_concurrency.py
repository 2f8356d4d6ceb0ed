"""Acknowledgements and transfer responses `max_requests_in_flight` at a time (issue 19).

Each test reads the simulator's request log: every logged request has the time its answer
was ready (`time`) and how long the simulator took (`duration_ms`), so the requests in flight
at once are counted from the simulator's side, never from the test's wall clock. The slow
fault (300 ms on every acknowledge and transfer response) stands in for Basware's cloud
latency.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from tap_basware_testkit import COMPANIES, header

from ml_connector_core.ledger import BASWARE_TO_SAGE, Action, Entry, Ledger
from ml_connector_core.outcome_handover import RUNS_KEY
from mlc_sandbox.testing import peak_in_flight, started

ACKNOWLEDGE = re.compile(r"^/v1/accountingDocuments/(\w+)/acknowledge$")
RESPONSES = re.compile(r"^/v1/accountingDocuments/(\w+)/transferResponses$")
LATENCY_MS = 300
SLOW_WRITES = {"rates": {"slow": 1.0}, "slow_ms": LATENCY_MS, "methods": ["POST"],
               "path": r"/(acknowledge|transferResponses)$"}
SEEDED = 28  # waiting invoices of US01 and CA01 in the demo data



def calls(log: list[dict[str, Any]], pattern: re.Pattern[str]) -> dict[str, dict[str, Any]]:
    """The last request per invoice id matching `pattern` (a retry replaces its attempt)."""
    return {m.group(1): c for c in log if (m := pattern.match(c["path"]))}


def span(found: list[dict[str, Any]]) -> float:
    return max(c["time"] for c in found) - min(started(c) for c in found)


def reset(basware) -> None:
    requests.post(f"{basware.admin}/reset", json={"seed": 0, "data": "demo"},
                  timeout=60).raise_for_status()


@pytest.mark.parametrize("in_flight", [1, 4])
def test_acknowledgements_go_out_in_flight_each_after_its_record(
        basware, tap_config, run_tap, ledger_rows, in_flight):
    basware.faults(SLOW_WRITES)

    run = run_tap({**tap_config, "acknowledge": True, "max_requests_in_flight": in_flight})

    emitted = [r["invoiceId"] for r in run.records()]
    assert len(emitted) == SEEDED
    log = basware.requests()
    acks = calls(log, ACKNOWLEDGE)
    assert set(acks) == set(emitted)
    assert all(c["status"] == 200 for c in acks.values())
    peak = peak_in_flight(list(acks.values()))
    # Never more than the setting; with 4 they overlap (the simulator served several at once).
    assert peak == 1 if in_flight == 1 else 1 < peak <= in_flight
    assert peak_in_flight([c for c in log if c["path"].startswith("/v1/")]) <= in_flight
    print(f"\n{SEEDED} acknowledgements at {LATENCY_MS} ms, {in_flight} in flight: "
          f"{span(list(acks.values())):.2f} s (peak {peak})")
    # Every invoice acknowledged, recorded in the order its record was emitted.
    recorded = [r["source_key"] for r in ledger_rows() if r["action"] == "acknowledged"]
    assert recorded == emitted
    assert {i["processingStatus"] for i in basware.invoices().values()
            if i["companyCode"] in COMPANIES} == {"TransferInProgress"}


def test_records_come_in_the_same_order_whatever_is_in_flight(basware, tap_config, run_tap):
    orders = []
    for in_flight in (1, 4):
        reset(basware)
        basware.faults(SLOW_WRITES)
        run = run_tap({**tap_config, "acknowledge": True, "max_requests_in_flight": in_flight})
        orders.append([m.get("record", {}).get("invoiceId") or m["type"]
                       for m in run.messages if m["type"] in ("RECORD", "STATE")])
    assert orders[0] == orders[1]


def test_every_acknowledgement_completes_before_its_transfer_response(
        basware, tap_config, run_tap, ledger_url, ledger_rows):
    basware.faults(SLOW_WRITES)
    config = {**tap_config, "acknowledge": True, "max_requests_in_flight": 4}
    first = run_tap(config)
    emitted = [r["invoiceId"] for r in first.records()]
    # target-sage300's outcomes for every invoice, as it records them in the ledger.
    with Ledger.open(ledger_url) as ledger:
        run_id = ledger.start_run("target-sage300").run_id
        ledger.record_many(Entry(run_id, "ap_invoices", invoice_id, Action.CREATED,
                                 direction=BASWARE_TO_SAGE,
                                 reply={"success": True, "message": "", "batch": 3,
                                        "entry": n, "company": "SAMINC"})
                           for n, invoice_id in enumerate(emitted, start=1))
        ledger.finish_run(run_id, "success")

    second = run_tap(config, state={**first.final_state, RUNS_KEY: {run_id: 0}})

    log = basware.requests()
    acks, responses = calls(log, ACKNOWLEDGE), calls(log, RESPONSES)
    assert set(responses) == set(acks) == set(emitted)
    late = [i for i in emitted if not acks[i]["time"] <= started(responses[i])]
    assert not late, f"transfer responses sent before their acknowledgement completed: {late}"
    assert 1 < peak_in_flight(list(responses.values())) <= 4
    print(f"\n{SEEDED} transfer responses at {LATENCY_MS} ms, 4 in flight: "
          f"{span(list(responses.values())):.2f} s")
    assert {basware.invoices()[i]["processingStatus"] for i in emitted} == {"Transferred"}
    # The state moved once every response had completed, and names the run no more.
    assert RUNS_KEY not in second.final_state
    answered = [r["source_key"] for r in ledger_rows() if r["action"] == "responded"]
    assert answered == emitted  # recorded in the order of the outcomes
    assert len({header(c, "X-BW-REQUEST-ID") for c in responses.values()}) == SEEDED


def test_a_429_burst_makes_every_request_wait(basware, tap_config, run_tap, ledger_rows):
    retry_after = 3
    burst = [{"nth": n, "fault": "429", "method": "POST", "path": "/acknowledge$"}
             for n in (6, 7, 8)]
    basware.faults({**SLOW_WRITES, "retry_after": retry_after, "schedule": burst})

    run = run_tap({**tap_config, "acknowledge": True, "max_requests_in_flight": 4})

    log = basware.requests()
    limited = [c for c in log if c["status"] == 429]
    assert len(limited) == 3, limited
    first = min(c["time"] for c in limited)
    # Once the client has heard the first 429 (1 s is ample on loopback, even on a busy
    # machine), no request of any thread starts until Retry-After has passed: the whole
    # client waits, not one call.
    quiet = [c for c in log if c["path"].startswith("/v1/")
             and first + 1.0 < started(c) < first + retry_after - 0.1]
    assert not quiet, f"requests sent while Basware asked to wait: {quiet}"
    # Each refused acknowledgement was repeated with its request id, after Retry-After, until
    # accepted (a repeat may be the next scheduled 429 itself).
    for refused in limited:
        again = [c for c in log if c["seq"] > refused["seq"]
                 and header(c, "X-BW-REQUEST-ID") == header(refused, "X-BW-REQUEST-ID")]
        assert again and again[-1]["status"] == 200, (refused, again)
        assert started(again[0]) >= refused["time"] + retry_after - 0.05, (refused, again)
    emitted = [r["invoiceId"] for r in run.records()]
    assert [r["source_key"] for r in ledger_rows() if r["action"] == "acknowledged"] == emitted
    assert "429" in run.stderr
