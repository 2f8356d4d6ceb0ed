"""What target-sage300 does when Sage 300 misbehaves: lost responses, refusals, outages.

Faults are injected by the simulator (deterministic schedules), and every assertion is about
what Sage ends up holding: never a second copy of an invoice, never an invoice lost.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from target_sage300_testkit import (
    SCHEMA_MESSAGE,
    connector_batches,
    create_fixture_po,
    entries_by_source,
    fixture,
    handed_over,
    invoice,
    record_message,
    run_target,
    sage_api,
    sage_config,
    sage_requests,
    set_sage_faults,
    singer_lines,
)

from ml_connector_core.ledger import Ledger
from mlc_sandbox.data import SAGE_PASSWORD
from mlc_sandbox.serve import Sandbox

TARGET = str(Path(sys.executable).with_name("target-sage300"))


@pytest.fixture
def sandbox(fresh_sandbox: Sandbox) -> Sandbox:
    create_fixture_po(fresh_sandbox)
    return fresh_sandbox


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def _batch_posts(sandbox: Sandbox) -> list[dict]:
    return [r for r in sage_requests(sandbox)
            if r["method"] == "POST" and r["path"].endswith("/AP/APInvoiceBatches")]


def _three_invoices() -> str:
    return singer_lines(SCHEMA_MESSAGE,
                        record_message(invoice("a1", "INV-1")),
                        record_message(invoice("a2", "INV-2", vendor="1210")),
                        record_message(invoice("a3", "INV-3", vendor="1220")),
                        {"type": "STATE", "value": {"bookmarks": {"x": 1}}})


def test_a_lost_response_is_reconciled_by_the_batch_description(sandbox: Sandbox,
                                                                 tmp_path: Path) -> None:
    """Sage creates the batch, the connection drops before the answer (drop_after)."""
    set_sage_faults(sandbox, {"schedule": [{"nth": 1, "fault": "drop_after", "method": "POST",
                                            "path": "APInvoiceBatches$"}]})
    run = run_target(sage_config(sandbox, tmp_path), _three_invoices())

    assert run.error is None
    assert len(_batch_posts(sandbox)) == 1  # looked up, not sent again
    lookups = [r for r in sage_requests(sandbox) if r["method"] == "GET"
               and "Description+eq" in r["query"].replace("%20", "+")]
    assert len(lookups) == 1
    found = entries_by_source(sandbox)
    assert sorted(found) == ["a1", "a2", "a3"] and all(len(v) == 1 for v in found.values())
    assert all(o["success"] and o["batch"] == connector_batches(sandbox)[0]["BatchNumber"]
               for o in run.outcomes.values())


def test_a_dropped_request_is_looked_up_then_sent_again(sandbox: Sandbox,
                                                        tmp_path: Path) -> None:
    """The connection drops before Sage processed anything: the lookup finds no batch, so the
    invoices go again under a new description."""
    set_sage_faults(sandbox, {"schedule": [{"nth": 1, "fault": "drop", "method": "POST",
                                            "path": "APInvoiceBatches$"}]})
    run = run_target(sage_config(sandbox, tmp_path), _three_invoices())

    assert run.error is None
    assert len(_batch_posts(sandbox)) == 2
    batches = connector_batches(sandbox)
    assert len(batches) == 1 and batches[0]["Description"].endswith("#2")
    assert all(len(v) == 1 for v in entries_by_source(sandbox).values())


def test_a_duplicate_keyed_by_a_person_becomes_already_there(sandbox: Sandbox,
                                                             tmp_path: Path) -> None:
    """An AP clerk keyed INV-2 by hand into an open batch: Sage's 409 names it, the other two
    are created without it, and INV-2 is answered with the clerk's batch and entry."""
    clerk = sage_api(sandbox, "POST", "SAMINC", "AP/APInvoiceBatches", json={
        "Description": "Keyed by the AP clerk", "Invoices": [{
            "VendorNumber": "1210", "DocumentNumber": "INV-2", "DocumentType": "Invoice",
            "InvoiceDetails": [{"GLAccount": "6300100", "DistributedAmount": 100}]}]})
    clerk.raise_for_status()
    clerk_batch = clerk.json()["BatchNumber"]

    run = run_target(sage_config(sandbox, tmp_path), _three_invoices())

    assert run.error is None
    posts = _batch_posts(sandbox)
    assert len(posts) == 3  # the clerk's, ours refused (409), ours without INV-2
    assert sorted(entries_by_source(sandbox)) == ["a1", "a3"]
    assert run.outcomes["a2"]["success"] is True
    assert (run.outcomes["a2"]["batch"], run.outcomes["a2"]["entry"]) == (clerk_batch, 1)
    assert "vendor and document number" in run.outcomes["a2"]["message"]


