"""Outcomes that target-sage300 left in the state become transfer responses in Basware, at the
start of the next tap run, before the queue is read."""

from __future__ import annotations

import json
import re
from typing import Any

import requests
from tap_basware_testkit import COMPANIES, header

from mlc_sandbox.data import BASWARE_SCOPES

IN_PROGRESS = "TransferInProgress"
RESPONSES = re.compile(r"^/v1/accountingDocuments/(\w+)/transferResponses$")


def by_company(invoices: dict[str, dict[str, Any]], company: str) -> list[str]:
    return sorted(i for i, inv in invoices.items() if inv["companyCode"] == company
                  and inv["processingStatus"] == IN_PROGRESS)


def acknowledged_run(basware, tap_config, run_tap):
    """First pipeline run: every waiting invoice emitted and acknowledged."""
    config = {**tap_config, "acknowledge": True}
    first = run_tap(config)
    assert {inv["processingStatus"] for inv in basware.invoices().values()
            if inv["companyCode"] in COMPANIES} == {IN_PROGRESS}
    return config, first


def test_outcomes_become_transfer_responses_before_the_queue_is_read(
        basware, tap_config, run_tap, ledger_rows):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    invoices = basware.invoices()
    us = by_company(invoices, "US01")
    ca = by_company(invoices, "CA01")
    outcomes = {
        us[0]: {"success": True, "message": "created", "batch": 12, "entry": 3,
                "company": "SAMINC"},
        us[1]: {"success": False, "company": "SAMINC",
                "message": "GL account 6999-200 does not exist in Sage 300 company SAMINC",
                "batch": None, "entry": None},
        ca[0]: {"success": True, "message": "created", "batch": 7, "entry": 1,
                "company": "SAMLTD"},
    }
    mark = basware.last_seq()

    second = run_tap(config, state={**first.final_state, "transfer_outcomes": outcomes})

    after = basware.invoices()
    transferred = after[us[0]]
    assert transferred["processingStatus"] == "Transferred"
    assert (transferred["voucherNumber1"], transferred["voucherNumber2"]) == ("12", "3")
    response = transferred["transferResponses"][-1]
    assert response["success"] is True
    assert response["responseMessage"] == "Posted to Sage 300 company SAMINC, batch 12 entry 3"
    assert response["sourceSystem"] == "SAGE300" and response["paymentBlock"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", response["transferDate"])
    failed = after[us[1]]
    assert failed["processingStatus"] == "TransferFailed"
    assert failed["transferResponses"][-1]["responseMessage"] == \
        "GL account 6999-200 does not exist in Sage 300 company SAMINC"
    assert failed["transferResponses"][-1]["success"] is False
    assert after[ca[0]]["processingStatus"] == "Transferred"
    assert after[ca[0]]["transferResponses"][-1]["responseMessage"] == \
        "Posted to Sage 300 company SAMLTD, batch 7 entry 1"
    codes = [after[i]["transferResponses"][-1]["externalCode"] for i in outcomes]
    assert len(set(codes)) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", c) for c in codes)

    # Responses first, then the queue; answered invoices are not re-emitted, the rest are.
    log = basware.requests(mark)
    posted = [c for c in log if RESPONSES.match(c["path"])]
    first_list = min(c["seq"] for c in log if c["path"] == "/v1/accountingDocuments")
    assert len(posted) == 3 and max(c["seq"] for c in posted) < first_list
    re_emitted = {r["invoiceId"] for r in second.records()}
    still_open = {i for i, inv in after.items() if inv["processingStatus"] == IN_PROGRESS}
    assert re_emitted == still_open and not re_emitted & set(outcomes)
    # Answered outcomes leave the state; nothing is left to answer.
    assert "transfer_outcomes" not in second.final_state
    assert second.final_state["bookmarks"]["accounting_documents"]

    responded = {row["source_key"]: row for row in ledger_rows() if row["action"] == "responded"}
    assert set(responded) == set(outcomes)
    by_request_id = {header(c, "X-BW-REQUEST-ID"): c for c in posted}
    for invoice_id, row in responded.items():
        assert row["stream"] == "transfer_responses"
        assert row["direction"] == "sage300->basware"
        assert by_request_id[row["bw_request_id"]]["path"].split("/")[3] == invoice_id
        assert row["basware_request_id"] and row["target_key"] in codes


def test_outcome_already_answered_is_dropped_with_a_log_line(
        basware, tap_config, run_tap, ledger_rows):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    invoice_id = by_company(basware.invoices(), "US01")[0]
    state = {**first.final_state, "transfer_outcomes": {invoice_id: {
        "success": True, "message": "", "batch": 3, "entry": 9, "company": "SAMINC"}}}
    run_tap(config, state=state)
    assert basware.invoices()[invoice_id]["processingStatus"] == "Transferred"

    # The same input state again, as after a crash that lost the second run's state.
    third = run_tap(config, state=state)

    assert third.returncode == 0
    assert f"Invoice {invoice_id} is already Transferred" in third.stderr
    assert "transfer_outcomes" not in third.final_state
    history = basware.invoices()[invoice_id]["transferResponses"]
    assert len(history) == 1  # Basware refused the second one
    rows = [r for r in ledger_rows() if r["stream"] == "transfer_responses"]
    assert [r["action"] for r in rows] == ["responded", "unchanged"]
    assert "already Transferred" in rows[1]["error"]


def test_technical_failure_keeps_the_remaining_outcomes_and_fails_loudly(
        basware, tap_config, run_tap, ledger_rows, ledger_runs):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    ids = by_company(basware.invoices(), "CA01")[:2]
    outcomes = {i: {"success": True, "message": "", "batch": 5, "entry": n, "company": "SAMLTD"}
                for n, i in enumerate(ids, start=1)}
    # Basware stops granting the write scope: responses are refused with 403.
    basware.settings({"allowed_scopes": BASWARE_SCOPES.replace("accountingDocuments.write", "")})

    failed = run_tap(config, state={**first.final_state, "transfer_outcomes": outcomes},
                     check=False)

    assert failed.returncode != 0
    assert "accountingDocuments.write" in failed.stderr  # the reason, for a person to act on
    assert failed.final_state["transfer_outcomes"] == outcomes
    assert not failed.records()  # the queue was not read
    assert {basware.invoices()[i]["processingStatus"] for i in ids} == {IN_PROGRESS}
    assert [r["action"] for r in ledger_rows() if r["stream"] == "transfer_responses"] == \
        ["failed"]

    assert [r["status"] for r in ledger_runs()] == ["success", "failed"]
    assert "accountingDocuments.write" in ledger_runs()[-1]["summary"]

    # Fixed: the next run (with the state kept by the failed one) answers both.
    basware.settings({"allowed_scopes": BASWARE_SCOPES})
    fixed = run_tap(config, state=failed.final_state)
    assert "transfer_outcomes" not in fixed.final_state
    assert {basware.invoices()[i]["processingStatus"] for i in ids} == {"Transferred"}
    assert ledger_runs()[-1]["status"] == "success"
    summary = json.loads(ledger_runs()[-1]["summary"])
    assert summary["transfer_responses"]["responded"] == 2
    assert summary["oauth_grants"] == 1


def test_malformed_or_unknown_outcomes_are_dropped_with_a_reason_and_the_rest_answered(
        basware, tap_config, run_tap, ledger_rows):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    good, bad = by_company(basware.invoices(), "US01")[:2]
    unknown = "0" * 32
    outcomes = {bad: {"success": "yes", "message": "created"},
                unknown: {"success": False, "message": "Vendor 1270 is inactive in SAMINC"},
                good: {"success": False, "message": "x" * 400, "company": "SAMINC"}}

    run = run_tap(config, state={**first.final_state, "transfer_outcomes": outcomes})

    assert run.returncode == 0
    after = basware.invoices()
    assert after[good]["processingStatus"] == "TransferFailed"
    message = after[good]["transferResponses"][-1]["responseMessage"]
    assert len(message) == 250 and message.endswith("…")
    assert after[bad]["processingStatus"] == IN_PROGRESS  # re-emitted for a fresh outcome
    assert bad in {r["invoiceId"] for r in run.records()}
    rejected = {r["source_key"]: r for r in ledger_rows() if r["action"] == "rejected"}
    assert set(rejected) == {bad, unknown}
    assert "field 'success' must be true or false" in rejected[bad]["error"]
    assert "does not know the invoice" in rejected[unknown]["error"]
    assert f"transfer outcome for invoice {bad}: field 'success'" in run.stderr
    assert "transfer_outcomes" not in run.final_state


def test_a_large_backlog_of_outcomes_is_checkpointed_spaced_out(basware, tap_config, run_tap
                                                                 ) -> None:
    # 600 invoices more than the demo's: past SPACED_BELOW (500) outcomes left, the state
    # (which holds every outcome not yet answered) is emitted once a fifth of them is
    # answered, not after every answer; at or below it, after every answer.
    requests.post(f"{basware.admin}/reset", json={"seed": 0, "data": "invoices-600"},
                  timeout=120).raise_for_status()
    config, first = acknowledged_run(basware, tap_config, run_tap)
    waiting = sorted(i for i, inv in basware.invoices().items()
                     if inv["processingStatus"] == IN_PROGRESS)
    assert len(waiting) > 600
    outcomes = {invoice_id: {"success": True, "message": "created", "batch": 1,
                             "entry": n + 1, "company": "SAMINC"}
                for n, invoice_id in enumerate(waiting)}

    second = run_tap(config, state={**first.final_state, "transfer_outcomes": outcomes})

    assert second.returncode == 0, second.stderr[-2000:]
    assert all(basware.invoices()[i]["processingStatus"] == "Transferred" for i in waiting)
    left = [len(s.get("transfer_outcomes", {})) for s in second.states]
    # One emission once a fifth of the backlog above 500 is answered, then one per answer.
    above = [n for n in left if n > 500]
    assert above == [len(waiting) - (len(waiting) + 4) // 5]
    assert [n for n in left if n <= 500][:3] == [500, 499, 498]
    assert "transfer_outcomes" not in second.final_state
