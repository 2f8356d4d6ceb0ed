"""End to end: what Sage 300 users delete reaches Basware inactive or closed, once
(`meltano run master-data` against both simulators on free ports, as scheduled).

One of each kind: a GL account and a cost center (read whole every run: ACTIVATE_VERSION), a
payment term (likewise), a vendor (a keys-only list, sent because the vendor count dropped),
a line removed from an open PO (the PO is read again with its lines: lineKeys). Asserted in
Basware's state, in the requests it received, in the ledger and in `ml-connector audit
trace`; a second run sends nothing more, and costs one keys-only read per company more than
before deletions were mirrored; what comes back in Sage is sent active again.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import Project, basware_tenant, request_log

from ml_connector_core.ledger import Action, Ledger
from mlc_sandbox.data import SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox

ML_CONNECTOR = str(Path(sys.executable).with_name("ml-connector"))
#: What the Sage users delete, and where each is in Basware: (endpoint, externalCode).
ACCOUNT = ("accounts", "SAMINC-1200000")  # no PO line uses it
COST_CENTER = ("costCenters", "SAMINC-900")  # with its accounts, inactive already:
INACTIVE_ALREADY = [("accounts", "SAMINC-6100900"), ("accounts", "SAMINC-6600900")]
TERM = ("paymentTerms", "SAMINC-COD")  # no vendor uses it
VENDOR = ("vendors", "SAMINC-9990")  # created by mistake, no documents: Sage lets it go
LINE = ("matchingOrderLines", "SAMINC-PO100001-4000")
GONE = [ACCOUNT, COST_CENTER, TERM, VENDOR, LINE]


@pytest.fixture
def project(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    return Project.create(fresh_sandbox, tmp_path)


class Sage:
    """What a Sage 300 user does, over the Web API (the admin touch for PO lines)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.root = sandbox.sage300.base_url
        self.api = f"{self.root}/Sage300WebApi/v1.0/-/SAMINC"
        self.http = requests.Session()
        self.http.auth = (SAGE_USER, SAGE_PASSWORD.upper())
        self.http.headers["Content-Type"] = "application/json"

    def get(self, path: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api}/{path}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, resource: str, body: dict[str, Any]) -> None:
        response = self.http.post(f"{self.api}/{resource}", json=body, timeout=30)
        assert response.status_code == 201, response.text

    def delete(self, path: str) -> None:
        response = self.http.delete(f"{self.api}/{path}", timeout=30)
        assert response.status_code == 204, response.text

    def set_lines(self, lines: list[dict[str, Any]]) -> None:
        response = requests.post(f"{self.root}/_sandbox/touch", timeout=30, json={
            "company": "SAMINC", "resource": "PO/POPurchaseOrders", "key": 10001,
            "changes": {"PurchaseOrderLines": lines}})
        assert response.status_code == 200, response.text


def held(sandbox: Sandbox) -> dict[tuple[str, str], dict[str, Any]]:
    """Basware's records of every kind this test deletes, by (endpoint, externalCode)."""
    data = basware_tenant(sandbox)["master_data"]
    return {(endpoint, record["externalCode"]): record
            for endpoint, records in data.items() for record in records}


def is_active(endpoint: str, record: dict[str, Any]) -> bool:
    if endpoint == "vendors":
        return record["processingStatus"]["active"]
    if endpoint == "matchingOrderLines":
        return not record["isClosed"]
    (company,) = record["companies"]
    return company["active"]


def posts(sandbox: Sandbox) -> list[tuple[str, str]]:
    return sorted((r["path"].removeprefix("/v1/"), body["externalCode"])
                  for r in request_log(sandbox.basware.base_url)
                  if r["method"] == "POST" and r["path"] != "/v1/tokens"
                  for body in r["body"])


def clear_logs(sandbox: Sandbox) -> None:
    for server in (sandbox.sage300, sandbox.basware):
        requests.delete(f"{server.base_url}/_sandbox/requests", timeout=30).raise_for_status()


def sage_reads(sandbox: Sandbox) -> tuple[list[str], int]:
    """The GETs of this run (path and query), and its $metadata GETs."""
    gets = [r for r in request_log(sandbox.sage300.base_url) if r["method"] == "GET"]
    metadata = [r for r in gets if r["path"].endswith("$metadata")]
    return [f"{r['path']}?{r['query']}" for r in gets if r not in metadata], len(metadata)