def test_a_refusal_that_names_no_invoice_is_narrowed_down(sandbox: Sandbox,
                                                          tmp_path: Path) -> None:
    """Sage refuses one vendor's invoice for a reason we cannot check beforehand (its terms
    code was deleted): the batch is halved until the one invoice is found; it is rejected with
    Sage's own message and the others are created."""
    # Vendor 1230 gets a terms code of its own, which is then deleted (Sage does not check
    # dependents on DELETE): only the POST of its invoice can find out.
    sage_api(sandbox, "POST", "SAMINC", "AP/APTerms", json={
        "TermsCode": "ZZ9", "Description": "Withdrawn terms"}).raise_for_status()
    sage_api(sandbox, "PATCH", "SAMINC", "AP/APVendors('1230')",
             json={"Terms": "ZZ9"}).raise_for_status()
    sage_api(sandbox, "DELETE", "SAMINC", "AP/APTerms('ZZ9')").raise_for_status()

    text = singer_lines(SCHEMA_MESSAGE,
                        record_message(invoice("b1", "INV-B1")),
                        record_message(invoice("b2", "INV-B2", vendor="1230")),
                        record_message(invoice("b3", "INV-B3", vendor="1210")))
    run = run_target(sage_config(sandbox, tmp_path), text)

    assert run.error is None
    assert sorted(entries_by_source(sandbox)) == ["b1", "b3"]
    assert run.outcomes["b2"] == {
        "success": False, "batch": None, "entry": None, "company": "SAMINC",
        "message": "Sage 300 refused the invoice: Terms code ZZ9 does not exist."}


def test_a_persistent_outage_fails_the_run_and_keeps_what_was_settled(
        sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every batch POST answers 500: the run fails (non-zero) after a bounded number of
    tries, the rejection decided before the outage is still in the emitted state, and the
    invoices in flight get no outcome, so the next run sends them."""
    set_sage_faults(sandbox, {"rates": {"500": 1.0}, "methods": ["POST"],
                              "path": "APInvoiceBatches$"})
    text = singer_lines(SCHEMA_MESSAGE,
                        record_message(invoice("c1", "INV-C1", gl_account="6999-200")),
                        record_message(invoice("c2", "INV-C2")))
    config = sage_config(sandbox, tmp_path)
    failed = run_target(config, text)

    assert failed.error is not None
    assert "outcome unknown" in str(failed.error)
    assert connector_batches(sandbox) == []
    assert failed.outcomes == {"c1": {
        "success": False, "batch": None, "entry": None, "company": "SAMINC",
        "message": "GL account 6999-200 does not exist in Sage 300 company SAMINC"}}
    assert "target-sage300 failed" in caplog.text
    assert Ledger.open(config["ledger_url"]).latest_outcome("ap_invoices", "c2").action \
        == "failed"

    set_sage_faults(sandbox, {})
    again = run_target(config, text)
    assert again.error is None
    assert sorted(entries_by_source(sandbox)) == ["c2"]
    assert again.outcomes["c2"]["success"] is True


def test_cli_exit_status_and_summary(sandbox: Sandbox, tmp_path: Path) -> None:
    """Business rejections only: exit 0 and a summary on stderr. Wrong password: non-zero,
    with a reason a person can act on and without the password anywhere."""
    config = sage_config(sandbox, tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    result = subprocess.run([TARGET, "--config", str(config_file), "--input",
                             str(fixture("business_rejections.singer"))],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "13 ap_invoices: 1 created, 12 rejected" in result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(handed_over(state, config["ledger_url"])) == 13

    config_file.write_text(json.dumps({**config, "password": "Wrong-Pass9"}))
    bad = subprocess.run([TARGET, "--config", str(config_file), "--input",
                          str(fixture("po_and_non_po_invoices.singer"))],
                         capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode != 0
    assert "Sage 300 refused the credentials for user WEBAPI" in bad.stderr
    assert "transfer_outcome" not in bad.stdout  # nothing settled, nothing to answer
    for secret in ("Wrong-Pass9", "WRONG-PASS9", SAGE_PASSWORD, SAGE_PASSWORD.upper()):
        assert secret not in bad.stderr + bad.stdout + result.stderr + result.stdout
    ledger_text = (tmp_path / "ledger.sqlite").read_bytes()
    assert b"Wrong-Pass9" not in ledger_text and SAGE_PASSWORD.encode() not in ledger_text
