"""Peer ratio: tap-sage300 against tap-rest-api-msdk (PyPI, a generic config-driven REST tap)
reading the same Sage 300 data from the simulator.

Both read vendors and purchase orders with their lines, both companies, large data (100,064
vendors, 20,320 POs with 100,809 lines), with the same `$select` (ours, taken from the
simulator's log of our warm-up run) and Sage's PageSize of 100, following `@odata.nextLink`.
The peer runs from its own venv (.venv-bench-peer; its pins clash with ours), configured with
Basic auth (uppercased credentials), `records_path` `$.value[*]`, the jsonpath paginator on
`@odata.nextLink` with hateoas_body requests, and the schemas it inferred in an untimed
discovery run (so it makes no inference requests when timed). It emits a PO with its lines
nested; ours emits the lines as their own stream as well. Output to /dev/null, alternating,
BENCH_REPEATS times; the ratio is of the medians.

    .venv/bin/python bench/peer.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from _common import (
    PEER_BIN,
    REPEATS,
    ROOT,
    SAGE_PATH,
    Sandbox,
    alternate,
    median,
    run_measured,
    say,
    table,
    write_json,
)
from overhead import extract_setup

STREAMS = ["vendors", "purchase_orders", "purchase_order_lines"]
RESOURCES = {"vendors": "AP/APVendors", "purchase_orders": "PO/POPurchaseOrders"}
PEER_REPEATS = min(REPEATS, 3)  # the peer takes ~5x as long as ours
KEYS = {"vendors": ["VendorNumber"], "purchase_orders": ["PurchaseOrderSequenceKey"]}


def peer_config(sandbox: Sandbox, selects: dict[str, str]) -> dict:
    sage = sandbox.info["sage300"]
    streams = []
    for company in sandbox.info["sage300"]["company_ids"]:
        for stream, resource in RESOURCES.items():
            streams.append({
                "name": f"{stream}_{company}",
                "path": f"{SAGE_PATH}/{company}/{resource}",
                "primary_keys": KEYS[stream],
                "params": {"$select": selects[resource]},
            })
    return {
        "api_url": sandbox.sage_root,
        "auth_method": "basic",
        "username": sage["username"].upper(),
        "password": sage["password"].upper(),
        "records_path": "$.value[*]",
        "pagination_request_style": "jsonpath_paginator",
        "pagination_response_style": "hateoas_body",
        "next_page_token_path": "$['@odata.nextLink']",
        "headers": {"Accept": "application/json", "Content-Type": "application/json"},
        "streams": streams,
    }


@dataclass
class Contenders:
    """Both taps' commands, set up and warmed up (untimed), with what each reads."""

    ours: list[str]
    ours_records: int
    ours_requests: int
    peer: list[str]
    peer_records: int
    peer_requests: int


def setup(sandbox: Sandbox, work: Path) -> Contenders:
    """Our tap's warm-up run (its URLs give the $select), the peer's config, its untimed
    discovery (schemas) and an untimed run that counts its records and requests."""
    ours, counts, urls = extract_setup(sandbox, work, STREAMS)
    selects = {}
    for url in urls:  # the first read per resource carries our $select ($metadata: none)
        parts = urlsplit(url)
        resource = "/".join(parts.path.split("/")[-2:])
        query = parse_qs(parts.query)
        if "$select" in query:
            selects.setdefault(resource, query["$select"][0])
    config = peer_config(sandbox, selects)
    config_path = write_json(work, "peer.json", config)
    discovered = json.loads(subprocess.run(
        [str(PEER_BIN / "tap-rest-api-msdk"), "--config", str(config_path), "--discover"],
        cwd=ROOT, capture_output=True, check=True, text=True).stdout)
    schemas = {entry["tap_stream_id"]: entry["schema"] for entry in discovered["streams"]}
    for stream in config["streams"]:
        stream["schema"] = schemas[stream["name"]]
    config_path = write_json(work, "peer.json", config)
    peer = [str(PEER_BIN / "tap-rest-api-msdk"), "--config", str(config_path)]

    seq = sandbox.last_seq("sage300")
    with (work / "peer.singer").open("wb") as out:  # untimed: count what it reads
        run_measured(peer, stdout=out)
    with (work / "peer.singer").open("rb") as lines:
        peer_records = sum(1 for line in lines if line.startswith(b'{"type":"RECORD"'))
    peer_requests = sum(1 for r in sandbox.requests_since("sage300", seq)
                        if r["method"] == "GET" and r["path"].startswith(SAGE_PATH))
    return Contenders(ours, sum(counts.values()), len(urls), peer, peer_records,
                      peer_requests)


def require_peer() -> None:
    if not (PEER_BIN / "tap-rest-api-msdk").exists():
        raise SystemExit("tap-rest-api-msdk is not installed: run `make bench` (it builds "
                         ".venv-bench-peer) or pip install tap-rest-api-msdk==1.4.2 there")


def main() -> dict[str, float]:
    require_peer()
    say("peer: starting the sandbox with the large data ...")
    with Sandbox("large") as sandbox, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        both = setup(sandbox, work)
        ours, peer = both.ours, both.peer

        runs: dict[str, list] = {"ours": [], "peer": []}

        def timed(name: str, command: list[str]) -> float:
            measured = run_measured(command)
            runs[name].append(measured)
            return measured.wall

        say(f"peer: {PEER_REPEATS} alternating runs each ...")
        walls = alternate({"ours": lambda: timed("ours", ours),
                           "peer": lambda: timed("peer", peer)}, PEER_REPEATS)
        ours_wall, peer_wall = median(walls["ours"]), median(walls["peer"])
        rows = [
            ["tap-sage300", f"{both.ours_requests:,}", f"{both.ours_records:,}", ours_wall,
             median(m.cpu for m in runs["ours"]), median(m.max_rss_mb for m in runs["ours"]),
             "1.00"],
            ["tap-rest-api-msdk 1.4.2", f"{both.peer_requests:,}", f"{both.peer_records:,}",
             peer_wall,
             median(m.cpu for m in runs["peer"]), median(m.max_rss_mb for m in runs["peer"]),
             f"{peer_wall / ours_wall:.2f}"],
        ]
        table("Peer ratio: tap-sage300 vs tap-rest-api-msdk (same Sage pages)",
              ["tap", "requests", "records", "median wall s", "median CPU s", "peak RSS MB",
               "wall vs ours"], rows,
              ["Large data, both companies: vendors and POs (ours also emits the 100,809 PO "
               "lines as their own records; the peer nests them in the PO). Same $select; "
               "Sage PageSize 100. Ours: page_size 1000, typed schemas, one page requested "
               "ahead. Peer: Basic auth, records_path $.value[*], jsonpath_paginator on "
               "@odata.nextLink with hateoas_body, schemas from an untimed discovery. "
               f"{PEER_REPEATS} alternating runs. Target: ours faster -> "
               f"{'met' if ours_wall < peer_wall else 'NOT MET'}."])
        return {"ours": ours_wall, "peer": peer_wall}


if __name__ == "__main__":
    main()
