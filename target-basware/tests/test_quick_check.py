"""The contracts' quick check (contracts.QuickCheck) against jsonschema, which it stands in for
on valid records: it must never pass a record jsonschema refuses, and it must pass the
valid records the pipeline sends (or it saves nothing). Pure functions: no sandbox needed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from target_basware.contracts import _QUICK, _VALIDATORS, CONTRACTS, contract_errors

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["", "US01", "2026-02-30", "2026-03-01", "USD",
                                           "Standard", "x" * 300, "a\nb", "SAMINC-1200"]),
)


@st.composite
def records(draw: Any) -> tuple[str, dict[str, Any]]:
    stream = draw(st.sampled_from(sorted(CONTRACTS)))
    fields = sorted(CONTRACTS[stream]["properties"]) + ["notAField"]
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    return stream, {name: draw(VALUES) for name in chosen}


@settings(max_examples=400, deadline=None)
@given(records())
def test_quick_check_never_passes_what_jsonschema_refuses(case: tuple[str, dict]) -> None:
    stream, record = case
    if _QUICK[stream].passes(record):
        assert not list(_VALIDATORS[stream].iter_errors(record))


def test_quick_check_passes_a_valid_record_of_every_stream() -> None:
    valid = {
        "vendors": {"externalCode": "SAMINC-1200", "vendorCode": "1200", "name": "Acme",
                    "companyCode": "US01", "active": True, "currencyCode": "USD",
                    "city": "", "paymentDenied": None},
        "matching_orders": {"externalCode": "SAMINC-PO1", "orderNumber": "PO1",
                            "companyCode": "US01", "supplierCode": "1200",
                            "currencyCode": "USD", "orderDate": "2026-03-01",
                            "isClosed": False},
        "matching_order_lines": {"externalCode": "SAMINC-PO1-1000",
                                 "orderExternalCode": "SAMINC-PO1", "lineNumber": 1000,
                                 "quantity": 2.5, "netSum": 10, "matchingMode": "Standard"},
    }
    for stream, record in valid.items():
        assert not list(_VALIDATORS[stream].iter_errors(record)), stream
        assert _QUICK[stream].passes(record), stream
        assert contract_errors(stream, record) == []
    bad = {**valid["matching_orders"], "orderDate": "2026-02-30"}
    assert not _QUICK["matching_orders"].passes(bad)
    assert contract_errors("matching_orders", bad)  # jsonschema names it
