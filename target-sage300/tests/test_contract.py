"""The ap_invoices contract on its own: pure code, so every case is one call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from target_sage300_testkit import invoice

from target_sage300.contract import (
    DEFAULT_TYPE_CODES,
    ContractSettings,
    ContractViolation,
    parse_invoice,
    settings_problems,
    source_fields_of,
    source_id_of,
)


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
    ({"tax_total": -1, "gross_total": 99}, "tax_total", "against the sign of the document"),
    ({"net_total": 1e13, "gross_total": 1e13}, "gross_total", "above the maximum"),
    ({"net_total": -1e13, "gross_total": -1e13}, "gross_total", "below the minimum"),
    ({"document_type_code": 380.5}, "document_type_code", "must be string or integer"),
    ({"document_type_code": "38\n0"}, "document_type_code", "control characters"),
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


# -- signs and document types --------------------------------------------------------------

def _document(net: float, tax: float, lines: list[float], **fields: Any) -> dict[str, Any]:
    record = invoice("abc", "INV-1", net_total=net, tax_total=tax,
                     gross_total=round(net + tax, 2),
                     lines=[{"amount": amount, "gl_account": "6300-100"} for amount in lines])
    del record["document_type"]
    record.update(fields)
    return record


def _signs(parsed: Any) -> tuple[str, float, float, float, list[float]]:
    return (parsed.document_type, float(parsed.net_total), float(parsed.tax_total),
            float(parsed.gross_total), [float(line.amount) for line in parsed.lines])


@pytest.mark.parametrize(("net", "tax", "lines", "code", "expected", "note"), [
    # An ordinary invoice; with a discount line; with a zero-amount line.
    (100, 5, [100], "380", ("invoice", 100, 5, 105, [100]), None),
    (250, 12.5, [300, -50], "380", ("invoice", 250, 12.5, 262.5, [300, -50]), None),
    (100, 5, [100, 0], "380", ("invoice", 100, 5, 105, [100, 0]), None),
    # A credit note as Basware has it (negative), and as UN/CEFACT has it (positive): Sage
    # enters both with positive amounts and the CreditNote type.
    (-80, -4, [-80], "381", ("credit_note", 80, 4, 84, [80]), None),
    (80, 4, [80], "381", ("credit_note", 80, 4, 84, [80]), None),
    # A credit note with a charge line: the line keeps its sign relative to the document.
    (-80, -4, [-100, 20], "381", ("credit_note", 80, 4, 84, [100, -20]), None),
    # An invoice (or debit note) code with negative totals is a credit, never a payable.
    (-100, -5, [-100], "380", ("credit_note", 100, 5, 105, [100]),
     "a credit note: type code '380' (an invoice) with negative amounts"),
    (-100, 0, [-120, 20], "383", ("credit_note", 100, 0, 100, [120, -20]),
     "a credit note: type code '383' (a debit note) with negative amounts"),
    (60, 3, [60], "383", ("debit_note", 60, 3, 63, [60]), None),
    # Codes the setting does not list, or none: the amounts decide.
    (100, 5, [100], "P2P-INV", ("invoice", 100, 5, 105, [100]),
     "an invoice: type code 'P2P-INV' is not mapped"),
    (-100, -5, [-100], "P2P-CN", ("credit_note", 100, 5, 105, [100]),
     "a credit note: type code 'P2P-CN' is not mapped and the amounts are negative"),
    (-100, -5, [-100], None, ("credit_note", 100, 5, 105, [100]),
     "a credit note: no type code and the amounts are negative"),
    (100, 5, [100], None, ("invoice", 100, 5, 105, [100]), None),
    # A document of zero: the code's type, with zero amounts.
    (0, 0, [0], "381", ("credit_note", 0, 0, 0, [0]), None),
    (0, 0, [50, -50], "380", ("invoice", 0, 0, 0, [50, -50]), None),
])
def test_the_amounts_give_the_sign_and_the_type_code_is_checked_against_them(
        net: float, tax: float, lines: list[float], code: str | None,
        expected: tuple[Any, ...], note: str | None) -> None:
    parsed = parse_invoice(_document(net, tax, lines, document_type_code=code))
    assert _signs(parsed) == expected
    assert parsed.sage_document_type == {"invoice": "Invoice", "credit_note": "CreditNote",
                                         "debit_note": "DebitNote"}[expected[0]]
    assert parsed.type_note == note


@pytest.mark.parametrize("code", [381, 381.0, " 381 "])
def test_a_number_or_padded_type_code_is_the_same_code(code: Any) -> None:
    parsed = parse_invoice(_document(80, 4, [80], document_type_code=code))
    assert (parsed.document_type, parsed.type_note) == ("credit_note", None)


def test_document_type_given_by_the_source_wins_over_the_code_but_not_over_the_sign() -> None:
    record = _document(100, 5, [100], document_type_code="380", document_type="debit_note")
    assert parse_invoice(record).document_type == "debit_note"
    record = _document(-100, -5, [-100], document_type="invoice")
    parsed = parse_invoice(record)
    assert parsed.document_type == "credit_note"
    assert parsed.type_note == "a credit note: document type invoice (an invoice) with " \
                               "negative amounts"


def test_the_type_code_mapping_is_a_setting() -> None:
    settings = ContractSettings(type_codes={"KI": "invoice", "KG": "credit_note"})
    assert parse_invoice(_document(80, 4, [80], document_type_code="KG"),
                         settings).document_type == "credit_note"
    # Without the default, 381 is an unknown code: positive amounts make it an invoice.
    parsed = parse_invoice(_document(80, 4, [80], document_type_code="381"), settings)
    assert parsed.document_type == "invoice"
    assert parsed.type_note == "an invoice: type code '381' is not mapped"


@pytest.mark.parametrize(("record", "field", "words"), [
    # A negative line used to be made positive and refused with a false sum.
    (_document(250, 0, [300, 50]), "net_total",
     "is 250.00 but the line amounts add up to 350.00"),
    (_document(-100, -5, [-100], gross_total=20), "gross_total",
     "is 20.00 but net_total -100.00 + tax_total -5.00 = -105.00"),
    (_document(-10, 30, [-10]), "net_total", "is -10.00 but gross_total is 20.00"),
    (_document(-100, 5, [-100]), "tax_total", "is 5.00, against the sign of the document"),
    (_document(100, 5, [100], tax_total_2=-10, gross_total=95), "tax_total_2",
     "is -10.00, against the sign of the document"),
])
def test_amounts_whose_signs_disagree_are_refused_naming_the_field(
        record: dict[str, Any], field: str, words: str) -> None:
    violation = _violation(record)
    assert violation.field == field
    assert words in str(violation)


def test_a_second_tax_is_added_to_the_first() -> None:
    parsed = parse_invoice(_document(100, 5, [100], tax_total_2=7, gross_total=112))
    assert (parsed.tax_total, parsed.gross_total) == (12, 112)
    parsed = parse_invoice(_document(-100, -5, [-100], tax_total_2=-7, gross_total=-112,
                                     document_type_code="381"))
    assert (parsed.tax_total, parsed.gross_total) == (12, 112)


# -- the source's line names, and the source's names in messages ------------------------------

BASWARE_LINES = ContractSettings(
    line_fields={"amount": "netTotal", "tax_amount": "taxSum", "description": "accountName",
                 "po_number": "orderNumber", "po_line": "orderLineNumber",
                 "gl_account": "accountCode", "cost_center": "costCenterCode"},
    source_fields={"net_total": "netSum", "lines": "codingRows", "company": "companyCode"})


def _coding_rows(*rows: dict[str, Any]) -> dict[str, Any]:
    net = sum(row["netTotal"] for row in rows if isinstance(row.get("netTotal"), int | float))
    return invoice("abc", "INV-1", net_total=net, tax_total=0, gross_total=net,
                   lines=list(rows))


def test_line_fields_read_the_sources_rows_and_ignore_their_other_fields() -> None:
    parsed = parse_invoice(_coding_rows(
        {"netTotal": 120, "accountCode": "6300-100", "costCenterCode": "100",
         "orderNumber": "", "orderLineNumber": "", "matchedQuantity": 3, "dimCode1": "X"},
        {"netTotal": -20, "orderNumber": "po1", "orderLineNumber": "1000",
         "accountName": "Discount"}), BASWARE_LINES)
    first, second = parsed.lines
    assert (first.amount, first.gl_account, first.cost_center, first.po_number) == \
        (120, "6300-100", "100", None)  # "" for no PO is no PO
    assert (second.amount, second.po_number, second.po_line, second.description) == \
        (-20, "PO1", "1000", "Discount")


def test_a_stored_record_in_the_contracts_own_line_names_still_reads() -> None:
    """Records an earlier version stored (ledger payloads, replayed) carry contract names."""
    parsed = parse_invoice(invoice("abc", "INV-1"), BASWARE_LINES)
    assert parsed.lines[0].amount == 100 and parsed.lines[0].gl_account == "6300-100"


@pytest.mark.parametrize(("record", "message"), [
    (_coding_rows({"netTotal": "12", "accountCode": "6300-100"}),
     "field lines[0].amount (codingRows[0].netTotal): must be number, got '12'"),
    (_coding_rows({"accountCode": "6300-100"}),
     "field lines[0].amount (codingRows[0].netTotal): is required"),
    (_coding_rows({"netTotal": 5}),
     "field lines[0] (codingRows[0]): needs either po_number and po_line, or gl_account"),
    ({**_coding_rows({"netTotal": 5, "accountCode": "6300-100"}), "lines": [None]},
     "field lines[0] (codingRows[0]): must be object, got None"),
    ({**_coding_rows({"netTotal": 5, "accountCode": "6300-100"}), "net_total": "125.00"},
     "field net_total (netSum): must be number, got '125.00'"),
    ({**_coding_rows({"netTotal": 5, "accountCode": "6300-100"}), "net_total": float("nan")},
     "field net_total (netSum): nan is not a finite number"),
    ({**_coding_rows({"netTotal": 5, "accountCode": "6300-100"}), "company": ["US01"]},
     "field company (companyCode): must be string, got ['US01']"),
])
def test_messages_name_the_field_as_the_source_calls_it(record: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        parse_invoice(record, BASWARE_LINES)
    assert str(caught.value).startswith(message), str(caught.value)


def test_source_fields_are_read_from_the_stream_maps_renames() -> None:
    maps = {"accounting_documents": {
        "__alias__": "ap_invoices", "source_id": "record.get('invoiceId')",
        "company": "config['companies'].get(str(record.get('companyCode')), "
                   "record.get('companyCode'))",
        "net_total": "netSum", "description": "record.get('a') or record.get('b')"},
        "vendors": {"__alias__": "other", "name": "record.get('x')"}}
    assert source_fields_of(maps) == {"source_id": "invoiceId", "company": "companyCode",
                                      "net_total": "netSum"}


def test_wrong_settings_are_named() -> None:
    assert settings_problems({}, DEFAULT_TYPE_CODES) == []
    problems = settings_problems({"amount": "netTotal", "amout": "x", "gl_account": ""},
                                 {"380": "invoice", "389": "self_billing"})
    assert problems == [
        "line_fields: 'amout' is not a line field of the contract (amount, description, "
        "po_number, po_line, gl_account, cost_center, tax_amount, tax_code, line_ref)",
        "line_fields: 'gl_account' must name the source's field",
        "document_type_codes: '389' maps to 'self_billing', not to one of invoice | "
        "credit_note | debit_note"]
