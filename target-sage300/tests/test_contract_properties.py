"""Whatever arrives, the contract check answers with a typed invoice or a ContractViolation
naming a field: never another exception (which would stop the whole run)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from target_sage300_testkit import invoice

from target_sage300.contract import (
    DEFAULT_SETTINGS,
    APInvoice,
    ContractSettings,
    ContractViolation,
    parse_invoice,
)

FIELDS = ["source_id", "company", "vendor_number", "document_number", "document_type",
          "document_type_code", "document_date", "due_date", "posting_date", "currency",
          "net_total", "tax_total", "tax_total_2", "gross_total", "description", "lines"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True), st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
    st.sampled_from(["'", "a'b", "x/y", "50%", "NaN", "-Infinity", "2026-02-30", "\x00",
                     "PO'1", "1e400"]),
)
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children,
                                                    max_size=3)), max_leaves=8)


def _check(record: Any, settings: ContractSettings = DEFAULT_SETTINGS) -> None:
    try:
        result = parse_invoice(record, settings)
    except ContractViolation as violation:
        assert violation.field
        assert len(str(violation)) < 2000
        return
    assert isinstance(result, APInvoice)
    # As Sage enters it: totals never negative, the type one Sage knows.
    assert min(result.net_total, result.tax_total, result.gross_total) >= 0
    assert result.sage_document_type in ("Invoice", "CreditNote", "DebitNote")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), values)
def test_any_value_in_any_field(field: str, value: Any) -> None:
    record = invoice("abc", "INV-1")
    record[field] = value
    _check(record)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["amount", "po_number", "po_line", "gl_account", "cost_center",
                        "tax_amount", "description"]), values)
def test_any_value_in_any_line_field(field: str, value: Any) -> None:
    record = invoice("abc", "INV-1")
    record["lines"][0][field] = value
    _check(record)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), values, max_size=14))
def test_any_record_shape(record: dict[str, Any]) -> None:
    _check(record)


# Lines as Basware's coding rows, read through line_fields (as meltano.yml configures it).
ROWS = ContractSettings(line_fields={
    "amount": "netTotal", "tax_amount": "taxSum", "description": "accountName",
    "po_number": "orderNumber", "po_line": "orderLineNumber", "gl_account": "accountCode",
    "cost_center": "costCenterCode", "tax_code": "taxCode", "line_ref": "externalCode"})
ROW_FIELDS = [*ROWS.line_fields.values(), "matchedQuantity", "rowIndex", "dimCode1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(values, st.dictionaries(st.sampled_from(ROW_FIELDS), values,
                                                  max_size=6)), max_size=4),
       st.one_of(values, st.integers(-5, 5)))
def test_any_coding_rows_and_any_sign(rows: list[Any], net: Any) -> None:
    record = invoice("abc", "INV-1", net_total=net, gross_total=net, tax_total=None,
                     document_type_code="381")
    record["lines"] = rows
    _check(record, ROWS)
