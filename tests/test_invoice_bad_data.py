"""Bad invoice data through the real `meltano run invoices` (issue 16, items 1 and 3).

Approved invoices are put in the Basware simulator's queue as Basware holds them (the
sandbox's admin endpoint, `_set`/`_remove` for values a P2P user could not type), then the
job runs as an operator runs it: tap-basware reads and acknowledges them, the stream maps of
meltano.yml rename them, target-sage300 maps, checks and creates, and the job's second task
answers Basware. What must hold, judged in both simulators, the ledger and the log:

- the run succeeds: no invoice's content stops it (a mistyped `netSum`, a null coding row,
  a missing field, a hostile string...), in either plugin;
- every good invoice of the same run is in Sage exactly once, with the document type and the
  signed amounts the rules give (credit notes of either sign, negative invoices, discount and
  zero-amount lines, unknown type codes), and is answered `Transferred`;
- every bad one is not in Sage, is answered `TransferFailed` with a reason naming the field
  as Basware calls it (`netSum`, `codingRows[0].netTotal`), is named (key and field) in the
  target's log, and is in `ml-connector audit failures`.

The first test is a fixed set; the second draws invoices with hypothesis (one `meltano run`
per example, several invoices each, since the run is what is under test).
"""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import ROOT, Project, basware_tenant, sage_entries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_core.audit import main as audit_main
from ml_connector_core.ledger import Action, Ledger
from mlc_sandbox.serve import Sandbox

BIN = Path(sys.executable).parent
#: `meltano run`s of the generated test (about 5 s each); more for a longer search, e.g.
#: ML_CONNECTOR_BAD_DATA_RUNS=40.
EXAMPLE_RUNS = int(os.environ.get("ML_CONNECTOR_BAD_DATA_RUNS", "8"))
EXAMPLES = itertools.count(1)


@dataclass
class Case:
    """One invoice to put in Basware's queue, and what must become of it."""

    body: dict[str, Any]  # for POST /_sandbox/invoices
    # Good: what Sage holds (DocumentType, DocumentTotalIncludingTax, DistributedAmounts) and
    # the note the answer carries after the created message.
    sage: tuple[str, float, list[float]] | None = None
    note: str | None = None
    # Bad: the field as Basware names it, which the reason must show ("netSum").
    field: str | None = None
    invoice_id: str = ""

    @property
    def good(self) -> bool:
        return self.field is None


def rows(*amounts: float, tax: float = 0.0) -> list[dict[str, Any]]:
    """Basware coding rows of a non-PO invoice on GL 6300-100 (cost center 100), without a tax
    code: the tax total goes on the entry (target-sage300 tax.py)."""
    return [{"rowIndex": n, "externalCode": f"row-{n}", "accountCode": "6300-100",
             "accountName": "Office supplies", "costCenterCode": "100",
             "netTotal": amount, "taxSum": tax if n == 1 else 0.0}
            for n, amount in enumerate(amounts, start=1)]


def amounts(number: str, code: Any, net: float, tax: float, lines: list[float]
            ) -> dict[str, Any]:
    return {"invoiceNumber": number, "_set": {
        "invoiceTypeCode": code, "netSum": net, "taxSum1": tax, "grossSum": round(net + tax, 2),
        "codingRows": rows(*lines, tax=tax)}}


# Good invoices: (type code, net, tax, line amounts, what Sage holds, the note).
SIGNED: list[tuple[Any, float, float, list[float], tuple[str, float, list[float]], str | None]] = [
    ("380", 100.0, 5.0, [100.0], ("Invoice", 105.0, [100.0]), None),
    ("381", -80.0, -4.0, [-80.0], ("CreditNote", 84.0, [80.0]), None),  # Basware's sign
    ("381", 80.0, 4.0, [80.0], ("CreditNote", 84.0, [80.0]), None),  # UN/CEFACT's sign
    ("381", -80.0, -4.0, [-100.0, 20.0], ("CreditNote", 84.0, [100.0, -20.0]), None),
    ("380", -100.0, -5.0, [-100.0], ("CreditNote", 105.0, [100.0]),
     "a credit note: type code '380' (an invoice) with negative amounts"),
    ("380", 250.0, 12.5, [300.0, -50.0], ("Invoice", 262.5, [300.0, -50.0]), None),  # discount
    ("380", 100.0, 5.0, [100.0, 0.0], ("Invoice", 105.0, [100.0, 0.0]), None),  # zero line
    ("383", 60.0, 3.0, [60.0], ("DebitNote", 63.0, [60.0]), None),
    ("383", -60.0, 0.0, [-60.0], ("CreditNote", 60.0, [60.0]),
     "a credit note: type code '383' (a debit note) with negative amounts"),
    ("KI", 70.0, 3.5, [70.0], ("Invoice", 73.5, [70.0]), "an invoice: type code 'KI' is not mapped"),
    (None, -40.0, 0.0, [-50.0, 10.0], ("CreditNote", 40.0, [50.0, -10.0]),
     "a credit note: no type code and the amounts are negative"),
    ("380", 0.0, 0.0, [0.0], ("Invoice", 0.0, [0.0]), None),
]


