"""Payment status, Sage 300 -> Basware: `meltano run payments` (tap-sage300's ap_payments ->
target-basware's paymentResponses) against both simulators over HTTP.

The invoices job creates the AP batches and answers Basware (Transferred); the test posts a
connector batch in Sage (APPostInvoices, as the AP team would) and records payments against
its documents (the Sage simulator's admin `pay`), then runs the payments job. What must hold:
- a full payment: one paymentResponse, Basware's invoice Paid with paidTotal = grossSum;
- a partial payment, then the rest: two responses, cumulative paidTotal, Paid only after;
- an unchanged re-run sends nothing;
- a response whose answer is lost (the connection dropped after Basware stored it) is
  looked up, not sent twice;
- `audit trace <invoice number>` shows the payment responses with the invoice.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e import (
    Project,
    basware_tenant,
    connector_documents,
    pay,
    post_batch,
    request_log,
    requests_served,
    set_faults,
)

from mlc_sandbox.serve import Sandbox

CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "ml-connector"
RESPONSES = "/paymentResponses"


@pytest.fixture
def paid(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    """A project whose invoices job ran: every good invoice in Sage and Transferred."""
    project = Project.create(fresh_sandbox, tmp_path)
    assert project.run("invoices").ok
    return project


def invoices(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {i["invoiceId"]: i for i in basware_tenant(sandbox)["invoices"]}


def payment_posts(sandbox: Sandbox, since: int) -> list[dict[str, Any]]:
    return [r for r in request_log(sandbox.basware.base_url, since)
            if r["method"] == "POST" and r["path"].endswith(RESPONSES)]


def test_full_and_partial_payments_reach_basware_once(paid: Project) -> None:
    sandbox = paid.sandbox
    documents = [d for d in connector_documents(sandbox) if d["company"] == "SAMINC"]
    full, partial = documents[0], next(d for d in documents if d["batch"] == documents[0]["batch"]
                                       and d is not documents[0])
    post_batch(sandbox, full["company"], full["batch"])
    pay(sandbox, full, check_number="CHK-100", date="2026-11-02")
    half = round(partial["total"] / 2, 2)
    pay(sandbox, partial, amount=half, check_number="CHK-101")

    before = requests_served(sandbox.basware.base_url)
    run = paid.run("payments")
    assert run.ok, run.output[-3000:]
    assert "2 POST(s) to Basware" in run.output  # the run summary counts the responses
    now = invoices(sandbox)
    paid_in_full = now[full["invoice_id"]]
    assert paid_in_full["processingStatus"] == "Paid"
    assert paid_in_full["paidTotal"] == pytest.approx(paid_in_full["grossSum"])
    assert paid_in_full["paidTotal"] == pytest.approx(full["total"])
    (response,) = paid_in_full["paymentResponses"]
    assert (response["checkNumber"], response["paymentNumber"], response["success"]) == (
        "CHK-100", "1", True)
    assert response["paymentDate"].startswith("2026-11-02")
    half_paid = now[partial["invoice_id"]]
    assert half_paid["processingStatus"] == "Transferred"
    assert [r["paidTotal"] for r in half_paid["paymentResponses"]] == [half]
    assert len(payment_posts(sandbox, before)) == 2
    untouched = [i for i in now.values() if i["invoiceId"] not in
                 (full["invoice_id"], partial["invoice_id"])]
    assert all(not i.get("paymentResponses") for i in untouched)

    # Unchanged in Sage: the re-run reads the documents again and sends nothing.
    before = requests_served(sandbox.basware.base_url)
    assert paid.run("payments").ok
    assert payment_posts(sandbox, before) == []

    # The rest of the partial payment: a second response, cumulative, with a new code.
    pay(sandbox, partial, check_number="CHK-102")
    assert paid.run("payments").ok
    settled = invoices(sandbox)[partial["invoice_id"]]
    assert settled["processingStatus"] == "Paid"
    history = settled["paymentResponses"]
    assert [r["paidTotal"] for r in history] == [half, pytest.approx(partial["total"])]
    assert [r["checkNumber"] for r in history] == ["CHK-101", "CHK-102"]
    assert history[0]["externalCode"] != history[1]["externalCode"]

    # The AP team traces the invoice: its payment responses are in its history.
    number = settled["invoiceNumber"]
    trace = subprocess.run([str(CLI), "audit", "trace", number], cwd=paid.root, env=paid.env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert trace.returncode == 0, trace.stderr
    assert trace.stdout.count("payment_responses") >= 2, trace.stdout


def test_a_lost_payment_answer_is_looked_up_not_sent_twice(paid: Project) -> None:
    sandbox = paid.sandbox
    document = connector_documents(sandbox)[0]
    post_batch(sandbox, document["company"], document["batch"])
    pay(sandbox, document)
    # Basware stores the response, then the connection drops before the answer.
    set_faults(sandbox, None, {"schedule": [
        {"nth": 1, "fault": "drop_after", "method": "POST", "path": f"{RESPONSES}$"}]})
    before = requests_served(sandbox.basware.base_url)
    run = paid.run("payments")
    set_faults(sandbox, None, None)
    assert run.ok, run.output[-3000:]
    invoice = invoices(sandbox)[document["invoice_id"]]
    assert invoice["processingStatus"] == "Paid"
    assert len(invoice["paymentResponses"]) == 1  # stored once, whatever was re-sent
    assert len(payment_posts(sandbox, before)) >= 1
    trace = subprocess.run([str(CLI), "audit", "trace", invoice["invoiceNumber"]],
                           cwd=paid.root, env=paid.env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert "answer lost; found in Basware" in trace.stdout, trace.stdout
    before = requests_served(sandbox.basware.base_url)
    assert paid.run("payments").ok
    assert payment_posts(sandbox, before) == []
    assert len(invoices(sandbox)[document["invoice_id"]]["paymentResponses"]) == 1
