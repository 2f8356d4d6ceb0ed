"""Hostile input, generated, through the whole target: bad invoices are rejected alone.

test_contract_properties.py shows the contract check never crashes on any value. This module
pushes whole runs through the real target against the Sage 300 simulator over HTTP: a mix of
good invoices (credit notes with either sign, negative invoices, discount and zero-amount
lines, each checked in Sage by document type, total and line amounts; non-ASCII text;
document numbers with characters that mean something in OData and URLs: parentheses, `+`,
`*`, `$`, `,`, `;`, `=`, `@`, blanks, `eq`/`or`) and bad ones of every kind: a missing field,
a wrong type, a huge string, a control character, NaN/Infinity, an absurd amount, totals
whose signs disagree, quotes, slashes or `%` in a key, an unknown or inactive vendor, an
unknown or inactive GL account, a PO line coded to an inactive account, another currency, an
unknown company, a source id or a vendor document number twice in the run.

What must hold, judged by the simulator's state, the ledger and the log:
- the run does not fail;
- every good invoice is exactly one entry in Sage, and answered with success;
- every bad one is rejected alone: an outcome with the reason (when its source_id can be
  answered), a `rejected` ledger entry, a log line naming the record (position and source_id)
  and the field, or the vendor/account/PO/company that is wrong;
- the summary line counts received, written and rejected invoices exactly.

Keys and document numbers are unique per example (a counter), so one reset serves the test.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from target_sage300_testkit import (
    SCHEMA_MESSAGE,
    create_fixture_po,
    entries_by_source,
    invoice,
    record_message,
    run_target,
    sage_config,
    singer_lines,
)

from ml_connector_core.ledger import Action, Ledger
from ml_connector_core.run_summary import parse_summary_line
from mlc_sandbox.serve import Sandbox

EXAMPLES = itertools.count(1)
# Allowed in a document number, and meaningful to OData or a URL: must not change a lookup.
QUERY_CHARACTERS = "()+*$,;=@! -_.:~eqorüé東"
CONTROL_CHARACTERS = ["\x00", "\x1b", "\n", "\t", "\r", "\x7f"]
KEY_CHARACTERS = ["'", "/", "%", "?", "#", "&", "\\", '"', " or 1 eq 1"]


@dataclass
class Expected:
    record: Any  # a dict, except for a record that is not even an object
    # Bad records: the words the rejection names (the field, or what Sage does not have).
    rejected_because: str | None = None
    answerable: bool = True  # its source_id is a usable key (an outcome goes upstream)
    repeated: bool = False  # the same invoice twice in the run: the second is rejected
    # Good records: (DocumentType, DocumentTotalIncludingTax, DistributedAmounts) in Sage.
    sage: tuple[str, float, list[float]] = ("Invoice", 105.0, [100.0])

    @property
    def source_id(self) -> Any:
        return self.record.get("source_id") if isinstance(self.record, dict) else None


@dataclass
class Plan:
    prefix: str
    records: list[Expected] = field(default_factory=list)

    def good(self) -> list[Expected]:
        return [e for e in self.records if e.rejected_because is None]

    def bad(self) -> list[Expected]:
        return [e for e in self.records if e.rejected_because is not None]


def _good(plan: Plan, n: int, **overrides: Any) -> dict[str, Any]:
    return invoice(f"{plan.prefix}s{n}", f"{plan.prefix}-{n}", **overrides)


def _po_invoice(plan: Plan, n: int, po_line: int) -> dict[str, Any]:
    record = _good(plan, n)
    record["lines"] = [{"amount": 100.0, "po_number": "POFX0001", "po_line": po_line}]
    return record


# Contract violations: (change to a good record, the field the rejection names).
VIOLATIONS: list[tuple[dict[str, Any], str]] = [
    ({"net_total": "abc"}, "field net_total:"),
    ({"document_date": 20261001}, "field document_date:"),
    ({"document_date": "2026-02-30"}, "field document_date:"),
    ({"company": 5}, "field company:"),
    ({"lines": "one line"}, "field lines:"),
    ({"lines": []}, "field lines:"),
    ({"document_type": "refund"}, "field document_type:"),
    ({"currency": "usd"}, "field currency:"),
    ({"tax_total": -1, "gross_total": 99.0}, "field tax_total:"),
    ({"net_total": float("nan")}, "field net_total:"),
    ({"gross_total": float("inf")}, "field gross_total:"),
    ({"net_total": 1e13, "gross_total": 1e13 + 5, "lines": [
        {"amount": 1e13, "gl_account": "6300-100"}]}, "field net_total:"),
    ({"gross_total": 999.0}, "field gross_total:"),  # totals that do not add up
    ({"vendor_numbr": "1200"}, "field vendor_numbr:"),  # a misspelled field
    # Totals of one sign with a tax of the other; totals of two signs.
    ({"net_total": -100.0, "gross_total": -95.0, "lines": [
        {"amount": -100.0, "gl_account": "6300-100"}]}, "field tax_total:"),
    ({"net_total": -10.0, "tax_total": 30.0, "gross_total": 20.0, "lines": [
        {"amount": -10.0, "gl_account": "6300-100"}]}, "field net_total:"),
]
REQUIRED = ["company", "vendor_number", "document_number", "document_date", "currency",
            "net_total", "gross_total", "lines"]
# Signed documents that Sage takes: (type code, net, tax, line amounts, what Sage holds).
SIGNED: list[tuple[str | None, float, float, list[float], tuple[str, float, list[float]]]] = [
    ("381", -80.0, -4.0, [-80.0], ("CreditNote", 84.0, [80.0])),  # Basware's credit note
    ("381", 80.0, 4.0, [80.0], ("CreditNote", 84.0, [80.0])),  # UN/CEFACT's credit note
    ("380", -100.0, -5.0, [-100.0], ("CreditNote", 105.0, [100.0])),  # a negative invoice
    ("380", 250.0, 12.5, [300.0, -50.0], ("Invoice", 262.5, [300.0, -50.0])),  # a discount
    ("380", 100.0, 5.0, [100.0, 0.0], ("Invoice", 105.0, [100.0, 0.0])),  # a zero line
    ("383", 60.0, 3.0, [60.0], ("DebitNote", 63.0, [60.0])),
    (None, -40.0, 0.0, [-50.0, 10.0], ("CreditNote", 40.0, [50.0, -10.0])),  # no code
]


@st.composite
def cases(draw: st.DrawFn) -> Any:
    """One good or bad invoice (two for a repeat), as a function of (plan, n)."""
    kind = draw(st.sampled_from([
        "good_query_characters", "good_non_ascii", "good_po", "good_signed", "missing",
        "violation", "huge",
        "control", "bad_key", "no_source_id", "unknown_vendor", "inactive_vendor",
        "unknown_account", "inactive_account", "inactive_po_account", "unknown_po",
        "other_currency", "unknown_company", "repeated_source_id", "repeated_document",
        "not_an_object"]))
    query = draw(st.text(alphabet=QUERY_CHARACTERS, min_size=1, max_size=10))
    text = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
                        min_size=1, max_size=80).filter(lambda t: t.strip() == t and t))
    which = draw(st.integers(0, 100))
    control = draw(st.sampled_from(CONTROL_CHARACTERS))
    key_character = draw(st.sampled_from(KEY_CHARACTERS))

    def make(plan: Plan, n: int) -> list[Expected]:
        record = _good(plan, n)
        if kind == "good_query_characters":
            # Ends in a letter: surrounding blanks are trimmed, as Sage does.
            record["document_number"] = f"{plan.prefix}{n}{query}"[:21] + "x"
            return [Expected(record)]
        if kind == "good_non_ascii":
            record["description"] = text
            record["lines"][0]["description"] = text[::-1]
            return [Expected(record)]
        if kind == "good_po":
            return [Expected(_po_invoice(plan, n, 1000 if which % 2 else 2000))]
        if kind == "good_signed":
            code, net, tax, amounts, sage = SIGNED[which % len(SIGNED)]
            del record["document_type"]
            record.update(document_type_code=code, net_total=net, tax_total=tax,
                          gross_total=net + tax,
                          lines=[{"amount": a, "gl_account": "6300-100"} for a in amounts])
            return [Expected(record, sage=sage)]
        if kind == "missing":
            name = REQUIRED[which % len(REQUIRED)]
            del record[name]
            return [Expected(record, f"field {name}: is required")]
        if kind == "violation":
            change, words = VIOLATIONS[which % len(VIOLATIONS)]
            record.update(change)
            return [Expected(record, words)]
        if kind == "huge":
            name = ["description", "document_number", "vendor_number"][which % 3]
            record[name] = "Ü" * 100_000
            return [Expected(record, f"field {name}: has 100000 characters")]
        if kind == "control":
            name = ["description", "document_number"][which % 2]
            record[name] = f"{record[name]}{control}end"
            return [Expected(record, f"field {name}:")]
        if kind == "bad_key":
            name = ["vendor_number", "document_number", "company"][which % 3]
            if name == "document_number" and key_character.startswith(" "):
                name = "vendor_number"  # blanks and words are fine in a document number
            record[name] = f"{record[name]}{key_character}00"
            if which % 4 == 3:  # a PO number with a quote
                record["lines"] = [{"amount": 100.0, "po_number": f"PO{key_character}1",
                                    "po_line": 1000}]
                return [Expected(record, "field lines[0].po_number:")]
            return [Expected(record, f"field {name}:")]
        if kind == "not_an_object":  # a RECORD whose record is a list, a string, a number...
            return [Expected([[n, "x"], f"invoice {n}", n, None][which % 4],  # type: ignore[arg-type]
                             "field (record): must be an object", answerable=False)]
        if kind == "no_source_id":
            record["source_id"] = [None, f"x{key_character}y", "a" * 5000, 12][which % 4]
            if record["source_id"] is None:
                del record["source_id"]
            return [Expected(record, "field source_id:", answerable=False)]
        if kind == "unknown_vendor":
            return [Expected(_good(plan, n, vendor="9999"),
                             "Vendor 9999 does not exist in Sage 300 company SAMINC")]
        if kind == "inactive_vendor":
            return [Expected(_good(plan, n, vendor="1270"), "Vendor 1270 is inactive")]
        if kind == "unknown_account":
            return [Expected(_good(plan, n, gl_account="6999-200"),
                             "GL account 6999-200 does not exist")]
        if kind == "inactive_account":
            return [Expected(_good(plan, n, gl_account="6100-900"),
                             "GL account 6100-900 is inactive")]
        if kind == "inactive_po_account":
            return [Expected(_po_invoice(plan, n, 3000), "GL account 6100-900 is inactive")]
        if kind == "unknown_po":
            record = _po_invoice(plan, n, 1000)
            record["lines"][0]["po_number"] = f"PO{plan.prefix}"
            return [Expected(record, f"PO PO{plan.prefix} not found in company SAMINC")]
        if kind == "other_currency":
            return [Expected(_good(plan, n, currency="CAD"), "Invoice currency CAD differs")]
        if kind == "unknown_company":
            return [Expected(_good(plan, n, company="NOSUCH"),
                             "Sage 300 company NOSUCH does not exist")]
        if kind == "repeated_source_id":
            return [Expected(record, repeated=True), Expected(dict(record), repeated=True)]
        # The same vendor document under two source ids (Basware holds it twice).
        other = {**record, "source_id": f"{plan.prefix}t{n}"}
        return [Expected(record, repeated=True), Expected(other, repeated=True)]

    return make


@st.composite
def runs(draw: st.DrawFn) -> Plan:
    plan = Plan(prefix=f"Q{next(EXAMPLES):03d}")
    plan.records.append(Expected(_good(plan, 0)))  # at least one good invoice
    for n, make in enumerate(draw(st.lists(cases(), min_size=1, max_size=8)), start=1):
        plan.records += make(plan, n)
    plan.records = draw(st.permutations(plan.records))
    # Of an invoice sent twice, the first is processed; the second is rejected.
    seen: set[str] = set()
    for expected in plan.records:
        if expected.repeated:
            document = expected.record["document_number"]
            if document in seen:
                expected.rejected_because = (
                    "appears more than once in this run"
                    if expected.source_id in {e.source_id for e in plan.records
                                              if e is not expected}
                    else f"is also invoice {_first_with(plan, document)} in this run")
            seen.add(document)
    return plan


def _first_with(plan: Plan, document: str) -> str:
    return next(e.source_id for e in plan.records
                if isinstance(e.record, dict) and e.record.get("document_number") == document)


@pytest.fixture
def sandbox(fresh_sandbox: Sandbox) -> Sandbox:
    create_fixture_po(fresh_sandbox)
    return fresh_sandbox


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=runs())
def test_bad_invoices_are_rejected_alone_and_good_ones_arrive(
        plan: Plan, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    caplog.set_level(logging.INFO)
    config = sage_config(sandbox, tmp_path_factory.getbasetemp() / "bad-input-ledger")
    run = run_target(config, singer_lines(SCHEMA_MESSAGE,
                                          *(record_message(e.record) for e in plan.records),
                                          {"type": "STATE", "value": {"example": plan.prefix}}),
                     caplog=caplog)

    assert run.error is None, run.error
    entries = {**entries_by_source(sandbox), **entries_by_source(sandbox, "SAMLTD")}
    for expected in plan.good():
        # Exactly one entry in Sage, with the document number as sent (trimmed).
        found = entries.get(expected.source_id, [])
        assert [e["DocumentNumber"] for e in found] == [
            expected.record["document_number"].strip()], expected
        assert found[0]["InvoiceDescription"] == expected.record["description"][:60]
        document_type, total, amounts = expected.sage
        assert found[0]["DocumentType"] == document_type, expected
        assert found[0]["DocumentTotalIncludingTax"] == total, expected
        assert [d["DistributedAmount"] for d in found[0]["InvoiceDetails"]] == amounts
        assert run.outcomes[expected.source_id]["success"] is True
    for expected in plan.bad():
        if expected.answerable and not expected.repeated:
            assert expected.source_id not in entries, expected
            outcome = run.outcomes[expected.source_id]
            assert outcome["success"] is False and outcome["batch"] is None
            assert expected.rejected_because in outcome["message"], (outcome, expected)

    summary = parse_summary_line(caplog.text)
    assert summary is not None, caplog.text[-2000:]
    log_lines = caplog.text.splitlines()
    with Ledger.open(config["ledger_url"]) as ledger:
        for position, expected in enumerate(plan.records, start=1):
            if expected.rejected_because is None:
                continue
            label = (f"record {position} (source_id {expected.source_id})"
                     if expected.answerable else f"record {position} (no usable source_id)")
            # The log names the record and the field (or the vendor/account/PO/company).
            assert any(f"ap_invoices {label} rejected: " in line
                       and expected.rejected_because in line for line in log_lines), label
            key = expected.source_id if expected.answerable else label
            recorded = [e for e in ledger.trace(key) if e.run_id == summary["run_id"]
                        and e.action == Action.REJECTED and e.source_key == key]
            assert any(expected.rejected_because in str(e.error) for e in recorded), label
    assert re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", caplog.text) is None
    assert summary == {
        "plugin": "target-sage300", "status": "success", "run_id": summary["run_id"],
        "received": len(plan.records), "written": len(plan.good()), "unchanged": 0,
        "rejected": len(plan.bad()), "failed": 0}
