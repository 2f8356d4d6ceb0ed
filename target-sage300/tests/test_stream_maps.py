"""A stream map that raises on a record rejects that record alone (target_sage300/mapping.py).

ml-connector's own maps only rename, so they cannot fail; these are the kind an operator
might write (and meltano.yml had: arithmetic and a list comprehension), fed the records that
used to stop the whole run: `netSum` as the string "125.00", a null coding row.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from target_sage300_testkit import entries_by_source, run_target, sage_config, singer_lines

from ml_connector_core.ledger import Action, Ledger
from ml_connector_core.run_summary import parse_summary_line
from mlc_sandbox.serve import Sandbox

ARITHMETIC_MAPS = {
    "accounting_documents": {
        "__alias__": "ap_invoices", "__key_properties__": ["source_id"], "__else__": "__NULL__",
        "source_id": "record.get('invoiceId')",
        "company": "'SAMINC'",
        "vendor_number": "record.get('supplierCode')",
        "document_number": "record.get('invoiceNumber')",
        "document_date": "record.get('invoiceDate')",
        "currency": "record.get('currencyCode')",
        "net_total": "-netSum if netSum < 0 else netSum",
        "gross_total": "-grossSum if grossSum < 0 else grossSum",
        "lines": "[{'amount': r['netTotal'], 'gl_account': r['accountCode']} "
                 "for r in record.get('codingRows')]",
    },
}
SCHEMA = {"type": "SCHEMA", "stream": "accounting_documents", "key_properties": ["invoiceId"],
          "schema": {"type": "object", "properties": {
              "invoiceId": {"type": "string"}, "netSum": {"type": "number"},
              "grossSum": {"type": "number"}, "codingRows": {"type": "array"}}}}


def basware_invoice(invoice_id: str, **changes: Any) -> dict[str, Any]:
    record = {"invoiceId": invoice_id, "supplierCode": "1200", "invoiceNumber": f"SM-{invoice_id}",
              "invoiceDate": "2026-10-01", "currencyCode": "USD", "netSum": 100.0,
              "grossSum": 100.0, "codingRows": [{"netTotal": 100.0, "accountCode": "6300-100"}]}
    record.update(changes)
    return record


def test_a_stream_map_that_raises_rejects_that_record_and_names_the_field(
        fresh_sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = sage_config(fresh_sandbox, tmp_path, stream_maps=ARITHMETIC_MAPS)
    records = [basware_invoice("sm1"), basware_invoice("sm2", netSum="125.00"),
               basware_invoice("sm3", codingRows=[None]), basware_invoice("sm4"),
               basware_invoice("sm5", invoiceId=None, netSum="1")]
    run = run_target(config, singer_lines(
        SCHEMA, *({"type": "RECORD", "stream": "accounting_documents", "record": record}
                  for record in records)), caplog=caplog)

    assert run.error is None, run.error
    assert sorted(entries_by_source(fresh_sandbox)) == ["sm1", "sm4"]
    assert run.outcomes["sm1"]["success"] is True and run.outcomes["sm4"]["success"] is True
    why = {
        "sm2": "field net_total: the stream map expression failed on this record (TypeError: "
               "'<' not supported between instances of 'str' and 'int')",
        # The source's name where the map's expression reads one field (record.get(...)).
        "sm3": "field lines (codingRows): the stream map expression failed on this record "
               "(TypeError: 'NoneType' object is not subscriptable)",
    }
    for key, reason in why.items():
        assert run.outcomes[key] == {"success": False, "message": reason, "batch": None,
                                     "entry": None, "company": "SAMINC"}
        assert f"ap_invoices record {int(key[-1])} (source_id {key}) rejected: {reason}" \
            in caplog.text
    # Without a source_id it cannot be answered, but it is named and recorded all the same.
    assert "ap_invoices record 5 (no usable source_id) rejected: field net_total: the stream " \
           "map expression failed" in caplog.text
    summary = parse_summary_line(caplog.text)
    assert summary is not None
    assert (summary["received"], summary["written"], summary["rejected"]) == (5, 2, 3)
    with Ledger.open(config["ledger_url"]) as ledger:
        rejected = {entry.source_key: entry.error for key in ("sm2", "sm3")
                    for entry in ledger.trace(key) if entry.action == Action.REJECTED}
    assert rejected == why
