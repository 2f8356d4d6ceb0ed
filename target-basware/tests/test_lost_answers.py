"""Rejections survive lost answers: when the answer to a bulk POST is lost, Basware's own
verdict on the records is looked up, never assumed.

Basware answers an identical re-post `NotProcessed`. After a lost answer (the connection
dropped after Basware stored the import, or the run killed before it read the requestStatus)
the re-post is exactly that; the records' outcome is the one P2P gave the first import, found
in Basware's requestStatus history. A record P2P refused ends `rejected` with Basware's
reason, visible to `audit failures` and `audit replay --failed`, exactly as without the fault.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ml_connector_core.ledger import Action, Ledger

FIXTURES = Path(__file__).parent / "fixtures"
REJECTIONS = "basware_rejections.singer"
#: What a fault-free run of REJECTIONS ends with (test_fixtures.py checks it field by field).
FAULT_FREE = {
    "BR-V400": (Action.CREATED, None),
    "BR-V401": (Action.REJECTED,
                "Basware: Record skipped due to wrong or missing CompanyCode 'ZZ01'"),
    "BR-PO4": (Action.CREATED, None),
    "BR-PO6": (Action.REJECTED, "Basware: Supplier V999 does not exist for company US01"),
}
HOLD = 300  # stall_after seconds: the answer never comes before the kill


def outcomes(ledger_entries: Any) -> dict[str, tuple[Action, str | None]]:
    return {key: (ledger_entries(key)[-1].action, ledger_entries(key)[-1].error)
            for key in FAULT_FREE}


def imports(basware: Any, entity_type: str) -> list[dict[str, Any]]:
    """Basware's requestStatus entries of one entity type, in the order they arrived."""
    return [e for e in basware.tenant()["request_status"] if e["entityType"] == entity_type]


def items_of(entry: dict[str, Any]) -> dict[str, str]:
    return {i["externalCode"]: i["status"] for s in entry["systems"] for i in s["items"]}


def assert_visible_for_audit_and_replay(ledger: Ledger) -> None:
    """`ml-connector audit failures` and `audit replay --failed` see both P2P refusals."""
    causes = {(g.stream, g.example_keys) for g in ledger.failures()}
    assert ("vendors", ("BR-V401",)) in causes, causes
    assert ("matching_orders", ("BR-PO6",)) in causes or any(
        s == "matching_orders" and "BR-PO6" in keys for s, keys in causes), causes
    replay = {e.source_key for e in ledger.replayable(failed_only=True).entries}
    assert {"BR-V401", "BR-PO6"} <= replay, replay


def test_a_dropped_answer_still_ends_in_basware_s_rejections(run_target, basware, ledger,
                                                             ledger_entries):
    # Basware stores the vendors POST and the (second, accepted) matching orders POST, then
    # the connection drops: the client retries with the same X-BW-REQUEST-ID and Basware
    # answers the identical re-post NotProcessed.
    basware.faults({"schedule": [
        {"nth": 1, "fault": "drop_after", "method": "POST", "path": "^/v1/vendors$"},
        {"nth": 2, "fault": "drop_after", "method": "POST", "path": "^/v1/matchingOrders$"}]})

    run = run_target(REJECTIONS)

    assert run.returncode == 0, run.stderr
    vendor_posts = basware.posts("vendors")
    assert len(vendor_posts) == 2  # the lost one and its retry
    assert len({p["headers"]["X-BW-REQUEST-ID"] for p in vendor_posts}) == 1
    first, retry = imports(basware, "Vendor")
    assert items_of(first) == {"BR-V400": "Success", "BR-V401": "Error"}
    assert items_of(retry) == {"BR-V400": "NotProcessed", "BR-V401": "NotProcessed"}
    # The ledger says what P2P made of the first import, not "unchanged".
    assert outcomes(ledger_entries) == FAULT_FREE
    rejected = ledger_entries("BR-V401")[-1]
    assert rejected.basware_request_id == first["requestId"]  # the import that decided
    assert rejected.bw_request_id == vendor_posts[0]["headers"]["X-BW-REQUEST-ID"]
    order_import = next(e for e in imports(basware, "MatchingOrder")
                        if items_of(e).get("BR-PO6") == "Error")
    assert ledger_entries("BR-PO6")[-1].basware_request_id == order_import["requestId"]
    assert "3 record(s) rejected" in run.stderr
    assert "4 record(s) answered NotProcessed" in run.stderr
    assert_visible_for_audit_and_replay(ledger)


def test_a_run_killed_before_reading_request_status_is_settled_by_the_next(
        target_config, tmp_path, basware, ledger, ledger_entries, run_target):
    # Basware stores the vendors POST and holds the answer; the target is killed while it
    # waits, before any requestStatus read or ledger entry.
    basware.faults({"stall_seconds": HOLD, "schedule": [
        {"nth": 1, "fault": "stall_after", "method": "POST", "path": "^/v1/vendors$"}]})
    config = tmp_path / "killed-config.json"
    config.write_text(json.dumps(target_config))
    process = subprocess.Popen(
        [sys.executable, "-m", "target_basware.target", "--config", str(config),
         "--input", str(FIXTURES / REJECTIONS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # a bound for a hung run, not a pass/fail timing
        while not imports(basware, "Vendor") and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    (held,) = imports(basware, "Vendor")
    assert not [r for r in basware.requests() if r["path"].startswith("/v1/requestStatus")
                and held["requestId"] in r["path"]]
    assert ledger_entries("BR-V401") == []
    basware.faults({})

    rerun = run_target(REJECTIONS)

    assert rerun.returncode == 0, rerun.stderr
    assert items_of(imports(basware, "Vendor")[-1]) == {"BR-V400": "NotProcessed",
                                                        "BR-V401": "NotProcessed"}
    assert outcomes(ledger_entries) == FAULT_FREE
    assert ledger_entries("BR-V401")[-1].basware_request_id == held["requestId"]
    assert_visible_for_audit_and_replay(ledger)

    # -- unchanged again: what P2P refused is not re-sent (it would be NotProcessed again) ---
    basware.clear_log()
    again = run_target(REJECTIONS)

    assert again.returncode == 0, again.stderr
    # Only BR-PO5 goes again: Basware's validation (HTTP 400) refused it and stored nothing.
    assert [[r["externalCode"] for r in p["body"]] for p in basware.posts()] == [["BR-PO5"]]
    assert outcomes(ledger_entries) == {**FAULT_FREE, "BR-V400": (Action.UNCHANGED, None),
                                        "BR-PO4": (Action.UNCHANGED, None)}
    assert ledger_entries("BR-V401")[-1].basware_request_id == held["requestId"]
    assert "not sent again: Basware refused exactly this record" in again.stderr
    assert_visible_for_audit_and_replay(ledger)

    # -- its next change is sent again, and arrives ------------------------------------------
    fixed = tmp_path / "fixed.singer"
    fixed.write_text((FIXTURES / REJECTIONS).read_text().replace(
        '"companyCode": "ZZ01"', '"companyCode": "US01"'))
    basware.clear_log()
    changed = run_target(fixed)

    assert changed.returncode == 0, changed.stderr
    (post,) = basware.posts("vendors")
    assert [r["externalCode"] for r in post["body"]] == ["BR-V401"]
    assert ledger_entries("BR-V401")[-1].action == Action.CREATED  # new to P2P
    assert basware.item_statuses()[("Vendor", "BR-V401")] == "Success"
