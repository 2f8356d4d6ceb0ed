"""The ap_invoices contract on its own: pure code, so every case is one call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from target_sage300_testkit import invoice

from target_sage300.contract import ContractViolation, parse_invoice, source_id_of


def _violation(record: dict[str, Any]) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        parse_invoice(record)
    return caught.value


def test_a_valid_invoice_comes_back_typed() -> None:
    parsed = parse_invoice(invoice("abc123", "INV-9", amount=80.5, tax=4.03,
                                   document_date="2026-10-01T00:00:00-04:00",
                                   due_date=None, _sdc_received_at="2026-10-01"))
    assert parsed.net_total == Decimal("80.5")
    assert parsed.gross_total == Decimal("84.53")
    assert parsed.document_date.isoformat() == "2026-10-01"  # the date as written, no shift
    assert parsed.due_date is None
    assert parsed.sage_document_type == "Invoice"
    assert parsed.lines[0].number == 1 and parsed.lines[0].gl_account == "6300-100"


def test_decimals_from_the_singer_reader_are_numbers() -> None:
    record = invoice("abc", "INV-1", amount=10, tax=0)
    record.update(net_total=Decimal("10.00"), gross_total=Decimal("10.00"), tax_total=None)
    record["lines"][0]["amount"] = Decimal("10.00")
    assert parse_invoice(record).tax_total == 0


def test_po_line_may_be_a_number_or_digits() -> None:
    record = invoice("abc", "INV-1", lines=[{"amount": 100, "po_number": "PO1", "po_line": 1000},
                                             {"amount": 5, "po_number": "PO1",
                                              "po_line": "02000"}], net_total=105,
                     gross_total=110)
    assert [line.po_line for line in parse_invoice(record).lines] == ["1000", "2000"]


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"net_total": float("nan")}, "net_total", "not a finite number"),
    ({"gross_total": float("inf")}, "gross_total", "not a finite number"),
    ({"net_total": "NaN"}, "net_total", "not a finite number"),
    ({"document_date": "0999-01-01"}, "document_date", "outside 1980-2099"),
    ({"document_number": "   "}, "document_number", "blank"),
    ({"document_number": "INV/1"}, "document_number", "may not hold"),
    ({"source_id": "a" * 61}, "source_id", "has 61 characters, at most 60 allowed"),
    ({"source_id": "x%27"}, "source_id", "no quotes, slashes, spaces or %"),
    ({"company": "SAMINC1"}, "company", "has 7 characters"),
    ({"description": "tab\there"}, "description", "control characters"),
    ({"tax_total": -1}, "tax_total", "below the minimum of 0"),
    ({"lines": [{"amount": 105, "po_number": "PO'1", "po_line": "1"}]}, "lines[0].po_number",
     "no quotes"),
    ({"lines": "not a list"}, "lines", "must be array"),
    ({"lines": [None]}, "lines[0]", "must be object"),
])
def test_each_violation_names_its_field(change: dict[str, Any], field: str, words: str) -> None:
    record = invoice("abc", "INV-1")
    record.update(change)
    violation = _violation(record)
    assert violation.field == field
    assert words in str(violation)


def test_an_unknown_field_is_refused_by_name() -> None:
    record = invoice("abc", "INV-1", vendor_numbr="1200")
    record["lines"][0]["gl_acount"] = "6300-100"
    message = str(_violation(record))
    assert "field vendor_numbr: is not part of the ap_invoices contract" in message
    assert "field lines[0].gl_acount: is not part" in message


def test_several_broken_fields_are_listed_together() -> None:
    record = invoice("abc", "INV-1", currency="usd", document_type="refund")
    message = str(_violation(record))
    assert "field currency:" in message and "field document_type:" in message


def test_a_record_that_is_not_json_is_a_violation_not_a_crash() -> None:
    violation = _violation({"source_id": object()})
    assert violation.field == "(record)"


def test_source_id_of_only_returns_keys_that_can_be_answered() -> None:
    assert source_id_of({"source_id": "0a1b2c"}) == "0a1b2c"
    assert source_id_of({"source_id": "a'b"}) is None
    assert source_id_of({"source_id": 12}) is None
    assert source_id_of(["not", "a", "record"]) is None
