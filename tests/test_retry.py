"""The recovery loop closes: what failed is sent again once its cause is fixed, created once,
and Basware hears the new outcome (`ml-connector retry`, docs/ledger.md "Recovery").

Against both simulators over HTTP, with real `meltano run`s, the commands typed as
docs/ledger.md and README.md show them (RECIPE below is checked against both files):

- a rejected invoice (INV-18825: GL account 6999-200 missing in Sage) is retried after the
  account was created in Sage: one Sage entry, Basware Transferred with that batch and entry
  as voucher numbers; a retry before the fix fails again without a second identical answer;
  a retry after success runs nothing and says so; `audit replay` then replays nothing;
- a tenant that refuses answers on TransferFailed invoices (sandbox setting
  `responses_after_failure: refused`): the retry creates the invoice in Sage, exits 1 naming
  what the AP user does, and after the user's retransfer the next run answers it from the
  Sage entry without creating it twice;
- Basware's own retransfer path after a fix: the next `ml-connector run invoices` creates
  the invoice once and answers it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import (
    ROOT,
    Project,
    basware_tenant,
    duplicates,
    request_log,
    requests_served,
    sage_entries,
    snapshot,
)

from mlc_sandbox.serve import Sandbox

CLI = str(Path(sys.executable).with_name("ml-connector"))
INVOICE = "INV-18825"
CAUSE = "GL account 6999-200 does not exist in Sage 300 company SAMINC"
#: What a user types, in docs/ledger.md and README.md exactly so (checked below).
CREATE_ACCOUNT = "ml-connector sandbox gl-account --info-file sandbox.json --company SAMINC 6999-200"
RETRY = f"ml-connector retry {INVOICE}"
RETRANSFER = f"ml-connector sandbox retransfer --info-file sandbox.json {INVOICE}"
RUN = "ml-connector run invoices"
REPLAY = "ml-connector audit replay --failed --stream ap_invoices"
RECIPE = (CREATE_ACCOUNT, RETRY, RETRANSFER, RUN, REPLAY)


def typed(project: Project, command: str) -> subprocess.CompletedProcess[str]:
    """`command` as a user types it, in a directory holding the sandbox's sandbox.json, the
    project named by MELTANO_PROJECT_ROOT (as an operator's shell profile would)."""
    argv = shlex.split(command)
    assert argv[0] == "ml-connector"
    env = {**project.env, "MELTANO_PROJECT_ROOT": str(ROOT)}
    return subprocess.run([CLI, *argv[1:]], cwd=project.workdir, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def invoice(sandbox: Sandbox) -> dict[str, Any]:
    (found,) = [i for i in basware_tenant(sandbox)["invoices"]
                if i["invoiceNumber"] == INVOICE]
    return found


def in_sage(sandbox: Sandbox, invoice_id: str) -> list[dict[str, Any]]:
    return sage_entries(sandbox).get(invoice_id, [])


def setup_project(sandbox: Sandbox, tmp_path: Path) -> tuple[Project, str]:
    """Master data, then invoices: INV-18825 TransferFailed for its missing GL account."""
    project = Project.create(sandbox, tmp_path)
    sandbox.write_info(project.workdir / "sandbox.json")
    for job in ("master-data", "invoices"):  # as the docs have the user run them
        ran = typed(project, f"ml-connector run {job}")
        assert ran.returncode == 0, ran.stderr[-3000:]
    failed = invoice(sandbox)
    assert failed["processingStatus"] == "TransferFailed"
    assert failed["transferResponses"][-1]["responseMessage"] == CAUSE
    assert in_sage(sandbox, failed["invoiceId"]) == []
    return project, failed["invoiceId"]


def test_the_recipe_is_documented_as_tested() -> None:
    ledger_doc = (ROOT / "docs" / "ledger.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for command in RECIPE:
        assert command in ledger_doc, command
    for command in (CREATE_ACCOUNT, RETRY, RETRANSFER, RUN):
        assert command in readme, command
    assert "--stream invoices" not in ledger_doc  # the stream is ap_invoices


def test_a_fixed_invoice_is_created_once_and_basware_told(fresh_sandbox: Sandbox,
                                                          tmp_path: Path) -> None:
    project, invoice_id = setup_project(fresh_sandbox, tmp_path)

    # Retried before the cause is fixed (as every open failure of the job): rejected again,
    # and Basware is not told the same reason twice (its latest response says it already).
    early = typed(project, "ml-connector retry --open --job invoices")
    assert early.returncode == 1, early.stdout + early.stderr
    assert f"{INVOICE}: failed again: {CAUSE}" in early.stdout
    assert len(invoice(fresh_sandbox)["transferResponses"]) == 1
    assert in_sage(fresh_sandbox, invoice_id) == []

    created = typed(project, CREATE_ACCOUNT)
    assert created.returncode == 0, created.stderr
    assert "GL account 6999-200" in created.stdout

    retried = typed(project, RETRY)
    assert retried.returncode == 0, retried.stdout + retried.stderr[-3000:]
    (entry,) = in_sage(fresh_sandbox, invoice_id)
    batch, number = str(entry["batch"]["BatchNumber"]), str(entry["EntryNumber"])
    answered = invoice(fresh_sandbox)
    assert answered["processingStatus"] == "Transferred"
    assert (answered["voucherNumber1"], answered["voucherNumber2"]) == (batch, number)
    assert [r["success"] for r in answered["transferResponses"]] == [False, True]
    assert (f"{INVOICE}: created in Sage 300 company SAMINC batch {batch} entry {number}; "
            "Basware told Transferred") in retried.stdout

    # Succeeded since: nothing runs, and it says so.
    served = _served(fresh_sandbox)
    again = typed(project, RETRY)
    assert again.returncode == 0, again.stdout
    assert f"{INVOICE} already Transferred at " in again.stdout
    assert f"(Sage 300 company SAMINC batch {batch} entry {number}): nothing to do" \
        in again.stdout
    assert "Retrying" not in again.stdout and _served(fresh_sandbox) == served

    replay = typed(project, REPLAY)
    assert replay.returncode == 0, replay.stderr
    assert '"type": "RECORD"' not in replay.stdout and '"type":"RECORD"' not in replay.stdout

    # The next scheduled run finds nothing to do for it: one entry, one success.
    run = typed(project, RUN)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(in_sage(fresh_sandbox, invoice_id)) == 1
    assert [r["success"] for r in invoice(fresh_sandbox)["transferResponses"]] == [False, True]
    assert duplicates(snapshot(fresh_sandbox)) == [
        f"Basware invoice {invoice_id} has 2 transfer responses"]


def test_a_tenant_refusing_answers_after_failure_needs_the_users_retransfer(
        fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    requests.patch(f"{fresh_sandbox.basware.base_url}/_sandbox/settings",
                   json={"responses_after_failure": "refused"}, timeout=10).raise_for_status()
    project, invoice_id = setup_project(fresh_sandbox, tmp_path)
    assert typed(project, CREATE_ACCOUNT).returncode == 0

    retried = typed(project, RETRY)
    assert retried.returncode == 1, retried.stdout
    (entry,) = in_sage(fresh_sandbox, invoice_id)
    batch, number = str(entry["batch"]["BatchNumber"]), str(entry["EntryNumber"])
    assert invoice(fresh_sandbox)["processingStatus"] == "TransferFailed"
    assert f"In Basware, send invoice {INVOICE} to transfer again" in retried.stdout
    assert f"from batch {batch} entry {number}, without creating it twice" in retried.stdout

    # Asked again: no run, the same instruction, not done.
    again = typed(project, RETRY)
    assert again.returncode == 1 and "Retrying" not in again.stdout
    assert f"In Basware, send invoice {INVOICE} to transfer again" in again.stdout
    assert f"from batch {batch} entry {number}, without creating it twice" in again.stdout

    assert typed(project, RETRANSFER).returncode == 0
    assert invoice(fresh_sandbox)["processingStatus"] == "WaitingForTransfer"
    run = typed(project, RUN)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(in_sage(fresh_sandbox, invoice_id)) == 1  # found by BWINVID, not created
    answered = invoice(fresh_sandbox)
    assert answered["processingStatus"] == "Transferred"
    assert (answered["voucherNumber1"], answered["voucherNumber2"]) == (batch, number)
    assert typed(project, RETRY).returncode == 0


def test_basware_retransfer_after_the_fix_is_created_once(fresh_sandbox: Sandbox,
                                                          tmp_path: Path) -> None:
    project, invoice_id = setup_project(fresh_sandbox, tmp_path)
    assert typed(project, CREATE_ACCOUNT).returncode == 0
    assert typed(project, RETRANSFER).returncode == 0
    run = typed(project, RUN)
    assert run.returncode == 0, run.stderr[-3000:]
    (entry,) = in_sage(fresh_sandbox, invoice_id)
    answered = invoice(fresh_sandbox)
    assert answered["processingStatus"] == "Transferred"
    assert (answered["voucherNumber1"], answered["voucherNumber2"]) == (
        str(entry["batch"]["BatchNumber"]), str(entry["EntryNumber"]))
    assert typed(project, RUN).returncode == 0
    assert len(in_sage(fresh_sandbox, invoice_id)) == 1


def p2p_outcomes(sandbox: Sandbox, code: str) -> list[tuple[str, list[str]]]:
    """Every outcome P2P gave the vendor `code`, oldest first, with its errors."""
    return [(item["status"], [error["message"] for error in item["errors"]])
            for entry in basware_tenant(sandbox)["request_status"]
            if entry["entityType"] == "Vendor"
            for system in entry["systems"] for item in system["items"]
            if item["externalCode"] == code]


def test_refused_vendors_are_read_again_from_sage(fresh_sandbox: Sandbox,
                                                  tmp_path: Path) -> None:
    """SAMLTD/1610's payment term N90 fixed in Sage (N30): read again by its key and sent,
    P2P takes it. SAMLTD/1600's currency activated in P2P alone: its identical payload is not
    sent again (Basware would answer NotProcessed), and the retry says what to do. Nothing
    else is read or sent, and the bookmarks stay."""
    project = Project.create(fresh_sandbox, tmp_path)
    ran = typed(project, "ml-connector run master-data")
    assert ran.returncode == 0, ran.stderr[-3000:]
    state_before = project.state("master-data")
    sage = fresh_sandbox.sage300.base_url
    fixed = requests.patch(f"{sage}/Sage300WebApi/v1.0/-/SAMLTD/AP/APVendors('1610')",
                           json={"Terms": "N30"}, auth=("WEBAPI", "SANDBOX-PASS1"), timeout=30)
    assert fixed.status_code < 300, fixed.text
    requests.patch(f"{fresh_sandbox.basware.base_url}/_sandbox/settings",
                   json={"active_currencies": ["USD", "CAD", "EUR"]},
                   timeout=10).raise_for_status()
    posts_since = requests_served(fresh_sandbox.basware.base_url)

    retried = typed(project, "ml-connector retry SAMLTD/1610")
    assert retried.returncode == 0, retried.stdout + retried.stderr[-3000:]
    assert "vendor SAMLTD/1610: created in Basware" in retried.stdout \
        or "vendor SAMLTD/1610: updated in Basware" in retried.stdout, retried.stdout
    assert p2p_outcomes(fresh_sandbox, "SAMLTD-1610")[-1] == ("Success", [])
    # One vendor POST, holding only the vendor fixed in Sage.
    posted = _vendor_posts(fresh_sandbox, posts_since)
    assert [[v["externalCode"] for v in post] for post in posted] == [["SAMLTD-1610"]]

    posts_since = requests_served(fresh_sandbox.basware.base_url)
    p2p_fixed = typed(project, "ml-connector retry SAMLTD/1600")
    assert p2p_fixed.returncode == 1, p2p_fixed.stdout + p2p_fixed.stderr[-3000:]
    assert "vendor SAMLTD/1600: refused again" in p2p_fixed.stdout
    assert "needs the record changed in Sage 300" in p2p_fixed.stdout
    assert _vendor_posts(fresh_sandbox, posts_since) == []
    # Neither retry moved a bookmark.
    assert _bookmarks(state_before)
    assert _bookmarks(project.state("master-data")) == _bookmarks(state_before)

    again = typed(project, "ml-connector retry SAMLTD/1610")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout

    # A PO is read again by its key, with its lines (refused again here: unchanged in Sage).
    since = requests_served(fresh_sandbox.sage300.base_url)
    order = typed(project, "ml-connector retry SAMLTD/10161")
    assert order.returncode == 1, order.stdout + order.stderr[-3000:]
    assert "PO SAMLTD/10161: refused again" in order.stdout
    reads = [entry for entry in request_log(fresh_sandbox.sage300.base_url, since)
             if entry["path"].endswith("/PO/POPurchaseOrders")]
    assert len(reads) == 1 and "PurchaseOrderSequenceKey%20eq%2010161" in reads[0]["query"] \
        and "SAMLTD" in reads[0]["path"], reads


def _vendor_posts(sandbox: Sandbox, since: int) -> list[list[dict[str, Any]]]:
    return [entry["body"] for entry in request_log(sandbox.basware.base_url, since)
            if entry["method"] == "POST" and entry["path"] == "/v1/vendors"]


def _bookmarks(state: str) -> Any:
    return json.loads(state or "{}").get("singer_state", {}).get("bookmarks")


def _served(sandbox: Sandbox) -> tuple[int, int]:
    """Requests each simulator served so far (a command that runs nothing adds none)."""
    return (requests_served(sandbox.sage300.base_url),
            requests_served(sandbox.basware.base_url))


pytestmark = pytest.mark.skipif(os.name != "posix", reason="ml-connector run needs flock")
