"""The demo as a user meets it: `make demo-serve`'s story, then README's "Fix the demo's failed
invoice yourself" typed as written in a second shell, checked in both simulators.

The story shows what issue 18 brings to Basware, each checked against what the simulators
hold: goods receipts on their matching order lines (one received in part, one cancelled), the
tax codes `GET /v1/taxCodes` lists, and an invoice the demo pays in Sage 300 reaching Basware
once as a payment response (Paid). The README's payments run then sends INV-18825's payment
and nothing for the invoice the demo paid.

The demo runs on free ports (`--sage-port 0 --basware-port 0`): its fixed ones may be taken
on a machine where someone runs `make demo`; demo.env carries the ports to the commands.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
SECTION = "### Fix the demo's failed invoice yourself"
INVOICE = "INV-18825"
REASON = "GL account 6999-200 does not exist in Sage 300 company SAMINC"
TIMEOUT = 600  # a bound for a hung demo, never a pass/fail criterion


def readme_block(section: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(section)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no bash block under {section!r}"
    return match.group(1)


class Demo:
    """`python -m ml_connector.demo --serve` (what `make demo-serve` runs, on free ports), its
    output kept."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MELTANO_", "ML_CONNECTOR_", "TAP_", "TARGET_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ml_connector.demo", "--serve", "--sage-port", "0",
             "--basware-port", "0"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.rstrip() == "   Serving.":
                self.serving.set()
        self.serving.set()  # ended: the caller sees why in the output

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=60)


@pytest.fixture
def demo() -> Iterator[Demo]:
    running = Demo()
    try:
        yield running
    finally:
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(timeout=60)


def basware_invoice_numbered(info: dict[str, Any], number: str) -> dict[str, Any]:
    state = requests.get(f"{info['basware']['admin_url']}/state", timeout=60).json()
    (found,) = [i for tenant in state["tenants"].values() for i in tenant["invoices"]
                if i["invoiceNumber"] == number]
    return found


def basware_invoice(info: dict[str, Any]) -> dict[str, Any]:
    return basware_invoice_numbered(info, INVOICE)


def sage_entries_of(info: dict[str, Any], invoice_id: str) -> list[dict[str, Any]]:
    state = requests.get(f"{info['sage300']['admin_url']}/state", timeout=60).json()
    return [entry for company in state["companies"].values()
            for batch in company.get("AP/APInvoiceBatches", [])
            for entry in batch.get("Invoices", []) if invoice_id in json.dumps(entry)]


def basware_state(info: dict[str, Any]) -> dict[str, Any]:
    state = requests.get(f"{info['basware']['admin_url']}/state", timeout=60).json()
    (tenant,) = state["tenants"].values()
    return tenant


def records(collection: Any) -> list[dict[str, Any]]:
    return list(collection.values()) if isinstance(collection, dict) else list(collection)


def expected_receipts(info: dict[str, Any]) -> str:
    """The demo's goods receipt line, from the receipts in Sage 300 and the order lines as
    Basware holds them."""
    sage = requests.get(f"{info['sage300']['admin_url']}/state", timeout=60).json()
    kept, cancelled = set(), set()
    for company, tables in sage["companies"].items():
        for receipt in tables["PO/POGetReceipts"]:
            for line in receipt["ReceiptLine2s"]:
                code = f"{company}-{receipt['ReceiptNumber']}-{line['LineNumber']}"
                (cancelled if receipt["Cancelled"] == "Yes" else kept).add(code)
    lines = [line for line in records(basware_state(info)["master_data"]["matchingOrderLines"])
             if line.get("goodsReceipts")]
    on_lines = {r["externalCode"] for line in lines for r in line["goodsReceipts"]}
    assert on_lines == kept | cancelled | {f"{code}-C" for code in cancelled}
    partial = sum(0 < sum(r["quantity"] for r in line["goodsReceipts"]
                          if r["externalCode"] in kept) < line["quantity"] for line in lines)
    assert partial >= 1 and cancelled
    return (f"Basware goods receipts: {len(kept)} on {len(lines)} matching order lines "
            f"({partial} partially received, {len(cancelled)} cancelled)")


