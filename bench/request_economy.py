"""Request economy: requests each `meltano run master-data` makes, against the least possible.

Least possible, per the issue:
- Sage: per stream and company, ceil(records / Sage's PageSize) pages (at least one request
  to learn there is nothing); PO lines come inline with their POs and cost nothing.
- Deletions (issue 16): the streams read whole and the PO lines say them at no cost; a
  deleted vendor is never read again by the incremental read, so each run asks each company's
  vendor count (one keys-only request, vendor_keys' first page) and only when the count says a
  vendor may be gone, every vendor number: ceil(vendors / PageSize) keys-only pages per
  company, the first one being that count. A run that read every vendor anyway (the first,
  --full-refresh) has the numbers already.
- Basware: per endpoint, ceil(records sent / the endpoint's POST limit) POSTs; none when
  nothing changed. Token calls: at most one per run. requestStatus polls are shown, not
  counted (how many depend on Basware's processing time, not on the connector).

Runs, in order, on the large data: the first full sync; a re-run with nothing changed
(incremental: only the boundary day is read again); one vendor changed in Sage; one vendor
deleted in Sage (sent inactive: one POST); a --full-refresh re-run with nothing changed
(every record read again, none sent).

    .venv/bin/python bench/request_economy.py                 # large data, Sage +250 ms, Basware +300 ms
    .venv/bin/python bench/request_economy.py --data 10000    # a vendor count instead
    .venv/bin/python bench/request_economy.py --sage-latency-ms 0 --basware-latency-ms 0  # loopback

Request counts do not depend on latency. With latency (the sandbox's `slow` fault on every
request, bench/latency.py), the runs' times are printed as the latency table: requests per
system, the sequential bound, the bound / C and the measured wall time; on loopback as
end_to_end.py's CPU table. `make bench` (run_all.py) runs it on loopback: its tables are the
minimum checks, and the latency figures come from end_to_end.py's latency mode.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import end_to_end
import latency
import requests
from _common import (
    COMPANIES,
    SAGE_PATH,
    MeltanoProject,
    Sandbox,
    ceil_div,
    say,
    table,
)
from sqlalchemy import func, select

from ml_connector_core.ledger import Ledger
from ml_connector_core.ledger._schema import entries, runs
from mlc_sandbox.basware_masterdata import ENDPOINTS
from mlc_sandbox.data import build_dataset
from mlc_sandbox.sage300 import DEFAULT_SETTINGS
from target_basware.sinks import SINKS

SAGE_PAGE = int(DEFAULT_SETTINGS["page_size"])  # the simulator's PageSize (web.config's default)
# tap-sage300 stream -> Sage resource, for job master-data (lines ride on the POs' pages).
RESOURCES = {"gl_accounts": "GL/GLAccounts", "cost_centers": "GL/GLSegmentCodes",
             "payment_terms": "AP/APTerms", "tax_codes": "TX/TXTaxGroups",
             "vendors": "AP/APVendors", "purchase_orders": "PO/POPurchaseOrders",
             "po_receipts": "PO/POGetReceipts"}
# Read whole once per company and run besides the streams: tax_codes' authority names and
# purchase rates (one small page each).
LOOKUPS = ("TX/TXTaxAuthorities", "TX/TXTaxRates")
COST_CENTER_SEGMENT = "000002"  # meltano.yml's cost_center_segment (2)
# Every run first checks the install's fields: one $metadata GET per module it reads.
METADATA_GETS = len({resource.split("/")[0] for resource in RESOURCES.values()})
# An incremental run asks each company's vendor count (vendor_keys' first keys-only page).
VENDOR_COUNT_GETS = len(COMPANIES)
ENDPOINT_OF = {name: sink.endpoint.rsplit("/", 1)[1] for name, sink in SINKS.items()}


def sage_records(data: str) -> dict[tuple[str, str], int]:
    """Records per (stream, company) that a full read returns: the simulator's own data."""
    sage = build_dataset(data, seed=0).sage
    counts = {}
    for company in COMPANIES:
        for stream, resource in RESOURCES.items():
            rows = sage[company][resource]
            if stream == "cost_centers":
                rows = [r for r in rows if r["SegmentNumber"] == COST_CENTER_SEGMENT]
            if stream == "tax_codes":
                rows = [r for r in rows if r["TransactionType"] == "Purchases"]
            counts[(stream, company)] = len(rows)
        for resource in LOOKUPS:
            counts[(resource, company)] = 1  # one page whatever the count: tiny tables
    return counts