def good_case(number: str, which: int) -> Case:
    code, net, tax, lines, sage, note = SIGNED[which % len(SIGNED)]
    return Case(amounts(number, code, net, tax, lines), sage=sage, note=note)


def bad_case(number: str, change: dict[str, Any], basware_field: str) -> Case:
    """A good invoice (100 net + 5 tax on one row) with one change that breaks it."""
    body = amounts(number, "380", 100.0, 5.0, [100.0])
    body["_set"].update(change.get("_set", {}))
    body["_remove"] = change.get("_remove", [])
    if "row" in change:  # a change inside the first coding row
        row = body["_set"]["codingRows"][0]
        row.update(change["row"])
        for name in change.get("row_remove", []):
            row.pop(name)
    return Case(body, field=basware_field)


# The fixed set: what used to stop the whole job, and one of each other kind.
FIXED_BAD: list[tuple[dict[str, Any], str]] = [
    ({"_set": {"netSum": "125.00"}}, "netSum"),  # issue 16: a TypeError in the stream map
    ({"_set": {"codingRows": [None]}}, "codingRows[0]"),  # issue 16: a null coding row
    ({"_set": {"codingRows": "6300-100"}}, "codingRows"),
    ({"_remove": ["grossSum"]}, "grossSum"),
    ({"_set": {"invoiceDate": 20261001}}, "invoiceDate"),
    ({"row": {"netTotal": "100"}}, "codingRows[0].netTotal"),
    ({"row_remove": ["accountCode"], "row": {}}, "codingRows[0]"),
    ({"_set": {"supplierCode": ["1200"]}}, "supplierCode"),
    ({"_set": {"invoiceTypeCode": {"code": "381"}}}, "invoiceTypeCode"),
    ({"_set": {"taxSum1": -5.0, "grossSum": 95.0}}, "taxSum1"),  # a tax against the sign
    ({"_set": {"netSum": 250.0, "grossSum": 255.0}}, "netSum"),  # lines add up to 100
    ({"_set": {"description": "line one\nline two"}}, "description"),
]


# -- the simulators and the tools -------------------------------------------------------------

def queue(sandbox: Sandbox, cases: list[Case]) -> None:
    for case in cases:
        response = requests.post(f"{sandbox.basware.base_url}/_sandbox/invoices",
                                 json=case.body, timeout=30)
        assert response.status_code == 201, response.text
        case.invoice_id = response.json()["invoiceId"]


def audit_failures(project: Project) -> str:
    """`ml-connector audit failures` on the project's ledger (the CLI's own code)."""
    out = io.StringIO()
    assert audit_main(["--ledger-url", project.ledger_url, "failures"], out=out) == 0
    return out.getvalue()


def assert_outcomes(project: Project, cases: list[Case], log: str) -> None:
    sandbox = project.sandbox
    entries = sage_entries(sandbox)
    invoices = {i["invoiceId"]: i for i in basware_tenant(sandbox)["invoices"]}
    failures = audit_failures(project)
    with Ledger.open(project.ledger_url) as ledger:
        for case in cases:
            invoice = invoices[case.invoice_id]
            answer = (invoice["transferResponses"] or [{}])[-1]
            copies = entries.get(case.invoice_id, [])
            if case.good:
                assert len(copies) == 1, (case, copies)
                entry = copies[0]
                document_type, total, lines = case.sage or ("", 0.0, [])
                assert entry["DocumentType"] == document_type, case
                assert entry["DocumentTotalIncludingTax"] == pytest.approx(total), case
                assert [d["DistributedAmount"] for d in entry["InvoiceDetails"]] == \
                    pytest.approx(lines), case
                assert invoice["processingStatus"] == "Transferred", (case, answer)
                assert answer["success"] is True
                expected = (f"Created in Sage 300 company SAMINC, batch {entry['BatchNumber']} "
                            f"entry {entry['EntryNumber']} (ready to post)")
                assert answer["responseMessage"] == (
                    f"{expected}; {case.note}" if case.note else expected), case
                continue
            # Bad: not in Sage, answered with the field, named in the log and the ledger.
            assert copies == [], case
            assert invoice["processingStatus"] == "TransferFailed", (case, answer)
            reason = answer["responseMessage"]
            assert answer["success"] is False and reason.startswith("field "), (case, reason)
            assert f"({case.field}):" in reason or reason.startswith(f"field {case.field}:"), \
                (case, reason)
            assert re.search(rf"ap_invoices record \d+ \(source_id {case.invoice_id}\) "
                             rf"rejected: {re.escape(reason[:200])}", log), case
            recorded = [e for e in ledger.trace(case.invoice_id)
                        if e.action == Action.REJECTED and e.stream == "ap_invoices"]
            assert recorded and recorded[-1].error.startswith(reason[:240]), (case, recorded)
            # Listed with its real message (field names intact) and the invoice's ids.
            assert " ".join(recorded[-1].error.split())[:80] in failures, (case, failures)


