"""`ml-connector plan` as an operator runs it, against both simulators on free ports.

The plan must predict what the next runs do, record by record, and write nothing: no request
other than GETs (and OAuth2 tokens) reaches either system, the Basware queue keeps every
invoice waiting, Meltano's state and the ledger stay as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from ml_connector_core.basware_api import BaswareClient
from ml_connector_core.ledger import Ledger
from mlc_sandbox.data import (
    BASWARE_CLIENT_ID,
    BASWARE_CLIENT_SECRET,
    SAGE_PASSWORD,
    UNKNOWN_ACCOUNT,
    build_dataset,
)
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).with_name("meltano"))
MASTER_DATA_STATE = "sandbox:tap-sage300-to-target-basware"
TIMEOUT = 900  # a bound for a hung process, never a pass/fail criterion


@pytest.fixture
def env(fresh_sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """meltano.yml's sandbox environment pointed at this test's simulators and files."""
    info = fresh_sandbox.info()
    system_dir = tmp_path / "meltano"  # own run files and system DB, shared plugin venvs
    system_dir.mkdir()
    for kind in ("extractors", "loaders"):
        (system_dir / kind).symlink_to(ROOT / ".meltano" / kind)
    plugins = ("TAP_SAGE300_", "TARGET_SAGE300_", "TAP_BASWARE_", "TARGET_BASWARE_")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(plugins)},
        "MELTANO_SYS_DIR_ROOT": str(system_dir),
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_STATE_BACKEND_URI": f"file://{tmp_path / 'state'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "ML_CONNECTOR_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "TAP_SAGE300_BASE_URL": info["sage300"]["base_url"],
        "TARGET_SAGE300_BASE_URL": info["sage300"]["base_url"],
        "TAP_BASWARE_BASE_URL": info["basware"]["base_url"],
        "TARGET_BASWARE_BASE_URL": info["basware"]["base_url"],
    }


def plan_text(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", "ml_connector.cli", "plan", *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return result.returncode, result.stdout, result.stderr


def plan(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = plan_text(env, "--format", "json", *args)
    try:
        return code, json.loads(out), err
    except ValueError:
        pytest.fail(f"no JSON (exit {code}): {out}\n{err}")


def meltano(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr[-5000:]
    return result.stdout


def writes(sandbox: Sandbox) -> list[str]:
    """Every request to either simulator that is not a read (token requests are reads)."""
    found = []
    for server in (sandbox.sage300, sandbox.basware):
        log = requests.get(f"{server.base_url}/_sandbox/requests", timeout=60).json()
        found += [f"{r['method']} {r['path']}" for r in log["requests"]
                  if r["method"] != "GET" and r["path"] != "/v1/tokens"]
    return found


def clear_logs(sandbox: Sandbox) -> None:
    for server in (sandbox.sage300, sandbox.basware):
        requests.delete(f"{server.base_url}/_sandbox/requests", timeout=30).raise_for_status()


def queue(sandbox: Sandbox) -> Counter[str]:
    state = requests.get(f"{sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    return Counter(i["processingStatus"] for i in state["tenants"][BASWARE_CLIENT_ID]["invoices"])


def ledger_runs(env: dict[str, str]) -> int:
    with Ledger.open(env["ML_CONNECTOR_LEDGER_URL"]) as ledger:
        return len(ledger.report().runs)


def expected_master_data() -> dict[str, dict[str, int]]:
    """What the demo data must give on a first run: every record new, closed POs and lines
    (never sent to Basware) skipped, every goods receipt sent on its (new) order lines."""
    companies = build_dataset("demo", seed=0).sage.values()
    orders = [po for tables in companies for po in tables["PO/POPurchaseOrders"]]
    lines = [line for po in orders for line in po["PurchaseOrderLines"]]
    closed_orders = sum(po["Completed"] == "Yes" for po in orders)
    closed_lines = sum(line["Completed"] == "Yes" for line in lines)

    def new(n: int, skip: int = 0) -> dict[str, int]:
        return {"create": n - skip, "update": 0, "skip": skip, "reject": 0}

    return {
        "accounts": new(sum(len(t["GL/GLAccounts"]) for t in companies)),
        "goods_receipts": new(sum(len(t["PO/POGetReceipts"]) for t in companies)),
        "cost_centers": new(sum(s["SegmentNumber"] == "000002"
                                for t in companies for s in t["GL/GLSegmentCodes"])),
        "matching_order_lines": new(len(lines), closed_lines),
        "matching_orders": new(len(orders), closed_orders),
        "payment_terms": new(sum(len(t["AP/APTerms"]) for t in companies)),
        "vendors": new(sum(len(t["AP/APVendors"]) for t in companies)),
    }


def test_plan_predicts_both_jobs_and_writes_nothing(fresh_sandbox: Sandbox,
                                                    env: dict[str, str]) -> None:
    waiting = queue(fresh_sandbox)
    assert waiting == {"WaitingForTransfer": 28}

    code, first, stderr = plan(env)

    assert code == 0, stderr
    assert first["written"] is False
    master, invoices = first["jobs"]["master-data"], first["jobs"]["invoices"]
    payments = first["jobs"]["payments"]
    assert master["error"] is None and invoices["error"] is None and payments["error"] is None
    # Tax codes are planned like every selected stream: all new on a first run, four per
    # company (two authorities, item classes 1 and 2).
    streams = dict(master["streams"])
    assert streams.pop("tax_codes") == {"create": 8, "update": 0, "skip": 0, "reject": 0}
    assert streams == expected_master_data()
    receipts = [r for r in master["records"] if r["stream"] == "goods_receipts"]
    assert {r["key"] for r in receipts} >= {"SAMINC-RC100001", "SAMLTD-RC200003"}
    assert all(r["reason"].startswith("sent on matching_order_lines (") for r in receipts)
    # Nothing the connector created in Sage is paid yet: no payment response to send.
    assert payments["streams"] == {} and "every posted AP document" in payments["reads"]
    assert master["skip_reasons"] == {"closed in Sage and never sent to Basware":
                                      master["totals"]["skip"]}
    assert invoices["streams"] == {"ap_invoices": {"create": 27, "update": 0, "skip": 0,
                                                   "reject": 1}}
    (reject,) = invoices["rejects"]
    assert reject["reason"] == f"GL account {UNKNOWN_ACCOUNT} does not exist in Sage 300 " \
                               "company SAMINC"
    assert invoices["transfer_responses_pending"] == {"Transferred": 0, "TransferFailed": 0}
    # Nothing written anywhere; the peek left the whole queue waiting.
    assert writes(fresh_sandbox) == []
    assert queue(fresh_sandbox) == waiting
    assert json.loads(meltano(env, "state", "get", MASTER_DATA_STATE)) == {}
    assert ledger_runs(env) == 0

    # -- after a real run, and one vendor changed in Sage ------------------------------------
    meltano(env, "run", "master-data")
    touched = requests.post(f"{fresh_sandbox.sage300.base_url}/_sandbox/touch", json={
        "company": "SAMINC", "resource": "AP/APVendors", "key": "1210",
        "changes": {"PhoneNumber": "5550001111"}}, timeout=30)
    assert touched.status_code == 200, touched.text
    clear_logs(fresh_sandbox)
    state, runs = meltano(env, "state", "get", MASTER_DATA_STATE), ledger_runs(env)

    code, second, stderr = plan(env, "--job", "master-data")

    assert code == 0, stderr
    master = second["jobs"]["master-data"]
    assert master["error"] is None
    assert "changed since the last run" in master["reads"]
    assert master["totals"]["create"] == master["totals"]["reject"] == 0
    assert [(r["stream"], r["key"], r["verdict"]) for r in master["records"]] == [
        ("vendors", "SAMINC-1210", "update")]
    assert master["totals"]["skip"] > 0  # re-read from the bookmark day: unchanged
    # A receipt read again goes on order lines Basware has as they are: skipped with them.
    assert "already delivered with this payload" in master["skip_reasons"]
    assert set(master["skip_reasons"]) <= {"already delivered with this payload",
                                           "already in Basware on matching_order_lines"}
    assert writes(fresh_sandbox) == []
    assert meltano(env, "state", "get", MASTER_DATA_STATE) == state
    assert ledger_runs(env) == runs


def test_plan_says_which_plugin_failed_and_shows_no_secret(fresh_sandbox: Sandbox,
                                                          env: dict[str, str]) -> None:
    wrong = "Wrong-Pass-4711"
    code, report, stderr = plan({**env, "TAP_SAGE300_PASSWORD": wrong}, "--job",
                                "master-data")

    assert code == 1, stderr
    error = report["jobs"]["master-data"]["error"]
    # The tap's first call, the install check's read of $metadata, is the one refused.
    assert error.startswith("tap-sage300 failed (exit 1), nothing was written: "
                            "Sage300AuthError: Sage 300 refused the credentials for user WEBAPI")
    assert wrong not in error and wrong.upper() not in error and SAGE_PASSWORD not in error
    assert writes(fresh_sandbox) == []


def test_plan_counts_the_answers_the_last_invoices_run_left_to_give(
        fresh_sandbox: Sandbox, env: dict[str, str]) -> None:
    """target-sage300 leaves its outcomes in the ledger and names its run in the job's state;
    tap-basware answers them in the job's second task. When that task did not run (here:
    the first task alone, as a run stopped between the two), the plan reads them there."""
    meltano(env, "run", "tap-basware", "target-sage300")
    clear_logs(fresh_sandbox)
    runs = ledger_runs(env)

    code, report, stderr = plan(env, "--job", "invoices")

    assert code == 0, stderr
    invoices = report["jobs"]["invoices"]
    assert invoices["error"] is None
    assert invoices["transfer_responses_pending"] == {"Transferred": 27, "TransferFailed": 1}
    # All 28 are in progress, but each is answered first: none is read again.
    assert invoices["in_progress_read_again"] == [] and invoices["streams"] == {}
    assert writes(fresh_sandbox) == [] and ledger_runs(env) == runs
    assert queue(fresh_sandbox) == {"TransferInProgress": 28}


def test_plan_lists_invoices_a_stopped_run_acknowledged_but_never_answered(
        fresh_sandbox: Sandbox, env: dict[str, str]) -> None:
    """A run that stopped between acknowledging and target-sage300's outcome leaves invoices
    in TransferInProgress with nothing to answer them; the next run reads them again, so the
    plan peeks at them too and names them."""
    state = requests.get(f"{fresh_sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    stranded = sorted(i["invoiceId"] for i in state["tenants"][BASWARE_CLIENT_ID]["invoices"]
                      )[:2]
    basware = BaswareClient(client_id=BASWARE_CLIENT_ID, client_secret=BASWARE_CLIENT_SECRET,
                            scopes="accountingDocuments.write",
                            base_url=fresh_sandbox.basware.base_url)
    for invoice_id in stranded:  # as the stopped run did, before its target wrote anything
        acknowledged = basware.request("POST", f"/v1/accountingDocuments/{invoice_id}/"
                                       "acknowledge", headers={"Content-Type": "application/json"})
        assert acknowledged.status_code == 200, acknowledged.text
    clear_logs(fresh_sandbox)

    code, report, stderr = plan(env, "--job", "invoices")

    assert code == 0, stderr
    invoices = report["jobs"]["invoices"]
    assert invoices["error"] is None
    assert sorted(invoices["in_progress_read_again"]) == stranded
    # Every invoice gets its verdict once, the two in progress included.
    assert invoices["streams"] == {"ap_invoices": {"create": 27, "update": 0, "skip": 0,
                                                   "reject": 1}}
    assert invoices["transfer_responses_pending"] == {"Transferred": 0, "TransferFailed": 0}
    assert writes(fresh_sandbox) == []
    assert queue(fresh_sandbox) == {"TransferInProgress": 2, "WaitingForTransfer": 26}

    code, text, stderr = plan_text(env, "--job", "invoices")
    assert code == 0, stderr
    assert (f"read again: 2 invoice(s) an earlier run acknowledged and never answered "
            f"(TransferInProgress; their verdicts are counted above): {stranded[0]}, "
            f"{stranded[1]}") in text


def test_plan_shows_the_payment_responses_the_next_payments_run_sends(
        fresh_sandbox: Sandbox, env: dict[str, str]) -> None:
    """The payments job (tap-sage300--payments -> target-basware): a payment made in Sage on
    an invoice the connector created is a payment response to send (create, its paidTotal);
    once the payments job sent it, the same state is a skip. Nothing is written."""
    meltano(env, "run", "invoices")
    sage = fresh_sandbox.sage300.base_url
    state = requests.get(f"{sage}/_sandbox/state", timeout=60).json()
    (batch,) = [b for b in state["companies"]["SAMINC"]["AP/APInvoiceBatches"]
                if str(b.get("Description", "")).startswith("ml-connector")]
    entry = batch["Invoices"][0]
    (invoice_id,) = [f["Value"] for f in entry["InvoiceOptionalFields"]
                     if f["OptionalField"] == "BWINVID"]
    posted = requests.post(
        f"{sage}/Sage300WebApi/v1.0/-/SAMINC/AP/APPostInvoices('$process')",
        json={"ProcessAllBatches": "Donotpostallbatches", "FromBatch": batch["BatchNumber"],
              "ToBatch": batch["BatchNumber"]}, auth=("WEBAPI", SAGE_PASSWORD.upper()),
        timeout=30)
    assert posted.status_code == 204, posted.text
    paid = requests.post(f"{sage}/_sandbox/pay", json={
        "company": "SAMINC", "vendor": entry["VendorNumber"],
        "document": entry["DocumentNumber"], "check_number": "CHK-7"}, timeout=30)
    assert paid.status_code == 200, paid.text
    clear_logs(fresh_sandbox)
    runs = ledger_runs(env)

    code, report, stderr = plan(env, "--job", "payments")

    assert code == 0, stderr
    payments = report["jobs"]["payments"]
    assert payments["error"] is None
    assert payments["tap"] == "tap-sage300--payments"
    assert payments["streams"] == {"payment_responses": {"create": 1, "update": 0, "skip": 0,
                                                         "reject": 0}}
    (record,) = payments["records"]
    total = f"{entry['DocumentTotalIncludingTax']:.2f}".rstrip("0").rstrip(".")
    assert record["key"] == invoice_id and record["reason"].startswith(f"paidTotal {total}")
    assert writes(fresh_sandbox) == [] and ledger_runs(env) == runs
    code, text, stderr = plan_text(env, "--job", "payments")
    assert code == 0, stderr
    assert "payments (tap-sage300--payments -> target-basware)" in text
    assert "payment_responses" in text

    # Sent by the job: the same payment state is nothing to send any more.
    meltano(env, "run", "payments")
    clear_logs(fresh_sandbox)
    code, report, stderr = plan(env, "--job", "payments", "--full")
    assert code == 0, stderr
    payments = report["jobs"]["payments"]
    assert payments["streams"] == {"payment_responses": {"create": 0, "update": 0, "skip": 1,
                                                         "reject": 0}}
    assert payments["skip_reasons"] == {"already answered with this payment state": 1}
    assert writes(fresh_sandbox) == []
