"""Rejections survive lost answers, end to end: `meltano run master-data` on the demo data,
whose records Basware's P2P refuses (mlc_sandbox.data.P2P_REFUSALS), with the answer to the
bulk POSTs that carry them lost.

Basware answers the re-post of an import whose answer was lost `NotProcessed` (it holds
exactly those records already). target-basware then looks the first import's outcome up in
Basware's requestStatus history, in the same run (a dropped connection: the client retried) or
in the next (the run was killed before it read the answer), so every refusal still ends
rejected in the ledger with Basware's reason: `ml-connector audit failures` lists it, `audit
replay --failed` offers it, and both systems and the ledger's failures end as the fault-free
baseline's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from e2e import (
    Project,
    Snapshot,
    basware_tenant,
    differences,
    in_flight_env,
    kill,
    misplaced_receipts,
    request_log,
    set_faults,
    snapshot,
    wait_until,
)

from mlc_sandbox.data import P2P_REFUSALS
from mlc_sandbox.serve import Sandbox

CLI = str(Path(sys.executable).with_name("ml-connector"))
HOLD = 300  # stall_after seconds: the answer never comes before the kill
STREAMS = {"Vendor": "vendors", "MatchingOrder": "matching_orders",
           "MatchingOrderLine": "matching_order_lines"}


def audit(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """`ml-connector audit ...` on the project's ledger, as an operator types it."""
    result = subprocess.run([CLI, "audit", *args], env=project.env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def not_processed(sandbox: Sandbox) -> set[tuple[str, str]]:
    """(entity type, externalCode) of every item Basware answered NotProcessed."""
    return {(entry["entityType"], item["externalCode"])
            for entry in basware_tenant(sandbox)["request_status"]
            for system in entry["systems"] for item in system["items"]
            if item["status"] == "NotProcessed"}


def expected_failures() -> dict[tuple[str, str], set[str]]:
    """(stream, Basware's message as `audit failures` shows it) -> the business ids of the
    demo's refusals (SAMLTD/<vendor>, SAMLTD/<PO number>[/<line>])."""
    found: dict[tuple[str, str], set[str]] = {}
    for (kind, code), reasons in P2P_REFUSALS.items():
        business_id = code.replace("-", "/")  # SAMLTD-1600, SAMLTD-PO200161-1000
        found.setdefault((STREAMS[kind], "Basware: " + "; ".join(reasons)), set()).add(
            business_id)
    return found


def assert_rejections_visible(project: Project) -> None:
    """Every refusal is in `audit failures` with Basware's reason, and in `audit replay
    --failed` as the record that was sent."""
    failures = audit(project, "failures").stdout
    # Each cause: its message, then `  N record(s) of <stream> (...)`, then `  - <id> ...`.
    listed: dict[tuple[str, str], set[str]] = {}
    for block in failures.split("\n\n")[1:]:
        cause, counted, *items = block.splitlines()
        match = re.match(r"  (\d+) record\(s\) of (\w+) ", counted)
        assert match, block
        ids = {item.split()[1] for item in items if item.startswith("  - ")}
        assert len(ids) == int(match[1]), block
        listed[(match[2], cause)] = ids
    assert listed == expected_failures(), failures
    for entity_type, stream in STREAMS.items():
        replay = audit(project, "replay", "--failed", "--stream", stream).stdout
        records = [json.loads(line)["record"] for line in replay.splitlines()
                   if json.loads(line)["type"] == "RECORD"]
        assert {record["externalCode"] for record in records} == {
            code for kind, code in P2P_REFUSALS if kind == entity_type}, replay


def test_dropped_answers_to_the_posts_of_refused_records(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    """Basware processes the POST of every batch holding a refused record, then drops the
    connection; the client retries (same X-BW-REQUEST-ID) and hears NotProcessed."""
    lines = sum(kind == "MatchingOrderLine" for kind, _ in P2P_REFUSALS)
    assert lines == 2
    # The first attempt of every POST is dropped (its retry is the next matching request):
    # vendors go in two POSTs (the one on terms N90 waits for them to the end of input, in
    # vain), orders in one, lines 100 to a POST, in eight.
    def first_attempts(endpoint: str, posts: int) -> list[dict[str, Any]]:
        return [{"nth": n, "fault": "drop_after", "method": "POST", "path": f"^/v1/{endpoint}$"}
                for n in range(1, 2 * posts, 2)]

    schedule = (first_attempts("vendors", 2) + first_attempts("matchingOrders", 1)
                + first_attempts("matchingOrderLines", 8))
    set_faults(fresh_sandbox, None, {"schedule": schedule})
    # The schedule counts a stream's POSTs in the order they are sent, so they go one at a
    # time here; lost answers with several in flight: test_chaos (seeds 1, 2), test_crash.
    project = Project.create(fresh_sandbox, tmp_path, in_flight_env(1))

    run = project.run("master-data", name="answers-dropped")

    assert run.ok, run.output[-4000:]
    # Every refused record was answered NotProcessed once: the fault really hit them.
    assert set(P2P_REFUSALS) <= not_processed(fresh_sandbox)
    assert "settled from Basware's requestStatus history" in run.output
    # The lines POST that carries the goods receipts (issue 18) lost its answer too.
    receipt_posts = [r["fault"] for r in request_log(fresh_sandbox.basware.base_url)
                     if r["method"] == "POST" and r["path"] == "/v1/matchingOrderLines"
                     and any(line.get("goodsReceipts") for line in r["body"])]
    assert receipt_posts[:2] == ["drop_after", None], receipt_posts
    set_faults(fresh_sandbox, None, None)
    assert differences(baseline.only(("master-data",)),
                       snapshot(fresh_sandbox, project.ledger_url).only(("master-data",))) == []
    assert misplaced_receipts(fresh_sandbox) == []
    assert_rejections_visible(project)


def test_a_run_killed_before_reading_the_answer_to_refused_orders(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    """Basware stores the matching orders POST (the EUR order among them) and holds the
    answer; the run is killed while it waits. The next run re-sends the orders, hears
    NotProcessed, and finds what P2P made of the killed run's import."""
    set_faults(fresh_sandbox, None, {"stall_seconds": HOLD, "schedule": [
        {"nth": 1, "fault": "stall_after", "method": "POST", "path": "^/v1/matchingOrders$"}]})
    project = Project.create(fresh_sandbox, tmp_path)
    running = project.start("master-data", name="killed-at-matching-orders")
    try:
        wait_until(lambda: [e for e in basware_tenant(fresh_sandbox)["request_status"]
                            if e["entityType"] == "MatchingOrder"], running,
                   "Basware stored the matching orders POST")
    finally:
        kill(running)
    project.finish(running)
    set_faults(fresh_sandbox, None, None)

    final = project.run("master-data", force=True, name="after-the-kill")

    assert final.ok, final.output[-4000:]
    refused_orders = {key for key in P2P_REFUSALS if key[0] == "MatchingOrder"}
    assert refused_orders <= not_processed(fresh_sandbox)
    assert "settled from Basware's requestStatus history" in final.output
    assert differences(baseline.only(("master-data",)),
                       snapshot(fresh_sandbox, project.ledger_url).only(("master-data",))) == []
    assert misplaced_receipts(fresh_sandbox) == []
    assert_rejections_visible(project)