# -- a fixed set --------------------------------------------------------------------------------

@pytest.fixture
def pipeline(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    return Project.create(fresh_sandbox, tmp_path)


def test_bad_invoices_are_answered_alone_and_good_ones_of_every_sign_arrive(
        pipeline: Project) -> None:
    cases = [good_case(f"BDG-{n}", n) for n in range(len(SIGNED))]
    cases += [bad_case(f"BDB-{n}", change, name)
              for n, (change, name) in enumerate(FIXED_BAD)]
    queue(pipeline.sandbox, cases)

    first = pipeline.run("invoices", name="first")
    assert first.ok, first.output[-4000:]
    assert_outcomes(pipeline, cases, first.output)
    # Issue 16's own two: the reasons a person in Basware reads.
    answers = {i["invoiceId"]: i["transferResponses"][-1]["responseMessage"]
               for i in basware_tenant(pipeline.sandbox)["invoices"] if i["transferResponses"]}
    assert answers[cases[len(SIGNED)].invoice_id] == \
        "field net_total (netSum): must be number, got '125.00'"
    assert answers[cases[len(SIGNED) + 1].invoice_id] == \
        "field lines[0] (codingRows[0]): must be object, got None"
    # Every bad one is in `ml-connector audit failures`, by key (their causes all differ).
    listed = subprocess.run([str(BIN / "ml-connector"), "audit", "--ledger-url",
                             pipeline.ledger_url, "failures"], cwd=ROOT, env=pipeline.env,
                            capture_output=True, text=True, timeout=120, check=True).stdout
    for case in cases:
        assert (case.invoice_id in listed) is (not case.good), case

    again = pipeline.run("invoices", name="again")
    assert again.ok, again.output[-4000:]
    assert_outcomes(pipeline, cases, first.output)  # nothing twice, nothing answered again


# -- generated -----------------------------------------------------------------------------------

WRONG_FOR_NUMBER = st.one_of(
    st.sampled_from(["125.00", "1e3", "", "NaN", "-0"]), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2))
WRONG_FOR_TEXT = st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3),
                                                               st.text(max_size=3), max_size=2))
ABSENT = st.sampled_from(["null", "missing"])
CONTROL = st.sampled_from(["\x00", "\t", "\n", "\x1b", "\x7f"])


