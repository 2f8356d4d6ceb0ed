"""The outcomes target-sage300 recorded in the ledger, for the ledger runs the state names,
become transfer responses in Basware at the start of the next tap run, before the queue is
read; so do outcomes an older release left in the state itself."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from tap_basware_testkit import COMPANIES, header

from ml_connector_core.ledger import BASWARE_TO_SAGE, Action, Entry, Ledger
from ml_connector_core.outcome_handover import LEDGERS_KEY, RUNS_KEY
from ml_connector_core.restore import ledger_identity
from mlc_sandbox.data import BASWARE_SCOPES

IN_PROGRESS = "TransferInProgress"
RESPONSES = re.compile(r"^/v1/accountingDocuments/(\w+)/transferResponses$")


def by_company(invoices: dict[str, dict[str, Any]], company: str) -> list[str]:
    return sorted(i for i, inv in invoices.items() if inv["companyCode"] == company
                  and inv["processingStatus"] == IN_PROGRESS)


@pytest.fixture
def target_run(ledger_url: str):
    """Record outcomes as target-sage300 does (one ap_invoices entry per invoice, the outcome
    as its reply) in a ledger run of their own; returns the run id and the entry ids."""

    def record(outcomes: dict[str, Any]) -> tuple[str, list[int]]:
        with Ledger.open(ledger_url) as ledger:
            run_id = ledger.start_run("target-sage300").run_id
            ledger.record_many(Entry(
                run_id, "ap_invoices", invoice_id,
                Action.CREATED if outcome.get("success") is True else Action.REJECTED,
                direction=BASWARE_TO_SAGE, reply=outcome)
                for invoice_id, outcome in outcomes.items())
            ledger.finish_run(run_id, "success")
            return run_id, [entry.id for entry in ledger.replies(run_id, limit=10_000)]

    return record


def acknowledged_run(basware, tap_config, run_tap):
    """First pipeline run: every waiting invoice emitted and acknowledged."""
    config = {**tap_config, "acknowledge": True}
    first = run_tap(config)
    assert {inv["processingStatus"] for inv in basware.invoices().values()
            if inv["companyCode"] in COMPANIES} == {IN_PROGRESS}
    return config, first


def test_outcomes_become_transfer_responses_before_the_queue_is_read(
        basware, tap_config, run_tap, ledger_rows, target_run):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    invoices = basware.invoices()
    us = by_company(invoices, "US01")
    ca = by_company(invoices, "CA01")
    outcomes = {
        us[0]: {"success": True, "batch": 12, "entry": 3, "company": "SAMINC",
                "message": "Created in Sage 300 company SAMINC, batch 12 entry 3 (ready to post)"},
        us[1]: {"success": False, "company": "SAMINC",
                "message": "GL account 6999-200 does not exist in Sage 300 company SAMINC",
                "batch": None, "entry": None},
        ca[0]: {"success": True, "message": "", "batch": 7, "entry": 1, "company": "SAMLTD"},
    }
    run_id, _ = target_run(outcomes)
    mark = basware.last_seq()

    second = run_tap(config, state={**first.final_state, RUNS_KEY: {run_id: 0}})

    after = basware.invoices()
    transferred = after[us[0]]
    assert transferred["processingStatus"] == "Transferred"
    assert (transferred["voucherNumber1"], transferred["voucherNumber2"]) == ("12", "3")
    response = transferred["transferResponses"][-1]
    assert response["success"] is True
    # target-sage300's words: whether the batch is posted is for it to say.
    assert response["responseMessage"] == \
        "Created in Sage 300 company SAMINC, batch 12 entry 3 (ready to post)"
    assert response["sourceSystem"] == "SAGE300" and response["paymentBlock"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", response["transferDate"])
    failed = after[us[1]]
    assert failed["processingStatus"] == "TransferFailed"
    assert failed["transferResponses"][-1]["responseMessage"] == \
        "GL account 6999-200 does not exist in Sage 300 company SAMINC"
    assert failed["transferResponses"][-1]["success"] is False
    assert after[ca[0]]["processingStatus"] == "Transferred"
    assert after[ca[0]]["transferResponses"][-1]["responseMessage"] == \
        "In Sage 300 company SAMLTD, batch 7 entry 1"  # no message given: batch and entry
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
    assert RUNS_KEY not in second.final_state
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
    assert RUNS_KEY not in third.final_state and "transfer_outcomes" not in third.final_state
    history = basware.invoices()[invoice_id]["transferResponses"]
    assert len(history) == 1  # Basware refused the second one
    rows = [r for r in ledger_rows() if r["stream"] == "transfer_responses"]
    assert [r["action"] for r in rows] == ["responded", "unchanged"]
    assert "already Transferred" in rows[1]["error"]


def test_technical_failure_keeps_the_remaining_outcomes_and_fails_loudly(
        basware, tap_config, run_tap, ledger_rows, ledger_runs, target_run):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    ids = by_company(basware.invoices(), "CA01")[:2]
    outcomes = {i: {"success": True, "message": "", "batch": 5, "entry": n, "company": "SAMLTD"}
                for n, i in enumerate(ids, start=1)}
    # Basware stops granting the write scope: responses are refused with 403.
    basware.settings({"allowed_scopes": BASWARE_SCOPES.replace("accountingDocuments.write", "")})

    run_id, _ = target_run(outcomes)
    failed = run_tap(config, state={**first.final_state, RUNS_KEY: {run_id: 0}}, check=False)

    assert failed.returncode != 0
    assert "accountingDocuments.write" in failed.stderr  # the reason, for a person to act on
    assert failed.final_state[RUNS_KEY] == {run_id: 0}
    assert not failed.records()  # the queue was not read
    assert {basware.invoices()[i]["processingStatus"] for i in ids} == {IN_PROGRESS}
    # The first refusal stops the run; the responses already in flight (as many as
    # max_requests_in_flight, here both) are refused too, and recorded.
    failures = [r["action"] for r in ledger_rows() if r["stream"] == "transfer_responses"]
    assert set(failures) == {"failed"}
    assert len(failures) <= config.get("max_requests_in_flight", 4)

    tap_runs = [r for r in ledger_runs() if r["plugin"] == "tap-basware"]
    assert [r["status"] for r in tap_runs] == ["success", "failed"]
    assert "accountingDocuments.write" in tap_runs[-1]["summary"]

    # Fixed: the next run (with the state kept by the failed one) answers both.
    basware.settings({"allowed_scopes": BASWARE_SCOPES})
    fixed = run_tap(config, state=failed.final_state)
    assert RUNS_KEY not in fixed.final_state
    assert {basware.invoices()[i]["processingStatus"] for i in ids} == {"Transferred"}
    assert ledger_runs()[-1]["status"] == "success"
    summary = json.loads(ledger_runs()[-1]["summary"])
    assert summary["transfer_responses"]["responded"] == 2
    assert summary["oauth_grants"] == 1


def test_malformed_or_unknown_outcomes_are_not_sent_and_the_run_fails_naming_them(
        basware, tap_config, run_tap, ledger_rows):
    config, first = acknowledged_run(basware, tap_config, run_tap)
    good, bad = by_company(basware.invoices(), "US01")[:2]
    unknown = "0" * 32
    outcomes = {bad: {"success": "yes", "message": "created"},
                unknown: {"success": False, "message": "Vendor 1270 is inactive in SAMINC"},
                good: {"success": False, "message": "x" * 400, "company": "SAMINC"}}

    run = run_tap(config, state={**first.final_state, "transfer_outcomes": outcomes},
                  check=False)

    # Everything else was done (the good outcome answered, the queue read), and the run
    # says loudly which outcomes Basware did not get.
    assert run.returncode != 0
    assert "2 transfer outcome(s) were not sent to Basware" in run.stderr
    assert f"invoice {bad}: transfer outcome for invoice {bad}: field 'success'" in run.stderr
    assert f"invoice {unknown}: Basware does not know the invoice" in run.stderr
    after = basware.invoices()
    assert after[good]["processingStatus"] == "TransferFailed"
    message = after[good]["transferResponses"][-1]["responseMessage"]
    assert len(message) == 250 and message.endswith("…")
    assert after[bad]["processingStatus"] == IN_PROGRESS  # re-emitted for a fresh outcome
    assert bad in {r["invoiceId"] for r in run.records()}
    failed = {r["source_key"]: r for r in ledger_rows()
              if r["stream"] == "transfer_responses" and r["action"] == "failed"}
    assert set(failed) == {bad, unknown}
    assert "field 'success' must be true or false" in failed[bad]["error"]
    assert "does not know the invoice" in failed[unknown]["error"]
    # Not kept for another try: the invoice is read again and gets a fresh outcome instead.
    assert "transfer_outcomes" not in run.final_state and RUNS_KEY not in run.final_state


def test_outcomes_of_invoices_never_acknowledged_fail_the_run_instead_of_vanishing(
        basware, tap_config, run_tap, ledger_rows, target_run):
    """`acknowledge` off (plain extraction) and outcomes to answer: Basware refuses a transfer
    response for a WaitingForTransfer invoice. That used to be a log line and exit 0, with
    the invoices never answered; now the run fails and names them."""
    config = {**tap_config, "acknowledge": False}
    waiting = sorted(i for i, inv in basware.invoices().items()
                     if inv["companyCode"] == "US01")[:2]
    run_id, _ = target_run({i: {"success": True, "message": "", "batch": 4, "entry": n,
                                "company": "SAMINC"} for n, i in enumerate(waiting, start=1)})

    run = run_tap(config, state={RUNS_KEY: {run_id: 0}}, check=False)

    assert run.returncode != 0
    for invoice_id in waiting:
        assert (f"invoice {invoice_id}: the invoice is WaitingForTransfer in Basware, not "
                f"{IN_PROGRESS}") in run.stderr
        assert basware.invoices()[invoice_id]["processingStatus"] == "WaitingForTransfer"
    assert sorted(r["source_key"] for r in ledger_rows()
                  if r["stream"] == "transfer_responses" and r["action"] == "failed") == waiting


def test_a_large_backlog_is_answered_a_page_at_a_time_with_a_cursor(
        basware, tap_config, run_tap, target_run) -> None:
    # 600 invoices more than the demo's: read from the ledger a page (100) at a time, the
    # state (a cursor, a few bytes) going out after each page.
    requests.post(f"{basware.admin}/reset", json={"seed": 0, "data": "invoices-600"},
                  timeout=120).raise_for_status()
    config, first = acknowledged_run(basware, tap_config, run_tap)
    waiting = sorted(i for i, inv in basware.invoices().items()
                     if inv["processingStatus"] == IN_PROGRESS)
    assert len(waiting) > 600
    run_id, ids = target_run({invoice_id: {"success": True, "message": "created", "batch": 1,
                                           "entry": n + 1, "company": "SAMINC"}
                              for n, invoice_id in enumerate(waiting)})

    second = run_tap(config, state={**first.final_state, RUNS_KEY: {run_id: 0}})

    assert second.returncode == 0, second.stderr[-2000:]
    assert all(basware.invoices()[i]["processingStatus"] == "Transferred" for i in waiting)
    cursors = [s[RUNS_KEY][run_id] for s in second.states if names_run(s, run_id)]
    assert cursors == ids[99::100] + ([ids[-1]] if len(ids) % 100 else [])
    assert RUNS_KEY not in second.final_state
    assert max(len(json.dumps(s)) for s in second.states) < 1000


def names_run(state: dict[str, Any], run_id: str) -> bool:
    return run_id in (state.get(RUNS_KEY) or {})


def test_a_run_is_answered_from_its_cursor_on(basware, tap_config, run_tap, target_run):
    """After a crash the state's cursor is the last entry answered: only later ones go."""
    config, first = acknowledged_run(basware, tap_config, run_tap)
    us = by_company(basware.invoices(), "US01")[:3]
    run_id, ids = target_run({i: {"success": True, "message": "", "batch": 2, "entry": n,
                                  "company": "SAMINC"} for n, i in enumerate(us, start=1)})

    run_tap(config, state={**first.final_state, RUNS_KEY: {run_id: ids[0]}})

    status = {i: basware.invoices()[i]["processingStatus"] for i in us}
    assert status == {us[0]: IN_PROGRESS, us[1]: "Transferred", us[2]: "Transferred"}