def sage_gets(requests: Iterable[dict[str, Any]]) -> Counter[tuple[str, str]]:
    stream_of = {resource: stream for stream, resource in RESOURCES.items()}
    counts: Counter[tuple[str, str]] = Counter()
    for request in requests:
        path = request["path"]
        if request["method"] == "GET" and path.startswith(SAGE_PATH + "/"):
            company, module, resource = path[len(SAGE_PATH) + 1:].split("/")[:3]
            counts[(stream_of.get(f"{module}/{resource}", f"{module}/{resource}"), company)] += 1
    return counts


def basware_calls(requests: Iterable[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in requests:
        parts = request["path"].split("/")
        if len(parts) > 2 and parts[1] == "v1":
            counts[f"{request['method']} {parts[2]}"] += 1
    return counts


def records_sent(ledger_url: str) -> Counter[str]:
    """Records target-basware's latest run sent to Basware (an entry with our request id),
    per endpoint."""
    with Ledger.open(ledger_url) as ledger, ledger.engine.connect() as conn:
        run_id = conn.execute(select(runs.c.run_id).where(runs.c.plugin == "target-basware")
                              .order_by(runs.c.started_at.desc()).limit(1)).scalar()
        rows = conn.execute(
            select(entries.c.stream, func.count(entries.c.source_key.distinct()))
            .where(entries.c.run_id == run_id, entries.c.bw_request_id.is_not(None))
            .group_by(entries.c.stream))
        return Counter({ENDPOINT_OF[stream]: n for stream, n in rows})


class Economy:
    """One run's requests against the least possible, and its time (end_to_end.py)."""

    def __init__(self, sandbox: Sandbox, project: MeltanoProject, data: str = "large",
                 latency_ms: dict[str, int] | None = None) -> None:
        self.sandbox, self.project, self.data = sandbox, project, data
        self.latency_ms = latency_ms or {"sage300": 0, "basware": 0}

    def run(self, label: str, *args: str) -> dict[str, Any]:
        seqs = {system: self.sandbox.last_seq(system) for system in ("sage300", "basware")}
        say(f"pipeline: {label} ...")
        timing = end_to_end.measure(self.project, self.sandbox, label, *args)
        return {"sage": sage_gets(self.sandbox.requests_since("sage300", seqs["sage300"])),
                "basware": basware_calls(self.sandbox.requests_since("basware",
                                                                      seqs["basware"])),
                "sent": records_sent(self.project.ledger_url), "timing": timing,
                "latency": latency.LatencyRow(
                    label, self.data, latency.count_requests(self.sandbox, seqs),
                    float(timing[1]), self.latency_ms, latency.job_limits("master-data"))}


def minimum_posts(sent: Counter[str]) -> int:
    return sum(ceil_div(n, ENDPOINTS[endpoint].post_max) for endpoint, n in sent.items())


def main(data: str = "large", sage_ms: int = 0, basware_ms: int = 0) -> dict[str, bool]:
    """The economy runs on `data`; `sage_ms`/`basware_ms` added to every request (0:
    loopback, as `make bench` runs it)."""
    say(f"request economy: starting the sandbox with data {data} ...")
    expected = sage_records(data)
    full_minimum = sum(max(1, ceil_div(n, SAGE_PAGE)) for n in expected.values()) \
        + METADATA_GETS
    # One per stream and company, and the vendor counts.
    incremental_minimum = len(expected) + VENDOR_COUNT_GETS + METADATA_GETS
    # A vendor deleted: every company's vendor numbers, keys-only (one vendor fewer).
    deleted_minimum = len(expected) + METADATA_GETS + sum(
        max(1, ceil_div(n - (company == "SAMINC"), SAGE_PAGE))
        for (stream, company), n in expected.items() if stream == "vendors")
    with Sandbox(data) as sandbox, tempfile.TemporaryDirectory() as tmp:
        latency.set_latency(sandbox, sage_ms, basware_ms)
        economy = Economy(sandbox, MeltanoProject(sandbox, Path(tmp)), data,
                          {"sage300": sage_ms, "basware": basware_ms})
        runs: list[tuple[str, dict[str, Any], int, bool]] = []
        first = economy.run("first full sync", "run", "master-data")
        runs.append(("first full sync", first, full_minimum, True))
        label = "re-run, nothing changed"
        runs.append((label, economy.run(label, "run", "master-data"), incremental_minimum,
                     False))
        sandbox.admin("POST", "sage300", "touch", json={
            "company": "SAMINC", "resource": "AP/APVendors", "key": "V000500",
            "changes": {"VendorName": "Bulk vendor 500, renamed"}})
        label = "one vendor changed"
        runs.append((label, economy.run(label, "run", "master-data"), incremental_minimum,
                     True))
        sage = sandbox.info["sage300"]
        requests.delete(f"{sage['base_url']}/SAMINC/AP/APVendors('V000501')", timeout=600,
                        auth=(sage["username"], sage["password"].upper())).raise_for_status()
        label = "one vendor deleted"
        runs.append((label, economy.run(label, "run", "master-data"), deleted_minimum, True))
        label = "--full-refresh, nothing changed"
        runs.append((label, economy.run(label, "run", "--full-refresh", "master-data"),
                     full_minimum, False))

    rows, at_minimum = [], {}
    for label, counts, sage_minimum, may_post in runs:
        gets = sum(counts["sage"].values())
        calls = counts["basware"]
        posts = sum(n for call, n in calls.items()
                    if call.startswith("POST ") and call != "POST tokens")
        post_minimum = minimum_posts(counts["sent"]) if may_post else 0
        tokens = calls.get("POST tokens", 0)
        ok = gets == sage_minimum and posts == post_minimum and tokens <= 1
        at_minimum[label] = ok
        rows.append([label, gets, sage_minimum, posts, post_minimum,
                     sum(counts["sent"].values()), calls.get("GET requestStatus", 0),
                     tokens, "yes" if ok else "NO"])
    where = "large data" if data == "large" else f"data {data}"
    table(f"Request economy: meltano run master-data, {where}",
          ["run", "Sage GETs", "min", "Basware POSTs", "min", "records sent",
           "requestStatus GETs", "token calls", "at minimum"], rows,
          [f"Sage PageSize {SAGE_PAGE} (the web.config default; tap page_size 1000). "
           "Minimum Sage GETs: full read = sum over stream and company of "
           "max(1, ceil(records / PageSize)); incremental = one per stream and company "
           f"({len(RESOURCES)} streams x {len(COMPANIES)} companies) and each company's "
           "vendor count (vendor_keys' first keys-only page); a vendor deleted = one per "
           "stream and company and every company's vendor numbers, keys-only, max(1, "
           "ceil(vendors / PageSize)) pages each (the first is the count). Minimum POSTs = "
           "sum over endpoints of ceil(records sent / POST limit). Token calls: at most 1."])

    detail = []
    for (stream, company), n in sorted(expected.items()):
        detail.append([f"GET {RESOURCES.get(stream, stream)}", company, n,
                       first["sage"][(stream, company)], max(1, ceil_div(n, SAGE_PAGE))])
    for endpoint, n in sorted(first["sent"].items()):
        limit = ENDPOINTS[endpoint].post_max
        detail.append([f"POST /v1/{endpoint} (limit {limit})", "both", n,
                       first["basware"].get(f"POST {endpoint}", 0), ceil_div(n, limit)])
    table("Request economy, first full sync in detail",
          ["requests", "company", "records", "made", "minimum"], detail)
    if sage_ms or basware_ms:
        latency.latency_table(f"Latency: meltano run master-data, {where}",
                              [counts["latency"] for _, counts, _, _ in runs],
                              latency.JOB_PLUGINS["master-data"])
    else:
        end_to_end.print_table([counts["timing"] for _, counts, _, _ in runs])
    return at_minimum


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    latency.add_latency_args(parser)
    parser.add_argument("--data", default="large",
                        help="sandbox data: large (100,000 extra vendors) or a vendor count")
    args = parser.parse_args()
    main(args.data, args.sage_latency_ms, args.basware_latency_ms)
