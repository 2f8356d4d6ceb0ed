"""The demo as a user meets it: `make demo-serve`'s story, then README's "Fix the demo's failed
invoice yourself" typed as written in a second shell, checked in both simulators.

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


def basware_invoice(info: dict[str, Any]) -> dict[str, Any]:
    state = requests.get(f"{info['basware']['admin_url']}/state", timeout=60).json()
    (found,) = [i for tenant in state["tenants"].values() for i in tenant["invoices"]
                if i["invoiceNumber"] == INVOICE]
    return found


def sage_entries_of(info: dict[str, Any], invoice_id: str) -> list[dict[str, Any]]:
    state = requests.get(f"{info['sage300']['admin_url']}/state", timeout=60).json()
    return [entry for company in state["companies"].values()
            for batch in company.get("AP/APInvoiceBatches", [])
            for entry in batch.get("Invoices", []) if invoice_id in json.dumps(entry)]


def test_the_demo_ends_on_its_failure_and_the_readme_fixes_it(demo: Demo) -> None:
    assert demo.serving.wait(TIMEOUT) and demo.process.poll() is None, demo.output[-4000:]
    story = demo.output
    # The demo ends on status: the failure, its reason and the command that fixes it.
    stuck = story[story.index("== Is anything stuck?"):]
    assert f"why: {REASON}" in stuck and f"ml-connector retry {INVOICE}" in stuck
    info = json.loads((ROOT / "output" / "demo-latest" / "sandbox.json").read_text())
    before = basware_invoice(info)
    assert before["processingStatus"] == "TransferFailed"
    assert sage_entries_of(info, before["invoiceId"]) == []

    # README's second terminal, typed as written (one shell: `set -a; . demo.env` carries on).
    typed = subprocess.run(["bash", "-e", "-c", readme_block(SECTION)], cwd=ROOT,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith(("MELTANO_", "ML_CONNECTOR_"))},
                           capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert typed.returncode == 0, typed.stdout[-4000:] + typed.stderr[-4000:]
    assert REASON in typed.stdout  # status, before the fix
    after = basware_invoice(info)
    (entry,) = sage_entries_of(info, after["invoiceId"])  # created once
    assert after["processingStatus"] == "Transferred"
    response = after["transferResponses"][-1]
    assert response["success"] is True
    assert [response.get("voucherNumber1"), response.get("voucherNumber2")] == [
        str(entry["BatchNumber"]), str(entry["EntryNumber"])]
    assert '"processingStatus": "Transferred"' in typed.stdout  # what the last line shows
    assert demo.stop() == 0, demo.output[-2000:]