def test_a_run_the_ledger_does_not_hold_stops_the_run_and_stays_in_the_state(
        basware, tap_config, run_tap):
    """The tap and the target must share one ledger; if not, say so and keep the outcomes."""
    config, first = acknowledged_run(basware, tap_config, run_tap)
    elsewhere = "5b0c3c1e-0000-4000-8000-000000000001"
    mark = basware.last_seq()

    run = run_tap(config, state={**first.final_state, RUNS_KEY: {elsewhere: 7}}, check=False)

    assert run.returncode != 0
    assert f"ledger run(s) {elsewhere}" in run.stderr
    assert "give both the same ledger_url" in run.stderr
    assert "the state does not say which ledger holds them" in run.stderr
    assert "meltano state clear --force tap-basware-to-target-sage300" in run.stderr \
        or re.search(r"`meltano --environment=\S+ state clear --force \S+:tap-basware-to-"
                     r"target-sage300`", run.stderr), run.stderr[-3000:]
    # No STATE at all: the job's saved state (naming the run) stays as it was.
    assert run.states == []
    assert not run.records() and basware.requests(mark) == []


def test_a_run_an_older_copy_of_the_ledger_lacks_is_dropped_and_its_invoices_read_again(
        basware, tap_config, run_tap, ledger_url):
    """The state says the run is in this very ledger, which no longer holds it: the ledger
    was restored from a backup taken before it. Its outcomes are lost; its invoices, still
    TransferInProgress, are read again in this run (for target-sage300 to find in Sage 300
    and answer), and the run leaves the state."""
    config, first = acknowledged_run(basware, tap_config, run_tap)
    lost = "5b0c3c1e-0000-4000-8000-000000000002"
    with Ledger.open(ledger_url) as ledger:
        identity = ledger_identity(ledger)
    in_progress = sorted(i for i, inv in basware.invoices().items()
                         if inv["processingStatus"] == IN_PROGRESS)
    mark = basware.last_seq()

    run = run_tap(config, state={**first.final_state, RUNS_KEY: {lost: 3},
                                 LEDGERS_KEY: {lost: identity}})

    assert run.returncode == 0, run.stderr[-3000:]
    assert f"does not hold target-sage300 ledger run(s) {lost}" in run.stderr
    assert "The runs are dropped from the state" in run.stderr
    assert sorted(r["invoiceId"] for r in run.records()) == in_progress
    assert RUNS_KEY not in run.final_state and LEDGERS_KEY not in run.final_state
    assert not [r for r in basware.requests(mark) if RESPONSES.match(r["path"])]  # no answer
