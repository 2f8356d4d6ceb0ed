"""Runs against an install that does not offer every field the connector uses by default.

The Sage simulator's ``version: older`` (sage300_schema.py, "Versions") lacks the vendors' fax
number and web site and the invoice lines' description, and calls the PO line's expense
account ``GLExpenseAccount``, and predates PO/POGetReceipts (2022.2). Both jobs must stop
before they write anything, naming what is missing and its fix; once the fixes the messages
name are typed as written (`meltano config set ... field_names`, `meltano --no-environment
select ... --exclude`, `... --rm po_receipts '*'`), both jobs end exactly where runs against a
current install end, but for the goods receipts such an install cannot give.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import requests
from e2e import SEQUENCE, Project, Snapshot, differences, project_copy, request_log, snapshot

from mlc_sandbox.serve import Sandbox

#: The name the fix leaves to the installer ("<its name>"): the one the message offers.
INSTALLS_NAME = "GLExpenseAccount"


def writes(base_url: str, since: int = 0) -> list[str]:
    """Every request that could change a record (token requests aside)."""
    return [f"{r['method']} {r['path']}" for r in request_log(base_url, since)
            if r["method"] != "GET" and not r["path"].endswith("/tokens")]


def fixes(output: str) -> list[list[str]]:
    """The commands a failed run's messages tell the installer to type, as argument lists:
    `meltano --no-environment select ...` quoted in the message, and `meltano config set <plugin> field_names
    <json>` for "set <plugin>'s field_names to {...}" with the install's name filled in."""
    commands = [shlex.split(command) for command in
                dict.fromkeys(re.findall(r"`(meltano --no-environment select tap-sage300 "
                                         r"(?:--exclude vendors \w+|--rm po_receipts '\*'))`",
                                         output))]
    for plugin, setting in dict.fromkeys(re.findall(
            r"set ([\w-]+)'s field_names to (\{\"[^}]*ExpenseAccount\": \"<its name>\"\})",
            output)):
        commands.append(["meltano", "config", "set", plugin, "field_names",
                         setting.replace("<its name>", INSTALLS_NAME)])
    return commands


def test_an_older_install_stops_both_jobs_before_they_write_until_its_names_are_set(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    sage, basware = fresh_sandbox.sage300.base_url, fresh_sandbox.basware.base_url
    requests.patch(f"{sage}/_sandbox/settings", json={"version": "older"},
                   timeout=10).raise_for_status()
    # The fixes change meltano.yml: a copy of the project.
    project = Project.create(fresh_sandbox, tmp_path, root=project_copy(tmp_path))

    master = project.run("master-data", name="older-master-data")
    assert not master.ok
    for missing in ("vendors: AP/APVendors has no property FaxNumber",
                    "has no property WebSite",
                    "PurchaseOrderLines has no property ExpenseAccount",
                    f"(similar names in this install: {INSTALLS_NAME})",
                    # PO receipts are read through PO/POGetReceipts since 2022.2 only.
                    "this install has no entity set PO/POGetReceipts",
                    "nothing was read or written"):
        assert missing in master.output, master.output[-3000:]
    assert writes(basware) == []
    # Sage was asked for its $metadata and for nothing else.
    assert {r["path"].rsplit("/", 1)[-1] for r in request_log(sage)} == {"$metadata"}

    invoices = project.run("invoices", name="older-invoices")
    assert not invoices.ok
    assert ("target-sage300, PO look-up (coding from the PO line)" in invoices.output
            and "has no property ExpenseAccount" in invoices.output)
    assert writes(sage) == []

    # What the messages tell the installer to type, typed as written.
    commands = fixes(master.output + invoices.output)
    assert [command[:3] for command in commands] == [
        ["meltano", "--no-environment", "select"], ["meltano", "--no-environment", "select"],
        ["meltano", "--no-environment", "select"], ["meltano", "config", "set"],
        ["meltano", "config", "set"]], commands
    for command in commands:
        done = project.meltano(*command[1:])
        assert done.returncode == 0, done.stderr[-2000:]
    for job in SEQUENCE:
        run = project.run(job, name=f"mapped-{job}")
        assert run.ok, run.output[-4000:]
    assert "DistributionDescription in this install's $metadata. The connector goes on " \
           "without it" in project.runs[-1].output
    # The same as a current install, but for the goods receipts an install before 2022.2
    # cannot offer (po_receipts turned off): the order lines arrive without them.
    lines = baseline.master_data["matchingOrderLines"]
    without_receipts = dataclasses.replace(baseline, master_data={
        **baseline.master_data, "matchingOrderLines": {
            code: {k: v for k, v in line.items() if k != "goodsReceipts"}
            for code, line in lines.items()}})
    assert any("goodsReceipts" in line for line in lines.values())
    assert differences(without_receipts, snapshot(fresh_sandbox, project.ledger_url)) == []
    state = requests.get(f"{sage}/_sandbox/state", timeout=60).json()
    details = [detail for company in state["companies"].values()
               for batch in company["AP/APInvoiceBatches"] for entry in batch["Invoices"]
               for detail in entry["InvoiceDetails"]]
    assert details and all(not detail.get("DistributionDescription") for detail in details)