@st.composite
def bad_changes(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """One change that makes a good invoice bad, and the Basware field the reason names."""
    kind = draw(st.sampled_from([
        "required_number", "optional_number", "required_text", "optional_text", "absent",
        "hostile_text", "type_code", "coding_rows", "row", "row_field", "sums"]))

    def absent(name: str) -> dict[str, Any]:
        return {"_remove": [name]} if draw(ABSENT) == "missing" else {"_set": {name: None}}

    if kind == "required_number":
        name = draw(st.sampled_from(["netSum", "grossSum"]))
        return {"_set": {name: draw(WRONG_FOR_NUMBER)}}, name
    if kind == "optional_number":
        name = draw(st.sampled_from(["taxSum1", "taxSum2"]))
        return {"_set": {name: draw(WRONG_FOR_NUMBER)}}, name
    if kind == "required_text":
        name = draw(st.sampled_from(["invoiceNumber", "invoiceDate", "currencyCode",
                                     "supplierCode"]))
        return {"_set": {name: draw(WRONG_FOR_TEXT)}}, name
    if kind == "optional_text":
        name = draw(st.sampled_from(["dueDate", "description"]))
        return {"_set": {name: draw(WRONG_FOR_TEXT)}}, name
    if kind == "absent":
        name = draw(st.sampled_from(["netSum", "grossSum", "invoiceNumber", "invoiceDate",
                                     "currencyCode", "supplierCode", "codingRows"]))
        return absent(name), name
    if kind == "hostile_text":
        name, value = draw(st.sampled_from([
            ("invoiceNumber", f"INV{draw(CONTROL)}1"), ("invoiceNumber", "INV'1"),
            ("invoiceNumber", "INV/1"), ("invoiceNumber", "X" * draw(st.integers(23, 5000))),
            ("supplierCode", "1200' or 1 eq 1"), ("supplierCode", "12/00"),
            ("supplierCode", "12%00"), ("currencyCode", "usd"), ("currencyCode", "USDX"),
            ("invoiceDate", "2026-02-30"), ("invoiceDate", "yesterday"),
            ("invoiceDate", "0999-01-01"), ("dueDate", "31.12.2026"),
            ("description", f"text{draw(CONTROL)}more"),
            ("description", "Ü" * draw(st.integers(251, 100_000)))]))
        return {"_set": {name: value}}, name
    if kind == "type_code":
        value = draw(st.one_of(st.booleans(), st.floats(0.1, 999.9).filter(
            lambda v: not v.is_integer()), st.lists(st.just("381"), min_size=1, max_size=2),
            st.just({"code": "381"}), st.just("38\n1"), st.just("3" * 21)))
        return {"_set": {"invoiceTypeCode": value}}, "invoiceTypeCode"
    if kind == "coding_rows":
        value = draw(st.one_of(st.text(max_size=5), st.integers(), st.just({"netTotal": 100}),
                               st.just([])))
        return {"_set": {"codingRows": value}}, "codingRows"
    if kind == "row":
        value = draw(st.one_of(st.none(), st.text(max_size=5), st.integers(),
                               st.lists(st.integers(), max_size=2)))
        return {"_set": {"codingRows": [value]}}, "codingRows[0]"
    if kind == "row_field":
        name = draw(st.sampled_from(["netTotal", "taxSum", "accountCode", "costCenterCode"]))
        if name in ("netTotal", "taxSum"):
            value = draw(WRONG_FOR_NUMBER if name == "taxSum"
                         else st.one_of(WRONG_FOR_NUMBER, st.none()))
        else:
            value = draw(WRONG_FOR_TEXT)
        if name == "netTotal" and value is None and draw(st.booleans()):
            return {"row": {}, "row_remove": ["netTotal"]}, "codingRows[0].netTotal"
        if name == "accountCode" and draw(st.booleans()):  # no coding at all
            return {"row": {"accountCode": draw(st.sampled_from([None, ""]))}}, \
                "codingRows[0]"
        return {"row": {name: value}}, f"codingRows[0].{name}"
    # Numbers of the right type that do not agree.
    change, name = draw(st.sampled_from([
        ({"_set": {"netSum": 101.0, "grossSum": 106.0}}, "netSum"),  # lines add up to 100
        ({"_set": {"grossSum": 104.0}}, "grossSum"),  # 100 + 5 is not 104
        ({"_set": {"taxSum1": -5.0, "grossSum": 95.0}}, "taxSum1"),  # tax against the sign
        ({"_set": {"netSum": 1e13, "grossSum": 1e13 + 5}}, "grossSum"),  # absurd
    ]))
    return change, name


@st.composite
def batches(draw: st.DrawFn) -> list[Case]:
    prefix = f"BX{next(EXAMPLES):03d}"
    cases = [good_case(f"{prefix}-0", draw(st.integers(0, len(SIGNED) - 1)))]
    for n in range(1, draw(st.integers(2, 6)) + 1):
        if draw(st.booleans()):
            cases.append(good_case(f"{prefix}-{n}", draw(st.integers(0, len(SIGNED) - 1))))
        else:
            change, name = draw(bad_changes())
            cases.append(bad_case(f"{prefix}-{n}", change, name))
    return draw(st.permutations(cases))


@settings(max_examples=EXAMPLE_RUNS, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cases=batches())
def test_generated_bad_invoices_never_stop_the_job_and_are_answered_with_their_field(
        cases: list[Case], fresh_sandbox: Sandbox,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """One `meltano run invoices` per example, in one project (its state and ledger carry
    over, as in production): each example's invoices are judged after its run."""
    project = Project.create(fresh_sandbox, tmp_path_factory.getbasetemp() / "bad-data")
    queue(fresh_sandbox, cases)
    run = project.run("invoices", name="example")
    assert run.ok, run.output[-4000:]
    assert_outcomes(project, cases, run.output)
    waiting = [i["invoiceId"] for i in basware_tenant(fresh_sandbox)["invoices"]
               if i["processingStatus"] in ("WaitingForTransfer", "TransferInProgress")]
    assert waiting == []  # every invoice of the queue was answered, good or bad
