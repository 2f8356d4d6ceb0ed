"""`ml-connector status` against real runs: what waits, named as the business names it.

One sandbox, the runs an operator would see:

1. nothing ran: every job is stale (a problem), the ledger is empty;
2. master data, then only the invoices job's first task (`meltano run tap-basware
   target-sage300`): its invoices are acknowledged in Basware and not answered, as after a
   run that stopped between the two tasks. The project's `.env` says 0s for unanswered
   invoices, so each is a problem; a flag overrides the `.env`;
3. the invoices job: everything answered; INV-18825 (coded to GL account 6999-200, which
   Sage lacks) waits as TransferFailed with its reason and `ml-connector retry INV-18825`;
   the demo's ending shows the same (ml_connector/demo.py `ending`); the commands of
   docs/operations.md and README.md run as written;
4. an invoices run with a wrong Basware secret: the job failing, with Meltano's reason and no
   secret; then one Meltano fails before its first task (no Meltano record): failing twice.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from e2e import RUN_TIMEOUT, Project, basware_tenant, planted_secrets, project_copy

from ml_connector import demo
from ml_connector.status import Thresholds, describe_duration, job_status, parse_duration
from ml_connector_core.redaction import Redactor
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / ".venv" / "bin" / "ml-connector")
FAILED_INVOICE = "INV-18825"
INVOICE = "accounting_documents"
REASON = "GL account 6999-200 does not exist in Sage 300 company SAMINC"


def status(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "status", *args], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def status_json(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = status(project, "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def basware_invoices(sandbox: Sandbox) -> list[dict[str, Any]]:
    invoices = basware_tenant(sandbox)["invoices"]
    return list(invoices.values()) if isinstance(invoices, dict) else list(invoices)


def items(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [item for item in report["items"] if item["kind"] == kind]


def documented_commands(doc: Path, heading: str) -> list[str]:
    """The `ml-connector status` lines of the bash block under `heading`."""
    section = doc.read_text().split(heading, 1)[1]
    block = re.search(r"^```bash\n(.*?)^```", section, re.M | re.S)
    assert block, f"{doc.name}: no bash block under {heading!r}"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith(".venv/bin/ml-connector status")]


def test_status_names_what_waits_and_its_fix(fresh_sandbox: Sandbox, tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    root = project_copy(tmp_path)
    (root / ".env").write_text("ML_CONNECTOR_UNANSWERED_AFTER=0s\n")
    project = Project.create(fresh_sandbox, tmp_path / "work", root=root)

    # 1. Nothing ran yet: every job is stale, nothing else.
    code, report = status_json(project)
    assert code == 1
    assert {item["id"] for item in report["items"]} == {"stale:invoices@sandbox",
                                                    "stale:master-data@sandbox",
                                                    "stale:payments@sandbox"}
    assert report["thresholds"]["stale_after_seconds"]["payments"] == 26 * 3600
    assert all(job["last_run"] is None for job in report["jobs"])

    # 2. Acknowledged, not answered. The payments job ran too (nothing paid: it sends
    # nothing), so no job is stale.
    assert project.run("master-data").ok
    assert project.run("payments").ok
    first_task = project.run("tap-basware", "target-sage300")
    assert first_task.ok, first_task.output[-3000:]
    code, report = status_json(project)
    unanswered = items(report, "unanswered")
    numbers = {invoice["invoiceNumber"] for invoice in basware_invoices(fresh_sandbox)
               if invoice["processingStatus"] == "TransferInProgress"}
    assert len(numbers) == 28
    assert {item["business_id"] for item in unanswered} == numbers
    assert code == 1 and all(item["problem"] for item in unanswered)  # 0s from .env
    polaris = next(item for item in unanswered if item["business_id"] == FAILED_INVOICE)
    assert "vendor Polaris Office Group (1400)" in polaris["title"]
    assert items(report, "transfer_failed") == []
    code, report = status_json(project, "--unanswered-after", "1h")  # the flag wins
    assert code == 0 and report["problems"] == 0
    assert len(items(report, "unanswered")) == 28
    assert {job["job"]: job["last_success"] is not None for job in report["jobs"]} == {
        "master-data": True, "invoices": True, "payments": True}

    # 3. Answered: one invoice waits as TransferFailed, with its reason and its fix.
    assert project.run("invoices").ok
    result = status(project)
    assert result.returncode == 0, result.stdout + result.stderr  # 4 h to act by default
    text = result.stdout
    assert "Invoices answered TransferFailed, waiting for someone to act (1):" in text
    gross = next(invoice["grossSum"] for invoice in basware_invoices(fresh_sandbox)
                 if invoice["invoiceNumber"] == FAILED_INVOICE)  # with its taxes
    assert (f"invoice {FAILED_INVOICE}, vendor Polaris Office Group (1400), company US01, "
            f"{gross} USD") in text
    assert f"why: {REASON}" in text
    assert f"ml-connector retry {FAILED_INVOICE}" in text
    assert "acknowledged in Basware" not in text  # nothing unanswered any more
    assert "SAMLTD/1600 Rheinland Industrietechnik GmbH" in text  # master data Basware refused
    assert "Basware: Currency EUR is not active in P2P" in text
    invoice_id = next(invoice["invoiceId"] for invoice in basware_invoices(fresh_sandbox)
                      if invoice["invoiceNumber"] == FAILED_INVOICE)
    assert invoice_id not in text  # Basware's internal id: nobody types it
    assert "VERDICT: OK" in text
    assert "Thresholds: no success for (invoices 2 h 00 min, master-data 3 h 00 min, " \
           "payments 1 d 2 h)" in text

    code, report = status_json(project, "--transfer-failed-after", "0s")
    (failed,) = items(report, "transfer_failed")
    assert code == 1 and report["problems"] == 1
    assert (failed["business_id"], failed["reason"], failed["problem"]) == (
        FAILED_INVOICE, REASON, True)
    assert len(items(report, "rejected")) == 5  # the demo's 5 records P2P refuses
    code, report = status_json(project, "--stale-after", "master-data=0s")
    assert code == 1 and [item["id"] for item in report["items"] if item["problem"]] == [
        "stale:master-data@sandbox"]
    # The payments job's own threshold, from the project's settings as the others.
    code, report = status_json(replace(project, env={
        **project.env, "ML_CONNECTOR_STALE_AFTER": "payments=0s"}))
    assert code == 1 and [item["id"] for item in report["items"] if item["problem"]] == [
        "stale:payments@sandbox"]

    # The demo's ending, on these runs: the failure, its reason and the command that fixes it.
    capfd.readouterr()
    demo.ending(project.env, tmp_path)
    shown = capfd.readouterr().out
    assert "== Is anything stuck?" in shown
    assert f"why: {REASON}" in shown and f"ml-connector retry {FAILED_INVOICE}" in shown
    assert (tmp_path / "report.html").exists()

    # Every `ml-connector status` command of the docs, as written (the .venv of the copy).
    commands = (documented_commands(ROOT / "docs" / "operations.md",
                                    "## Is anything stuck? `ml-connector status`")
                + documented_commands(ROOT / "README.md", "## Is anything stuck?"))
    assert len(commands) >= 5
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=root, env=project.env,
                                capture_output=True, text=True, timeout=RUN_TIMEOUT,
                                check=False)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert result.stderr == "" or "--notify" in command, (command, result.stderr)

    # 4. A run failing: the job, Meltano's reason, no secret.
    broken = replace(project, env={**project.env, "TAP_BASWARE_CLIENT_SECRET": "not-the-secret"},
                     runs=[])
    assert not broken.run("invoices", name="invoices-wrong-secret").ok
    code, report = status_json(project)
    invoices = next(job for job in report["jobs"] if job["job"] == "invoices")
    assert (invoices["failing_in_a_row"], invoices["last_run"]["status"]) == (1, "failed")
    assert invoices["last_success"] is not None
    (failing,) = items(report, "failing_runs")
    assert code == 0 and not failing["problem"]  # one failure: under the default of 2
    code, report = status_json(project, "--failed-runs", "1")
    assert code == 1 and items(report, "failing_runs")[0]["problem"]

    # A run Meltano fails before its first task (a setting it cannot parse) leaves no
    # Meltano record and no ledger run: ml-connector run's own record counts it.
    unreadable = {**project.env, "TAP_BASWARE_COMPANY_CODES": "[not json"}
    result = subprocess.run([CLI, "run", "invoices"], cwd=root, env=unreadable,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert result.returncode != 0
    code, report = status_json(project)
    invoices = next(job for job in report["jobs"] if job["job"] == "invoices")
    assert invoices["failing_in_a_row"] == 2 and code == 1
    assert "before its first task started" in invoices["last_error"]
    outputs = {"text": status(project).stdout, "json": json.dumps(report)}
    assert [name for name, out in outputs.items()
            if any(secret in out for secret in [*planted_secrets(fresh_sandbox),
                                                "not-the-secret"])] == []


# --------------------------------------------------------------------------- the pieces


def test_a_jobs_runs_from_meltanos_records() -> None:
    """The tasks of one `meltano run` share a run id; a run failed when one task failed; a
    failing streak counts finished runs only (one in progress neither breaks nor extends it)."""
    def record(run: str, state: str, minute: int, error: str | None = None) -> dict[str, Any]:
        from datetime import datetime

        at = datetime(2026, 12, 5, 8, minute)
        return {"run_id": run, "state": state, "started_at": at, "ended_at": at,
                "error": error}

    records = [record("a", "SUCCESS", 0), record("a", "SUCCESS", 1),
               record("b", "SUCCESS", 15), record("b", "FAIL", 16, "Basic dXNlcjpwYXNz"),
               record("c", "FAIL", 30, "token refused"), record("d", "RUNNING", 45)]
    job = job_status("invoices", records, Redactor([]))
    assert job.last_run is not None and job.last_run["run_id"] == "d"
    assert job.last_success is not None and job.last_success["run_id"] == "a"
    assert (job.failing_in_a_row, job.last_error) == (2, "token refused")
    assert job.failing_since is not None and job.failing_since.minute == 15
    assert job_status("invoices", [], Redactor([])).last_run is None


def test_thresholds_from_flags_settings_and_defaults() -> None:
    from argparse import Namespace

    settings = {"ML_CONNECTOR_UNANSWERED_AFTER": "45m", "ML_CONNECTOR_FAILED_RUNS": "3",
                "ML_CONNECTOR_STALE_AFTER": "invoices=6h, master-data=1d"}
    flags = Namespace(unanswered_after=parse_duration("5m"), transfer_failed_after=None,
                      rejected_after=None, failed_runs=None, stale_after=["invoices=1h"])
    chosen = Thresholds.from_settings(settings, flags)
    assert (chosen.unanswered_after, chosen.failed_runs) == (parse_duration("5m"), 3)
    assert chosen.stale_after == {"invoices": parse_duration("1h"),
                                  "master-data": parse_duration("1d"),
                                  "payments": parse_duration("26h")}  # the default
    assert chosen.transfer_failed_after == parse_duration("4h")  # the default
    assert Thresholds().stale_after["payments"] == parse_duration("26h")
    payments = Thresholds.from_settings({"ML_CONNECTOR_STALE_AFTER": "payments=2d"})
    assert payments.stale_after == {"invoices": parse_duration("2h"),
                                    "master-data": parse_duration("3h"),
                                    "payments": parse_duration("2d")}
    assert [describe_duration(parse_duration(t)) for t in ("45s", "12m", "125m", "50h")] == [
        "45 s", "12 min", "2 h 05 min", "2 d 2 h"]
    with pytest.raises(ValueError, match="JOB=DURATION"):
        Thresholds.from_settings({"ML_CONNECTOR_STALE_AFTER": "invoices"})


def test_what_the_ledger_says_waits(tmp_path: Path) -> None:
    """From ledger entries as the plugins record them: an answer tap-basware could not send
    says why (not the generic "no transfer response sent"); an invoice a retry created in
    Sage 300 whose Transferred answer Basware refused says what the AP user does in Basware
    (not `ml-connector retry` again); a record refused, then delivered, is not listed."""
    from datetime import UTC, datetime

    from ml_connector.status import read_ledger
    from ml_connector_core.ledger import Entry, Ledger

    def invoice(number: str) -> dict[str, Any]:
        return {"invoiceNumber": number, "supplierName": "Acme Tools", "supplierCode": "1200",
                "companyCode": "US01", "grossSum": 10.5, "currencyCode": "USD"}

    failed = {"success": False, "responseMessage": "Vendor 1200 is inactive in SAMINC"}
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        tap = ledger.start_run("tap-basware").run_id
        target = ledger.start_run("target-sage300").run_id
        ledger.record_many([
            Entry(tap, INVOICE, "id-1", "read", payload=invoice("INV-1")),
            Entry(tap, INVOICE, "id-1", "acknowledged"),
            Entry(tap, "transfer_responses", "id-1", "failed",
                  error="Transfer outcome for invoice id-1 not sent: Basware no longer "
                        "knows the invoice"),
            Entry(tap, INVOICE, "id-2", "read", payload=invoice("INV-2")),
            Entry(tap, INVOICE, "id-2", "acknowledged"),
            Entry(target, "ap_invoices", "id-2", "rejected", error=failed["responseMessage"]),
            Entry(tap, "transfer_responses", "id-2", "responded", payload=failed),
            Entry(target, "ap_invoices", "id-2", "created"),  # the retry, once fixed
            Entry(tap, "transfer_responses", "id-2", "failed", error="refused on TransferFailed"),
            Entry(target, "vendors", "SAMINC/1300", "rejected", error="Basware: no"),
            Entry(target, "vendors", "SAMINC/1300", "updated"),
        ])
        found = {item.business_id: item for item in read_ledger(
            ledger, datetime.now(UTC), Thresholds())}
    assert set(found) == {"INV-1", "INV-2"}
    assert (found["INV-1"].kind, found["INV-1"].reason) == (
        "unanswered", "Transfer outcome for invoice id-1 not sent: Basware no longer knows "
                      "the invoice")
    assert found["INV-1"].title == "invoice INV-1, vendor Acme Tools (1200), company US01, " \
                                   "10.5 USD"
    assert found["INV-2"].kind == "transfer_failed"
    assert found["INV-2"].reason == "Vendor 1200 is inactive in SAMINC"
    assert "in Basware, send invoice INV-2 to transfer again" in found["INV-2"].fix[0]
