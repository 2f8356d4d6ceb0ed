""".singer fixture files pushed through target-sage300, checked at the Sage 300 simulator.

MeltanoLabs/target-postgres' pattern: the destination (here the simulator's state and request
log, over HTTP) is the judge, not the target's own account of what it did.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from target_sage300_testkit import (
    batches,
    connector_batches,
    create_fixture_po,
    entries_by_source,
    fixture,
    handed_over,
    run_target,
    sage_config,
    sage_requests,
)

from ml_connector_core.ledger import Ledger
from ml_connector_core.outcome_handover import RUNS_KEY
from mlc_sandbox.serve import Sandbox

BATCH_DESCRIPTION = re.compile(r"^ml-connector [0-9a-f]{8} (SAMINC|SAMLTD) #\d+$")


def sid(n: int) -> str:
    return f"f1{n:030x}"


@pytest.fixture
def sandbox(fresh_sandbox: Sandbox) -> Sandbox:
    create_fixture_po(fresh_sandbox)
    return fresh_sandbox


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def _posts(sandbox: Sandbox, since: int = 0) -> list[dict]:
    return [r for r in sage_requests(sandbox, since)
            if r["method"] == "POST" and r["path"].endswith("/AP/APInvoiceBatches")]


def test_po_and_non_po_invoices_become_one_ready_batch_per_company(
        sandbox: Sandbox, tmp_path: Path) -> None:
    run = run_target(sage_config(sandbox, tmp_path), fixture("po_and_non_po_invoices.singer"))
    assert run.error is None

    saminc, samltd = connector_batches(sandbox, "SAMINC"), connector_batches(sandbox, "SAMLTD")
    assert len(saminc) == 1 and len(samltd) == 1
    for batch in saminc + samltd:
        assert batch["BatchStatus"] == "ReadyToPost"
        assert BATCH_DESCRIPTION.match(batch["Description"])
    entries = entries_by_source(sandbox)
    assert sorted(entries) == [sid(1), sid(2), sid(3)]
    assert all(len(found) == 1 for found in entries.values())

    po_invoice = entries[sid(1)][0]
    # Coded from the PO lines (6200-300, 6500-400), not from the coding Basware carried.
    assert [(d["GLAccount"], d["DistributedAmount"]) for d in po_invoice["InvoiceDetails"]] == [
        ("6200300", 125.0), ("6500400", 100.0)]
    assert po_invoice["PONumber"] == "POFX0001"
    assert po_invoice["DocumentTotalIncludingTax"] == 236.25
    assert po_invoice["DocumentNumber"] == "FX-PO-1" and po_invoice["VendorNumber"] == "1200"

    non_po = entries[sid(2)][0]
    assert [d["GLAccount"] for d in non_po["InvoiceDetails"]] == ["6300100"]
    credit = entries[sid(3)][0]
    assert credit["DocumentType"] == "CreditNote"
    assert credit["DocumentTotalIncludingTax"] == 84.0  # positive: the type carries the sign
    canadian = entries_by_source(sandbox, "SAMLTD")[sid(4)][0]
    assert canadian["CurrencyCode"] == "CAD"
    assert [d["GLAccount"] for d in canadian["InvoiceDetails"]] == ["6700100"]

    # The emitted state: the tap's latest bookmark plus one outcome per invoice.
    final = run.states[-1]
    assert final["bookmarks"]["accounting_documents"]["replication_key_value"] == \
        "2026-10-02T12:00:00Z"
    batch_number = saminc[0]["BatchNumber"]
    assert run.outcomes[sid(1)] == {
        "success": True, "batch": batch_number, "entry": po_invoice["EntryNumber"],
        "company": "SAMINC",
        "message": f"Created in Sage 300 company SAMINC, batch {batch_number} entry "
                   f"{po_invoice['EntryNumber']} (ready to post)"}
    assert {key: value["success"] for key, value in run.outcomes.items()} == {
        sid(1): True, sid(2): True, sid(3): True, sid(4): True}
    assert run.outcomes[sid(4)]["company"] == "SAMLTD"


def test_second_run_creates_nothing_and_answers_already_there(
        sandbox: Sandbox, tmp_path: Path) -> None:
    config = sage_config(sandbox, tmp_path)
    first = run_target(config, fixture("po_and_non_po_invoices.singer"))
    seq = sage_requests(sandbox)[-1]["seq"]

    second = run_target(config, fixture("po_and_non_po_invoices.singer"))

    assert second.error is None
    assert _posts(sandbox, seq) == []
    assert all(len(found) == 1 for found in entries_by_source(sandbox).values())
    for source_id, outcome in second.outcomes.items():
        assert outcome["success"] is True
        assert (outcome["batch"], outcome["entry"]) == (first.outcomes[source_id]["batch"],
                                                        first.outcomes[source_id]["entry"])
        assert outcome["message"].startswith("Already in Sage 300 company")


def test_without_the_ledger_sage_itself_proves_the_invoices_are_there(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """The ledger lost (or a second machine): BWINVID on the Sage documents still stops a
    second copy."""
    run_target(sage_config(sandbox, tmp_path / "one"), fixture("po_and_non_po_invoices.singer"))
    seq = sage_requests(sandbox)[-1]["seq"]

    again = run_target(sage_config(sandbox, tmp_path / "two"),
                       fixture("po_and_non_po_invoices.singer"))

    assert _posts(sandbox, seq) == []
    assert all("found by BWINVID" in o["message"] for o in again.outcomes.values())


def test_posted_invoices_are_found_among_posted_documents(sandbox: Sandbox,
                                                          tmp_path: Path) -> None:
    run = run_target(sage_config(sandbox, tmp_path / "one", post_batches=True),
                     fixture("po_and_non_po_invoices.singer"))
    assert run.error is None
    assert {b["BatchStatus"] for b in connector_batches(sandbox)} == {"Posted"}
    seq = sage_requests(sandbox)[-1]["seq"]

    # A new ledger: only Sage's posted documents (vendor + document number) can tell.
    again = run_target(sage_config(sandbox, tmp_path / "two"),
                       fixture("po_and_non_po_invoices.singer"))

    assert _posts(sandbox, seq) == []
    assert all(o["success"] and "posted document" in o["message"]
               for o in again.outcomes.values())


def test_business_rejections_name_the_cause_and_the_good_invoice_still_arrives(
        sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = sage_config(sandbox, tmp_path)
    run = run_target(config, fixture("business_rejections.singer"))

    assert run.error is None  # business rejections do not fail the run
    assert sorted(entries_by_source(sandbox)) == [sid(0x1F)]
    expected = {
        0x11: "GL account 6999-200 does not exist in Sage 300 company SAMINC",
        0x12: "GL account 6100-900 is inactive in Sage 300 company SAMINC",
        0x13: "Vendor 1270 is inactive in SAMINC",
        0x14: "Vendor 9999 does not exist in Sage 300 company SAMINC",
        0x15: "PO PO999999 not found in company SAMINC",
        0x16: "PO POFX0001 line 9000 not found in company SAMINC",
        0x17: "GL account 6100-900 is inactive in Sage 300 company SAMINC",
        0x18: "PO POFX0001 belongs to vendor 1200, not to vendor 1210",
        0x19: "Invoice currency CAD differs from vendor 1200's currency USD in SAMINC",
        0x1A: "cost center 200 does not match GL account 6300-100, whose cost center is 100",
        0x1C: "line 1: GL account 6999-200 does not exist in Sage 300 company SAMINC; line 2: "
              "GL account 6100-900 is inactive in Sage 300 company SAMINC",
    }
    for number, message in expected.items():
        assert run.outcomes[sid(number)] == {"success": False, "message": message,
                                             "batch": None, "entry": None,
                                             "company": "SAMINC"}, hex(number)
    assert run.outcomes[sid(0x1B)]["message"].startswith(
        "Sage 300 company NOSUCH does not exist")
    assert run.outcomes[sid(0x1F)]["success"] is True
    assert "13 ap_invoices: 1 created, 12 rejected" in caplog.text

    ledger = Ledger.open(config["ledger_url"])
    rejected = ledger.latest_outcome("ap_invoices", sid(0x11))
    assert rejected is not None and rejected.action == "rejected"
    assert rejected.error == expected[0x11]
    assert rejected.payload["document_number"] == "FX-R-01"  # replayable once fixed
    created = ledger.latest_outcome("ap_invoices", sid(0x1F))
    assert created is not None and created.action == "created"
    assert created.sage_batch == str(run.outcomes[sid(0x1F)]["batch"])


def test_bad_records_are_rejected_alone_naming_record_and_field(
        sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = sage_config(sandbox, tmp_path)
    run = run_target(config, fixture("bad_records.singer"))

    assert run.error is None
    # The two good records arrived, once each; nothing else did.
    found = entries_by_source(sandbox)
    assert sorted(found) == [sid(0x21), sid(0x22)]
    assert [e["DocumentNumber"] for e in found[sid(0x21)]] == ["FX-B-OK1"]

    expected_fields = {
        0x33: "vendor_number", 0x34: "vendor_number", 0x35: "document_number",
        # 0x38: totals of -100 and -95 (a credit) with a tax of +5 against them.
        0x36: "document_number", 0x37: "description", 0x38: "tax_total",
        0x39: "lines[0].amount", 0x3A: "net_total", 0x3B: "lines", 0x3C: "lines",
        0x3D: "lines[0]", 0x3E: "document_type", 0x3F: "document_date",
        0x40: "document_date", 0x41: "currency", 0x42: "net_total", 0x43: "gross_total",
        0x44: "lines[0].po_line", 0x45: "company", 0x46: "vendor_number",
        0x47: "lines[0].gl_account",
    }
    for number, field in expected_fields.items():
        outcome = run.outcomes[sid(number)]
        assert outcome["success"] is False, hex(number)
        assert f"field {field}:" in outcome["message"], (hex(number), outcome)
        assert len(outcome["message"]) <= 250
        # The log names the record (position and source_id) and the field.
        assert re.search(rf"ap_invoices record \d+ \(source_id {sid(number)}\) rejected: "
                         rf"field .*{re.escape(field)}:", caplog.text), hex(number)
    assert "has 10000 characters, at most 22 allowed" in run.outcomes[sid(0x36)]["message"]
    assert "\x00" not in caplog.text  # control characters are shown escaped, never raw

    # No usable source_id: rejected and recorded, but there is nothing to answer upstream.
    assert re.search(r"record 1 \(no usable source_id\) rejected: field source_id: is required",
                     caplog.text)
    assert re.search(r"record 2 \(no usable source_id\) rejected: field source_id: .* may hold "
                     r"only letters", caplog.text)
    assert not any("or true" in key for key in run.outcomes)
    # The repeated source id: logged, its first outcome stands.
    assert run.outcomes[sid(0x21)]["success"] is True
    assert "appears more than once in this run" in caplog.text
    assert "26 ap_invoices: 2 created, 23 rejected, 1 duplicate in run" in caplog.text

    # Nothing with a quote, slash or percent ever reached a Sage URL.
    for request in sage_requests(sandbox):
        assert "12/00" not in request["path"] and "12%00" not in request["query"]


def test_a_checkpoint_follows_every_batch(sandbox: Sandbox, tmp_path: Path) -> None:
    """batch_size 3: batches of 3, 3 and 1. A STATE follows a batch when it says something
    new: the first names the run (its outcomes are in the ledger from then on); the tap
    part only moves past records once all records before it are settled."""
    config = sage_config(sandbox, tmp_path, batch_size=3)
    run = run_target(config, fixture("seven_invoices_two_states.singer"))

    assert run.error is None
    assert [len(b["Invoices"]) for b in connector_batches(sandbox)] == [3, 3, 1]
    assert all(s[RUNS_KEY] == {run.target.invoice_run.run_id: 0} for s in run.states)
    marks = [s["bookmarks"]["accounting_documents"]["replication_key_value"]
             for s in run.states]
    assert marks == ["2026-10-05T03:00:00Z", "2026-10-05T07:00:00Z"]
    assert len(run.outcomes) == 7
    # The STATE is the same few hundred bytes whatever the size of the run.
    assert max(len(json.dumps(s)) for s in run.states) < 400


def test_a_state_handed_over_mid_run_names_every_outcome_settled_so_far(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """The first STATE names the run before the last batch exists; read after the run, the
    ledger holds that batch's outcomes too: nothing settled after a checkpoint is lost to a
    crash, and the tap answers each invoice once."""
    config = sage_config(sandbox, tmp_path, batch_size=3)
    run = run_target(config, fixture("seven_invoices_two_states.singer"))
    first = handed_over(run.states[0], config["ledger_url"])
    assert first == run.outcomes and len(first) == 7


def test_outcomes_the_tap_has_not_answered_yet_are_carried(sandbox: Sandbox,
                                                           tmp_path: Path) -> None:
    text = fixture("po_and_non_po_invoices.singer").read_text().replace(
        '{"type": "STATE", "value": {"bookmarks"',
        '{"type": "STATE", "value": {"transfer_outcomes": {"older": {"success": false, '
        '"message": "from an earlier run", "batch": null, "entry": null, "company": "SAMINC"}},'
        ' "bookmarks"')
    run = run_target(sage_config(sandbox, tmp_path), text)
    assert run.outcomes["older"]["message"] == "from an earlier run"
    assert len(run.outcomes) == 5


def test_batch_descriptions_are_unique_per_run(sandbox: Sandbox, tmp_path: Path) -> None:
    config = sage_config(sandbox, tmp_path, batch_size=2)
    run_target(config, fixture("seven_invoices_two_states.singer"))
    descriptions = [b["Description"] for b in batches(sandbox)]
    assert len(descriptions) == len(set(descriptions)) == 4
