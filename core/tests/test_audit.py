"""The operator CLI: `ml-connector audit trace|failures|replay|report`."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ml_connector_core.audit import infer_schema, main, parse_since
from ml_connector_core.ledger import SAGE_TO_BASWARE, Action, Entry, Ledger

VENDOR_SCHEMA = {
    "type": "object",
    "properties": {"VendorID": {"type": "string"}, "Name": {"type": ["string", "null"]},
                   "CreditLimit": {"type": ["number", "null"]}},
}


def populate(url: str) -> None:
    """Two pipeline runs: vendors with a stored SCHEMA, invoices without one."""
    with Ledger.open(url) as ledger:
        first = ledger.start_run("target-basware", job_id="job-1")
        rec = first.run_id
        old = datetime.now(UTC) - timedelta(days=3)
        ledger.record(Entry(rec, "vendors", "V1", Action.FAILED, created_at=old,
                            payload={"VendorID": "V1", "Name": "Acme", "CreditLimit": 5},
                            error="HTTP 400: vendor V1 rejected", direction=SAGE_TO_BASWARE,
                            key_properties=["VendorID"], schema=VENDOR_SCHEMA))
        ledger.finish_run(rec, "failed", {"failed": 1})

        second = ledger.start_run("target-basware", job_id="job-2")
        rec = second.run_id
        ledger.record_many([
            Entry(rec, "vendors", "V2", Action.REJECTED, direction=SAGE_TO_BASWARE,
                  payload={"VendorID": "V2", "Name": None, "CreditLimit": Decimal("10.5")},
                  error="HTTP 400: vendor V2 rejected", key_properties=["VendorID"],
                  schema=VENDOR_SCHEMA),
            Entry(rec, "vendors", "V1", Action.CREATED, target_key="BW-V1",
                  bw_request_id="11111111-2222-4333-8444-555555555555",
                  payload={"VendorID": "V1", "Name": "Acme", "CreditLimit": 5}),
            Entry(rec, "invoices", "INV-1", Action.FAILED, error="GL account '6000' inactive",
                  payload={"InvoiceID": "INV-1", "Amount": 12.5, "Lines": [{"n": 1}]}),
            Entry(rec, "invoices", "INV-2", Action.FAILED, error="GL account '7000' inactive",
                  payload={"InvoiceID": "INV-2", "Amount": 3, "Memo": "<b>x</b>"}),
            Entry(rec, "invoices", "INV-3", Action.CREATED, target_key="DOC-3",
                  sage_batch="B1", sage_entry="B1-1", sage_document="DOC-3"),
        ])
        ledger.finish_run(rec, "success")


@pytest.fixture
def url(sqlite_url: str) -> str:
    populate(sqlite_url)
    return sqlite_url


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_trace(url: str) -> None:
    code, out, _ = run("--ledger-url", url, "trace", "V1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "vendor V1"
    assert lines[2].split() == ["time", "(UTC)", "plugin", "stream", "action", "details"]
    assert set(lines[3]) == {"-", " "}
    assert len(lines) == 6  # the history is complete and nothing is open
    assert " failed " in lines[4] and " created " in lines[5]  # oldest first
    assert "HTTP 400: vendor V1 rejected" in lines[4]
    assert "as BW-V1" in lines[5]
    # Ids that name no record (a Sage entry of this old form) find the entries mentioning them.
    code, out, _ = run("--ledger-url", url, "trace", "B1-1")
    assert code == 0 and "INV-3" in out and " created " in out
    code, out, _ = run("--ledger-url", url, "trace", "inv-1")
    assert code == 0 and "Open failure (invoices): GL account '6000' inactive" in out
    assert "then: ml-connector retry INV-1" in out
    code, out, err = run("--ledger-url", url, "trace", "nope")
    assert (code, out) == (1, "") and "nothing in the ledger is named 'nope'" in err


def test_failures(url: str) -> None:
    code, out, _ = run("--ledger-url", url, "failures")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "3 open failure(s) in 3 cause(s)"
    # Each cause as its real message, with its records and what to do (V1 was resolved).
    assert "HTTP 400: vendor V2 rejected" in lines
    assert "GL account '6000' inactive" in lines and "GL account '7000' inactive" in lines
    assert "  - INV-1" in lines and "  - V2" in lines and "  - V1" not in lines
    assert "  What to do: Correct the record in Sage 300 as the message says, then: " \
           "ml-connector retry V2" in lines
    code, out, _ = run("--ledger-url", url, "failures", "--all")
    assert out.splitlines()[0] == "4 failed record(s), 3 still open in 4 cause(s)"
    assert any(line.startswith("  - V1  resolved: created 20") for line in out.splitlines())
    code, out, _ = run("--ledger-url", url, "failures", "--all", "--since", "1d")
    assert "V1" not in out and "V2" in out  # V1 last failed three days ago
    assert run("--ledger-url", url, "failures", "--since", "2999-01-01")[1].startswith(
        "no open failures since 2999-01-01")


def messages(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_replay_writes_a_singer_stream(ledger_url: str) -> None:
    populate(ledger_url)
    code, out, err = run("--ledger-url", ledger_url, "replay", "--failed")
    assert code == 0
    stream = messages(out)
    assert [(m["type"], m["stream"]) for m in stream] == [
        ("SCHEMA", "vendors"), ("RECORD", "vendors"),
        ("SCHEMA", "invoices"), ("RECORD", "invoices"), ("RECORD", "invoices"),
    ]
    vendors_schema, v2, invoices_schema, inv1, inv2 = stream
    # V1 failed, then succeeded: not replayed, and the operator is told.
    assert v2["record"] == {"VendorID": "V2", "Name": None, "CreditLimit": 10.5}
    assert "skipped vendors V1: latest outcome is created" in err
    assert "replayed 3 record(s), skipped 1" in err
    # The stored SCHEMA and key properties come back as they were.
    assert vendors_schema["schema"] == VENDOR_SCHEMA
    assert vendors_schema["key_properties"] == ["VendorID"]
    # No SCHEMA stored: inferred, permissive, nullable where a field was missing.
    assert invoices_schema["key_properties"] == []
    assert invoices_schema["schema"] == {"type": "object", "properties": {
        "InvoiceID": {"type": ["string"]}, "Amount": {"type": ["number"]},
        "Lines": {"type": ["array", "null"]}, "Memo": {"type": ["null", "string"]}}}
    assert [inv1["record"]["InvoiceID"], inv2["record"]["InvoiceID"]] == ["INV-1", "INV-2"]

    jsonschema = pytest.importorskip("jsonschema")
    for schema, record in ((vendors_schema, v2), (invoices_schema, inv1),
                           (invoices_schema, inv2)):
        jsonschema.validate(record["record"], schema["schema"])


def test_replay_filters(url: str) -> None:
    out = run("--ledger-url", url, "replay", "--failed", "--stream", "invoices",
              "--key", "INV-2", "--key", "INV-3")[1]
    assert [m["record"]["InvoiceID"] for m in messages(out) if m["type"] == "RECORD"] == [
        "INV-2"]
    code, out, err = run("--ledger-url", url, "replay", "--key", "V1", "INV-3")
    assert (code, out) == (0, "")
    assert "skipped vendors V1" in err and "skipped invoices INV-3" in err


def test_python_dash_m_with_env_url(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ml_connector_core.audit", "replay", "--failed",
         "--stream", "vendors"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "ML_CONNECTOR_LEDGER_URL": url},
    )
    assert done.returncode == 0, done.stderr
    assert [m["type"] for m in messages(done.stdout)] == ["SCHEMA", "RECORD"]
    assert "replayed 1 record(s)" in done.stderr


def test_missing_ledger_is_a_clear_error(tmp_path: Path) -> None:
    code, out, err = run("--ledger-url", f"sqlite:///{tmp_path / 'none.sqlite'}", "failures")
    assert code == 2 and "no ledger at" in err
    assert not (tmp_path / "none.sqlite").exists()
    code, _, err = run("--ledger-url", "postgresql://u:hunter22@127.0.0.1:1/x", "failures")
    assert code == 2 and "cannot open ledger" in err and "hunter22" not in err


def test_parse_since() -> None:
    now = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00:00+02:00") == datetime(2024, 5, 1, 8, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="neither a duration"):
        parse_since("yesterday")


def test_infer_schema_fallbacks() -> None:
    assert infer_schema([]) == {"type": "object"}
    assert infer_schema([[1, 2]]) == {"type": "object"}
    assert infer_schema([{"a": 1}, {"a": 1.5}, {"a": True}]) == {
        "type": "object", "properties": {"a": {"type": ["boolean", "number"]}}}
