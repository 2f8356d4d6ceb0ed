"""The same install pointed at another Basware tenant or another Sage 300 database (two
sandboxes on their own ports), with the same ledger and the same Meltano state.

What must hold (docs/decisions.md, "System identity"): a new tenant or database starts from
nothing and gets everything; nothing false is told to Basware; nothing is written twice to the
old one; switching back finds the old one as it was (exactly-once kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from e2e import Project, basware_tenant, duplicates, request_log, sandbox_get, snapshot

from mlc_sandbox.data import P2P_REFUSALS
from mlc_sandbox.serve import Sandbox, start_sandbox


@pytest.fixture
def first() -> Iterator[Sandbox]:
    """The systems the install starts with: simulators of this test's own (not the session's
    shared pair), so the request logs below hold only this test's requests."""
    running = start_sandbox(data="demo", seed=0)
    yield running
    running.stop()


@pytest.fixture
def other() -> Iterator[Sandbox]:
    """A second pair of simulators: another Basware tenant, another Sage 300 install."""
    running = start_sandbox(data="demo", seed=0)
    yield running
    running.stop()


def posts(base_url: str, since: int = 0) -> list[dict]:
    return [r for r in request_log(base_url, since) if r["method"] == "POST"
            and r["path"].startswith("/v1/")]


def date_filtered(request: dict) -> bool:
    """Whether a logged Sage GET read only what changed since a bookmark."""
    filters = parse_qs(request["query"]).get("$filter", [])
    return any("DateLastMaintained ge" in f for f in filters)


def last_seq(base_url: str) -> int:
    log = request_log(base_url)
    return max((r["seq"] for r in log), default=0)


def test_a_new_basware_tenant_gets_all_master_data_and_the_old_one_nothing_twice(
        first: Sandbox, other: Sandbox, tmp_path: Path) -> None:
    project = Project.create(first, tmp_path)
    assert project.run("master-data", name="tenant-a").ok
    delivered = snapshot(first).master_data
    assert sum(map(len, delivered.values())) > 1000

    project.env["TARGET_BASWARE_BASE_URL"] = other.basware.base_url
    mark = last_seq(first.basware.base_url)
    switched = project.run("master-data", name="tenant-b-reset")
    assert switched.ok, switched.output[-3000:]
    # The saved bookmarks describe tenant A: nothing goes to B in this run, and it says so.
    assert "NOT DELIVERED" in switched.output and "not delivered" in switched.output
    assert posts(other.basware.base_url) == []
    complete = project.run("master-data", name="tenant-b")
    assert complete.ok, complete.output[-3000:]
    assert snapshot(other).master_data == delivered  # everything, as A got it
    assert {key for key, status in snapshot(other).master_status.items()
            if status != "Success"} == set(P2P_REFUSALS)  # what P2P refuses, as in A
    assert posts(first.basware.base_url, mark) == []  # nothing sent twice to A

    # Back to A: its deliveries are in the ledger, so after the reset nothing is re-posted.
    project.env["TARGET_BASWARE_BASE_URL"] = first.basware.base_url
    mark = last_seq(first.basware.base_url)
    assert project.run("master-data", name="back-to-a-reset").ok
    back = project.run("master-data", name="back-to-a")
    assert back.ok, back.output[-3000:]
    assert "0 written" in back.output and posts(first.basware.base_url, mark) == []


def test_another_sage_database_starts_from_nothing(
        first: Sandbox, other: Sandbox, tmp_path: Path) -> None:
    """The invoice pipeline moved to another Sage 300 install and Basware tenant whose queue
    holds invoices with the same ids: they are created there (not "already in Sage" because
    the ledger saw them go to the first install), each answered with the batch and entry the
    new install holds; the first install gets nothing more."""
    project = Project.create(first, tmp_path)
    assert project.run("invoices", name="sage-a").ok
    before = snapshot(first).ap_invoices
    assert sum(map(len, before.values())) == 27

    project.env["TAP_BASWARE_BASE_URL"] = other.basware.base_url
    project.env["TARGET_SAGE300_BASE_URL"] = f"{other.sage300.base_url}/Sage300WebApi/v1.0/-"
    run = project.run("invoices", name="sage-b")
    assert run.ok, run.output[-3000:]
    assert "27 created, 1 rejected" in run.output and "already there" not in run.output

    assert snapshot(first).ap_invoices == before  # nothing twice in the first install
    moved = snapshot(other)
    assert duplicates(moved) == [] and sum(map(len, moved.ap_invoices.values())) == 27
    entries = {}
    for company, tables in sandbox_get(other.sage300.base_url, "state")["companies"].items():
        for batch in tables["AP/APInvoiceBatches"]:
            for entry in batch["Invoices"]:
                for optional in entry["InvoiceOptionalFields"]:
                    entries[optional["Value"]] = (company, batch["BatchNumber"],
                                                  entry["EntryNumber"])
    for invoice in basware_tenant(other)["invoices"]:
        last = invoice["transferResponses"][-1]
        if not last["success"]:
            continue
        # What Basware is told is what this Sage 300 install holds.
        company, batch, entry = entries[invoice["invoiceId"]]
        assert (str(last["voucherNumber1"]), str(last["voucherNumber2"])) == (str(batch),
                                                                              str(entry))
        assert f"company {company}, batch {batch} entry {entry}" in last["responseMessage"]


def test_another_sage_install_is_read_from_its_start(
        first: Sandbox, other: Sandbox, tmp_path: Path) -> None:
    """Bookmarks read from one Sage 300 install say nothing about another: tap-sage300 reads
    every stream of the new one from its start."""
    project = Project.create(first, tmp_path)
    assert project.run("master-data", name="sage-a").ok
    again = project.run("master-data", name="sage-a-again")
    assert again.ok
    filtered = [r for r in request_log(first.sage300.base_url)
                if "/AP/APVendors" in r["path"] and date_filtered(r)]
    assert filtered  # the re-run was incremental

    project.env["TAP_SAGE300_BASE_URL"] = f"{other.sage300.base_url}/Sage300WebApi/v1.0/-"
    moved = project.run("master-data", name="sage-b")
    assert moved.ok, moved.output[-3000:]
    assert "reading every stream from its start" in moved.output
    vendor_reads = [r for r in request_log(other.sage300.base_url)
                    if r["path"].endswith("/AP/APVendors")]
    assert vendor_reads and not any(date_filtered(r) for r in vendor_reads)
