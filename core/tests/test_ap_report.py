"""`ml-connector audit report` on a ledger written here: job runs, sections, escaping.

The report of real runs against the sandbox, in a browser, is tests/test_report_browser.py.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ml_connector_core.ap_report import SAME_JOB_RUN_GAP, job_runs
from ml_connector_core.audit import main
from ml_connector_core.ledger import BASWARE_TO_SAGE, SAGE_TO_BASWARE, Action, Entry, Ledger, Run

EVIL = "<script>alert(1)</script>"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def populate(url: str) -> None:
    """An invoices job run (one Meltano run id) and a master-data one, with hostile text."""
    with Ledger.open(url) as ledger:
        tap = ledger.start_run("tap-basware", job_id="job-inv")
        ledger.record_many([Entry(tap.run_id, "accounting_documents", key, Action.READ,
                                  payload={"invoiceId": key, "invoiceNumber": number,
                                           "supplierCode": "1400", "supplierName": name,
                                           "grossSum": 10.5, "currencyCode": "USD"})
                            for key, number, name in (("bw-1", "INV-1", "Acme & Sons"),
                                                      ("bw-2", f"INV-{EVIL}", EVIL))])
        ledger.finish_run(tap.run_id, "success")
        target = ledger.start_run("target-sage300", job_id="job-inv")
        ledger.record_many([
            Entry(target.run_id, "ap_invoices", "bw-1", Action.CREATED, direction=BASWARE_TO_SAGE,
                  payload={"company": "SAMINC", "document_number": "INV-1", "currency": "USD",
                           "gross_total": 1234.5, "vendor_number": "1400"},
                  sage_batch="7", sage_entry="3", sage_document="INV-1",
                  reply={"success": True, "company": "SAMINC", "message": "Created"}),
            Entry(target.run_id, "ap_invoices", "bw-2", Action.REJECTED,
                  direction=BASWARE_TO_SAGE, error=f"GL account {EVIL} does not exist",
                  payload={"company": "SAMINC", "document_number": f"INV-{EVIL}",
                           "currency": "USD", "gross_total": 10.5, "vendor_number": "1400"}),
        ])
        ledger.finish_run(target.run_id, "success")
        master = ledger.start_run("target-basware", job_id="job-md")
        ledger.record_many([
            Entry(master.run_id, "vendors", "SAMLTD/1600", Action.REJECTED,
                  direction=SAGE_TO_BASWARE, error="Basware: Currency EUR is not active",
                  payload={"vendorCode": "1600", "name": f"Rheinland {EVIL}"}),
            Entry(master.run_id, "vendors", "SAMLTD/1200", Action.CREATED,
                  direction=SAGE_TO_BASWARE, payload={"vendorCode": "1200", "name": "Prairie"}),
        ])
        ledger.finish_run(master.run_id, "failed", {"error": "stopped"})


def test_report_sections_text_and_html(sqlite_url: str, tmp_path: Path) -> None:
    populate(sqlite_url)
    page = tmp_path / "report.html"
    code, out, err = run("--ledger-url", sqlite_url, "report", "--html", str(page))
    assert code == 0 and f"HTML report written to {page}" in err
    # Both jobs' latest runs; the failed plugin run is the first thing that needs attention.
    assert "master-data: failed" in out and "invoices: success" in out
    assert out.index("NEEDS ATTENTION (3)") < out.index("Run failed: the master-data job's "
                                                        "target-basware run failed")
    assert "Invoice INV-1  Acme & Sons (1400)  1,234.50 USD" not in out  # created, not failed
    assert f"Invoice INV-{EVIL}  {EVIL} (1400)  10.50 USD  Sage company SAMINC" in out
    assert "Vendors SAMLTD/1600" in out
    created = out[out.index("CREATED IN SAGE 300 (1 invoices"):out.index("MASTER DATA")]
    assert "INV-1" in created and "1,234.50 USD" in created and "created ready to post" in created
    assert "Posted" not in out

    html = page.read_text()
    assert '<meta name="viewport"' in html and "<style>" in html
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Acme &amp; Sons (1400)" in html
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert html.index('id="attention"') < html.index('id="created"') \
        < html.index('id="master-data"') < html.index('id="totals"')


def test_report_selection(sqlite_url: str) -> None:
    populate(sqlite_url)
    code, out, _ = run("--ledger-url", sqlite_url, "report", "--run", "job-md")
    assert code == 0 and "master-data: failed" in out and "invoices:" not in out
    assert "NEEDS ATTENTION (2)" in out and "CREATED IN SAGE 300 (0 invoices" in out
    code, out, _ = run("--ledger-url", sqlite_url, "report", "--since", "1h")
    assert code == 0 and "Runs started from " in out and "NEEDS ATTENTION (3)" in out
    code, out, _ = run("--ledger-url", sqlite_url, "report", "--from", "2020-01-01",
                       "--to", "2020-01-02")
    assert code == 0 and "  no runs" in out and "NEEDS ATTENTION (0)" in out
    code, _, err = run("--ledger-url", sqlite_url, "report", "--run", "nope")
    assert code == 1 and "no run found with id 'nope'" in err


def test_job_runs_without_meltano_run_id() -> None:
    """A plain `meltano run` gives its plugins no shared id: the plugin runs of a job that
    follow each other within SAME_JOB_RUN_GAP are one job run; the other job apart."""
    start = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    second = timedelta(seconds=1)

    def plugin_run(plugin: str, at: timedelta, took: timedelta = 5 * second) -> Run:
        return Run(run_id=f"{plugin}@{at.seconds}", plugin=plugin, started_at=start + at,
                   status="success", finished_at=start + at + took)

    later = 15 * 60 * second  # the next scheduled run
    runs = [plugin_run("tap-basware", 0 * second), plugin_run("target-sage300", 1 * second),
            plugin_run("tap-basware", 8 * second), plugin_run("tap-sage300", 2 * second),
            plugin_run("tap-basware", later), plugin_run("target-sage300", later + second)]
    grouped = job_runs(runs)
    assert [(job_run.job, [run.run_id for run in job_run.runs]) for job_run in grouped] == [
        ("invoices", ["tap-basware@0", "target-sage300@1", "tap-basware@8"]),
        ("master-data", ["tap-sage300@2"]),
        ("invoices", [f"tap-basware@{later.seconds}", f"target-sage300@{later.seconds + 1}"]),
    ]
    assert later > SAME_JOB_RUN_GAP


def test_settled_since_already_there_and_old_runs(sqlite_url: str) -> None:
    """A failure a later run settled says so; an invoice found in Sage is 'not created
    again'; the latest runs are found however old they are."""
    with Ledger.open(sqlite_url) as ledger:
        tap = ledger.start_run("tap-basware", job_id="job-a")
        ledger.record(Entry(tap.run_id, "accounting_documents", "bw-9", Action.READ,
                            payload={"invoiceId": "bw-9", "invoiceNumber": "INV-9",
                                     "supplierCode": "1200", "supplierName": "Prairie",
                                     "grossSum": 99, "currencyCode": "CAD"}))
        ledger.finish_run(tap.run_id, "success")
        first = ledger.start_run("target-sage300", job_id="job-a")
        ledger.record(Entry(first.run_id, "ap_invoices", "bw-9", Action.FAILED,
                            error="Sage300Error: HTTP 503 after 5 tries"))
        ledger.finish_run(first.run_id, "failed")
        second = ledger.start_run("target-sage300", job_id="job-b")
        ledger.record_many([
            Entry(second.run_id, "ap_invoices", "bw-9", Action.CREATED, target_key="SAMLTD/8/1",
                  sage_batch="8", sage_entry="1",
                  payload={"company": "SAMLTD", "document_number": "INV-9", "currency": "CAD",
                           "gross_total": 99, "vendor_number": "1200"}),
            Entry(second.run_id, "ap_invoices", "bw-10", Action.UNCHANGED,
                  target_key="SAMLTD/3/2", sage_batch="3", sage_entry="2",
                  payload={"company": "SAMLTD", "document_number": "INV-10", "currency": "CAD",
                           "gross_total": 5, "vendor_number": "1200"},
                  reply={"success": True, "company": "SAMLTD",
                         "message": "Already in Sage 300 company SAMLTD, batch 3 entry 2"}),
        ])
        ledger.finish_run(second.run_id, "success")
        # Runs of a month ago: the default report still finds the latest of each job.
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE ledger_runs SET started_at = datetime(started_at, "
                                 "'-30 days'), finished_at = datetime(finished_at, '-30 days')")
    code, out, _ = run("--ledger-url", sqlite_url, "report", "--run", "job-a")
    assert code == 0 and "invoices: failed" in out
    assert "Invoice INV-9  Prairie (1200)  99.00 CAD" in out
    assert "Now:        since created as SAMLTD/8/1" in out
    assert "Run failed: the invoices job's target-sage300 run failed" in out
    code, out, _ = run("--ledger-url", sqlite_url, "report")
    assert code == 0 and "invoices: success" in out and "NEEDS ATTENTION (0)" in out
    assert "INV-9" in out and "already in Sage (batch 3, entry 2); not created again" in out