def test_deletions_in_sage_reach_basware_inactive_once(fresh_sandbox: Sandbox,
                                                       project: Project) -> None:
    sage = Sage(fresh_sandbox)
    sage.create("AP/APVendors", {"VendorNumber": "9990", "VendorName": "Entered By Mistake"})
    lines = sage.get("PO/POPurchaseOrders(10001)")["PurchaseOrderLines"]
    account = sage.get("GL/GLAccounts('1200000')")

    first = project.run("master-data")
    assert first.ok, first.output[-5000:]
    before = held(fresh_sandbox)
    for kind in GONE:
        assert is_active(kind[0], before[kind]), kind  # in Basware, active or open
    for kind in INACTIVE_ALREADY:
        assert not is_active(kind[0], before[kind]), kind

    # -- Sage users delete one of each kind -----------------------------------------------
    sage.delete("GL/GLAccounts('1200000')")
    sage.delete("GL/GLAccounts('6100900')")  # the discontinued department: its accounts,
    sage.delete("GL/GLAccounts('6600900')")  # inactive already, and its cost center
    sage.delete("GL/GLSegmentCodes(SegmentNumber='000002',SegmentCodeKey='900')")
    sage.delete("AP/APTerms('COD')")
    sage.delete("AP/APVendors('9990')")
    sage.set_lines([line for line in lines if line["LineNumber"] != 4000])
    clear_logs(fresh_sandbox)

    second = project.run("master-data")

    assert second.ok, second.output[-5000:]
    # Exactly those records were sent, each once, and Basware holds them switched off with
    # everything else as it was; what Basware has inactive already is not sent again.
    assert posts(fresh_sandbox) == sorted(GONE)
    after = held(fresh_sandbox)
    for endpoint, code in GONE:
        assert not is_active(endpoint, after[(endpoint, code)]), code
        unchanged = {k: v for k, v in before[(endpoint, code)].items()
                     if k not in ("companies", "processingStatus", "isClosed", "lastUpdated")}
        assert {k: after[(endpoint, code)][k] for k in unchanged} == unchanged, code
    still = [k for k in before if k not in GONE and k[0] in ("accounts", "costCenters",
                                                              "paymentTerms", "vendors")]
    assert [k for k in still if before[k] != after[k]] == []
    # The ledger: each one deactivated, with the reason, in the run's summary line too.
    sources = {ACCOUNT: "SAMINC/1200000", COST_CENTER: "SAMINC/000002/900",
               TERM: "SAMINC/COD", VENDOR: "SAMINC/9990", LINE: "SAMINC/10001/4000"}
    with Ledger.open(project.ledger_url) as ledger:
        for kind, source in sources.items():
            latest = [e for e in ledger.trace(source) if e.plugin == "target-basware"][-1]
            assert (latest.action, latest.target_key) == (Action.DEACTIVATED, kind[1]), kind
            assert ("removed from order SAMINC-PO100001" if kind == LINE
                    else "deleted in the source") in latest.error
        assert Action.DEACTIVATED not in {e.action for e in ledger.trace("SAMINC/6100900")}
    assert "5 deactivated" in second.output
    trace = subprocess.run([ML_CONNECTOR, "audit", "trace", "SAMINC/10001/4000"],
                           env=project.env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert trace.returncode == 0, trace.stderr
    assert "deactivated" in trace.stdout and "removed from order" in trace.stdout

    # -- nothing more: no POST, and the Sage reads of an unchanged run ---------------------
    clear_logs(fresh_sandbox)
    third = project.run("master-data")

    assert third.ok, third.output[-5000:]
    assert posts(fresh_sandbox) == []
    reads, metadata = sage_reads(fresh_sandbox)
    # One per stream and company (7 x 2), plus the vendor count (the first keys-only page)
    # and tax_codes' authority names and purchase rates of each company; and the install
    # check's $metadata, one per module.
    assert len(reads) == len(set(reads)) == 20, reads
    assert sum("$select=VendorNumber&" in r for r in reads) == 2
    assert metadata == 4  # AP, GL, PO, TX

    # -- back in Sage: sent active again ------------------------------------------------------
    sage.create("GL/GLAccounts", {k: v for k, v in account.items()
                                  if not k.startswith("@") and k != "DateCreated"})
    sage.set_lines(copy.deepcopy(lines))
    clear_logs(fresh_sandbox)
    fourth = project.run("master-data")

    assert fourth.ok, fourth.output[-5000:]
    assert posts(fresh_sandbox) == sorted([ACCOUNT, LINE])
    again = held(fresh_sandbox)
    assert is_active(ACCOUNT[0], again[ACCOUNT]) and is_active(LINE[0], again[LINE])
    assert not is_active(VENDOR[0], again[VENDOR])  # still deleted in Sage
