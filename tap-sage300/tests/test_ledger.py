"""`read` entries in the audit ledger: one per record, with its key, payload and run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select
from tap_sage300_testkit import SageSandbox

from ml_connector_core.ledger import Ledger
from ml_connector_core.ledger._schema import entries, runs
from mlc_sandbox.data import SAGE_PASSWORD


def rows(url: str, table: object) -> list[dict]:
    with Ledger.open(url) as ledger, ledger.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table))]


def test_every_record_read_is_in_the_ledger(sage: SageSandbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    run = sage.run(sage.config(ledger_url=url))
    assert run.returncode == 0, run.stderr

    (tap_run,) = rows(url, runs)
    assert (tap_run["plugin"], tap_run["status"]) == ("tap-sage300", "success")
    ledger = rows(url, entries)
    emitted = Counter(m["stream"] for m in run.messages if m["type"] == "RECORD")
    # vendor_keys only lists the vendors that `vendors` read (and recorded) already.
    assert emitted.pop("vendor_keys") == emitted["vendors"]
    assert Counter(e["stream"] for e in ledger) == emitted
    assert {e["action"] for e in ledger} == {"read"}
    assert {e["direction"] for e in ledger} == {"sage300->basware"}
    assert json.loads(tap_run["summary"])["records"]["vendors:read"] == emitted["vendors"]

    vendor = next(r for r in run.of("vendors", "SAMLTD") if r["VendorNumber"] == "1210")
    (entry,) = [e for e in ledger if e["source_key"] == "SAMLTD/1210"]
    assert json.loads(entry["payload"]) == vendor
    assert json.loads(entry["key_properties"]) == ["company_id", "VendorNumber"]
    assert entry["payload_hash"] == Ledger.payload_hash(vendor)
    # The stream's SCHEMA is stored once per stream and run, not on every row.
    with_schema = Counter(e["stream"] for e in ledger if e["stream_schema"])
    assert set(with_schema.values()) == {1}
    line = next(e for e in ledger if e["stream"] == "purchase_order_lines")
    assert line["source_key"].count("/") == 2  # company/PO sequence key/line number

    text = (tmp_path / "ledger.sqlite").read_bytes()
    assert SAGE_PASSWORD.encode() not in text and SAGE_PASSWORD.upper().encode() not in text


def test_a_failed_run_is_closed_as_failed_with_what_was_read(sage: SageSandbox,
                                                            tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    sage.settings(forbidden_modules=["PO"])
    # Without the install check, which would stop the run before the first read.
    run = sage.run(sage.config(ledger_url=url, metadata_check="off"))
    assert run.returncode != 0

    (tap_run,) = rows(url, runs)
    assert tap_run["status"] == "failed"
    summary = json.loads(tap_run["summary"])
    assert "lacks the 'Sage 300 Web API' right" in summary["error"]
    read = Counter(e["stream"] for e in rows(url, entries))
    assert read["vendors"] == len(run.of("vendors")) > 0
    assert "purchase_orders" not in read


def test_ledger_url_from_the_environment(sage: SageSandbox, tmp_path: Path) -> None:
    import os

    url = f"sqlite:///{tmp_path / 'env-ledger.sqlite'}"
    run = sage.run(sage.config(ledger_url=None),
                   env={**os.environ, "ML_CONNECTOR_LEDGER_URL": url})
    assert run.returncode == 0, run.stderr
    assert len(rows(url, entries)) == sum(len(v) for stream, v in run.records.items()
                                          if stream != "vendor_keys")


def test_the_projects_ledger_by_default_and_none_when_off(sage: SageSandbox,
                                                          tmp_path: Path) -> None:
    """The trail is complete by default: reads go to the project's ledger like the other
    plugins' entries; `ledger_url: off` (a warehouse load) writes none."""
    import os

    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ML_CONNECTOR_LEDGER_URL"}
    env["MELTANO_PROJECT_ROOT"] = str(project)
    run = sage.run(sage.config(ledger_url=None), env=env)
    assert run.returncode == 0, run.stderr
    url = f"sqlite:///{project / '.ml-connector' / 'ledger.sqlite'}"
    assert len(rows(url, entries)) == sum(len(v) for stream, v in run.records.items()
                                          if stream != "vendor_keys")

    (project / ".ml-connector" / "ledger.sqlite").unlink()
    for name in ("off", "OFF"):
        run = sage.run(sage.config(ledger_url=name),
                       env={**env, "ML_CONNECTOR_LEDGER_URL": f"sqlite:///{tmp_path / 'x.db'}"})
        assert run.returncode == 0, run.stderr
    assert not list(tmp_path.rglob("*.sqlite")) and not list(tmp_path.rglob("*.db"))
