"""Invoices whose content breaks Basware's own schema still go through the tap as Basware
holds them, and are acknowledged: the tap never judges content (target-sage300 does, and
answers each bad one TransferFailed naming the field), so no invoice is stopped or skipped
here, and none stops the others."""

from __future__ import annotations

from typing import Any

import pytest

IN_PROGRESS = "TransferInProgress"

#: Values Basware's schema does not allow (tap_basware/schemas.py types them), as `_set`
#: / `_remove` of the simulator's admin endpoint.
BAD: list[dict[str, Any]] = [
    {"_set": {"netSum": "125.00"}},  # a number as a string (issue 16)
    {"_set": {"codingRows": [None]}},  # a null coding row (issue 16)
    {"_set": {"codingRows": "6300-100"}},
    {"_set": {"codingRows": [{"netTotal": "12", "rowIndex": "one"}]}},
    {"_set": {"grossSum": {"x": 1}, "invoiceDate": 20261001}},
    {"_set": {"supplierCode": ["1200"], "invoiceTypeCode": 381}},
    {"_set": {"netSum": 10 ** 40, "description": {"a": [1, None]}}},
    {"_set": {"orderNumbers": "PO1", "transferParameters": [None, 3]}},
    {"_remove": ["grossSum", "codingRows", "invoiceNumber"]},
]


@pytest.mark.parametrize("acknowledge", [True, False])
def test_invoices_that_break_the_schema_are_emitted_as_basware_holds_them(
        basware, tap_config, run_tap, ledger_rows, acknowledge: bool) -> None:
    created = [basware.admin_invoice(body) for body in BAD]

    run = run_tap({**tap_config, "acknowledge": acknowledge})

    records = {record["invoiceId"]: record for record in run.records()}
    for body, invoice in zip(BAD, created, strict=True):
        record = records[invoice["invoiceId"]]
        for name, value in body.get("_set", {}).items():
            assert record[name] == value, (name, record[name])
        for name in body.get("_remove", []):
            assert name not in record
    after = basware.invoices()
    read = {row["source_key"] for row in ledger_rows() if row["action"] == "read"}
    for invoice in created:
        assert invoice["invoiceId"] in read
        if acknowledge:  # emitted, then acknowledged: the target's answer will reach it
            assert after[invoice["invoiceId"]]["processingStatus"] == IN_PROGRESS