def payment_posts(info: dict[str, Any], since: int) -> list[str]:
    log = requests.get(f"{info['basware']['admin_url']}/requests", params={"since": since},
                       timeout=60).json()["requests"]
    return [r["path"] for r in log if r["method"] == "POST"
            and r["path"].endswith("/paymentResponses")]


def requests_served(info: dict[str, Any]) -> int:
    return int(requests.get(f"{info['basware']['admin_url']}/requests",
                            params={"since": 2**62}, timeout=60).json()["last_seq"])


def test_the_demo_ends_on_its_failure_and_the_readme_fixes_it(demo: Demo) -> None:
    assert demo.serving.wait(TIMEOUT) and demo.process.poll() is None, demo.output[-4000:]
    story = demo.output
    info = json.loads((ROOT / "output" / "demo-latest" / "sandbox.json").read_text())
    # Master data brought the goods receipts and the tax codes, as Basware holds them.
    master = story[story.index("== Run 1: master data"):story.index("== Run 2:")]
    assert expected_receipts(info) in master
    assert "(partial)" in master
    tax_codes = len(records(basware_state(info)["master_data"].get("taxCodes", [])))
    assert f"Basware tax codes (GET /v1/taxCodes): {tax_codes}\n" in master
    # The AP team paid one invoice the connector created; Basware shows it Paid, answered once.
    paying = story[story.index("== In Sage 300, the AP team"):]
    (paid_number,) = re.findall(r"invoice (\S+) of vendor \S+ paid", paying)
    paid = next(i for i in records(basware_state(info)["invoices"])
                if i["invoiceNumber"] == paid_number)
    assert paid["processingStatus"] == "Paid"
    (response,) = paid["paymentResponses"]
    assert response["success"] is True and paid["paidTotal"] == pytest.approx(paid["grossSum"])
    assert f"Basware invoice {paid_number}: Paid, paid {paid['paidTotal']:.2f} of " \
           f"{paid['grossSum']:.2f}" in story[story.index("== Run 3: payment status"):]
    # The demo ends on status: the failure, its reason and the command that fixes it.
    stuck = story[story.index("== Is anything stuck?"):]
    assert f"why: {REASON}" in stuck and f"ml-connector retry {INVOICE}" in stuck
    before = basware_invoice(info)
    assert before["processingStatus"] == "TransferFailed"
    assert sage_entries_of(info, before["invoiceId"]) == []

    # README's second terminal, typed as written (one shell: `set -a; . demo.env` carries on).
    served = requests_served(info)
    typed = subprocess.run(["bash", "-e", "-c", readme_block(SECTION)], cwd=ROOT,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith(("MELTANO_", "ML_CONNECTOR_"))},
                           capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert typed.returncode == 0, typed.stdout[-4000:] + typed.stderr[-4000:]
    assert REASON in typed.stdout  # status, before the fix
    after = basware_invoice(info)
    (entry,) = sage_entries_of(info, after["invoiceId"])  # created once
    # Paid in Sage once created there: Basware heard it once, and nothing more of the
    # invoice the demo paid (its payment state unchanged).
    assert after["processingStatus"] == "Paid"
    assert after["paidTotal"] == pytest.approx(after["grossSum"])
    assert len(after["paymentResponses"]) == 1
    assert payment_posts(info, served) == [
        f"/v1/accountingDocuments/{after['invoiceId']}/paymentResponses"]
    assert len(basware_invoice_numbered(info, paid_number)["paymentResponses"]) == 1
    response = after["transferResponses"][-1]
    assert response["success"] is True
    assert [response.get("voucherNumber1"), response.get("voucherNumber2")] == [
        str(entry["BatchNumber"]), str(entry["EntryNumber"])]
    # What the two state lines show: Transferred after the retry, Paid after the payment.
    assert typed.stdout.index('"processingStatus": "Transferred"') < \
        typed.stdout.index('"processingStatus": "Paid"')
    assert demo.stop() == 0, demo.output[-2000:]
