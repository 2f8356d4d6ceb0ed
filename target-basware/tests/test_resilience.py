"""Checkpoints, crashes and technical failures, with faults injected into the Basware simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml_connector_core.ledger import Action


def _failing_posts(path: str, first: int, count: int) -> dict:
    """503 (Retry-After 0) on `count` consecutive POSTs to `path`, from the `first`-th on."""
    return {"retry_after": 0, "schedule": [
        {"nth": n, "fault": "503", "method": "POST", "path": path}
        for n in range(first, first + count)]}


@pytest.mark.parametrize(("in_flight", "states"), [(1, [2, 4, 6]), (2, [4, 6])])
def test_state_is_checkpointed_as_batches_are_confirmed(run_target, basware, in_flight,
                                                        states):
    run = run_target("checkpoints.singer", batch_size_rows=2,
                     max_requests_in_flight=in_flight)

    assert run.returncode == 0, run.stderr
    # A STATE is written once every record before it is confirmed: after each round of
    # full batches (as many as go out at once), and at the end.
    assert run.states == [{"cost_centers": n} for n in states]
    # (the log is in the order of the answers, which a round of POSTs may give in any order)
    assert sorted([r["externalCode"] for r in p["body"]]
                  for p in basware.posts("costCenters")) == [
        ["CP-CC1", "CP-CC2"], ["CP-CC3", "CP-CC4"], ["CP-CC5", "CP-CC6"]]


def test_crash_keeps_confirmed_state_and_rerun_sends_only_the_rest(run_target, basware,
                                                                  ledger_entries):
    # The third batch meets a Basware that keeps answering 503 (6 tries, then give up).
    basware.faults(_failing_posts("costCenters", first=3, count=6))

    # One POST at a time: each batch is confirmed (and checkpointed) before the next goes.
    crashed = run_target("checkpoints.singer", batch_size_rows=2, max_requests_in_flight=1)

    assert crashed.returncode != 0
    assert "failed after 6 attempt(s)" in crashed.stderr
    assert "run FAILED" in crashed.stderr
    assert crashed.states == [{"cost_centers": 2}, {"cost_centers": 4}]
    assert [ledger_entries(f"CP-CC{i}")[-1].action for i in range(1, 7)] == [
        Action.CREATED] * 4 + [Action.FAILED] * 2
    assert "not delivered: the run stopped" in ledger_entries("CP-CC5")[-1].error

    basware.faults({})
    basware.clear_log()
    resumed = run_target("checkpoints.singer", batch_size_rows=2, max_requests_in_flight=1)

    assert resumed.returncode == 0, resumed.stderr
    (post,) = basware.posts()
    assert [r["externalCode"] for r in post["body"]] == ["CP-CC5", "CP-CC6"]
    assert resumed.states[-1] == {"cost_centers": 6}
    assert {basware.item_statuses()[("CostCenter", f"CP-CC{i}")] for i in range(1, 7)} == {
        "Success"}


def test_a_retried_bulk_post_keeps_its_request_id(run_target, basware, ledger_entries):
    basware.faults(_failing_posts("vendors", first=1, count=1))

    run = run_target("master_data.singer")

    assert run.returncode == 0, run.stderr
    first, retry = basware.posts("vendors")
    assert (first["status"], retry["status"]) == (503, 200)
    request_id = first["headers"]["X-BW-REQUEST-ID"]
    assert retry["headers"]["X-BW-REQUEST-ID"] == request_id
    assert ledger_entries("FIX-V100")[-1].bw_request_id == request_id
    # Every other call had its own id.
    other_ids = [p["headers"]["X-BW-REQUEST-ID"] for p in basware.posts()
                 if p["path"] != "/v1/vendors"]
    assert len(set(other_ids)) == len(other_ids) and request_id not in other_ids


def test_an_expired_token_is_refreshed_once_and_the_run_goes_on(run_target, basware):
    basware.faults({"token_expiry_calls": 4})  # each token dies after 4 API calls

    run = run_target("master_data.singer")

    assert run.returncode == 0, run.stderr
    log = basware.requests()
    assert any(r["status"] == 401 for r in log)
    assert sum(r["path"] == "/v1/tokens" for r in log) >= 2
    assert set(basware.item_statuses().values()) == {"Success"}


def test_missing_scope_is_fatal_and_says_which_call(run_target, basware, ledger_entries):
    scopes = "paymentTerms.write accounts.write costCenters.write requestStatus.read"

    run = run_target("master_data.singer", scopes=scopes)

    assert run.returncode != 0
    assert "Basware refused POST /v1/vendors (403)" in run.stderr
    assert ledger_entries("FIX-US01-FX30")[-1].action == Action.CREATED  # sent before it
    assert ledger_entries("FIX-V100")[-1].action == Action.FAILED
    assert run.states == []


def test_unfinished_processing_fails_the_run_and_is_sent_again(run_target, basware,
                                                              ledger_entries):
    basware.settings({"processing_delay": 30})  # Basware sits on the request

    run = run_target("checkpoints.singer", request_status_timeout=0.5)

    assert run.returncode != 0
    assert "still InProgress after 0.5s" in run.stderr
    entry = ledger_entries("CP-CC1")[-1]
    assert entry.action == Action.FAILED and entry.basware_request_id
    assert run.states == []


def test_failed_records_are_replayed_from_the_ledger_once_the_cause_is_fixed(
        run_target, basware, ledger_entries, ledger_url, tmp_path):
    scopes = "paymentTerms.write accounts.write costCenters.write requestStatus.read"
    assert run_target("master_data.singer", scopes=scopes).returncode != 0  # no vendors.write
    assert ledger_entries("FIX-V100")[-1].action == Action.FAILED

    # The operator fixes the scopes, then replays what failed (straight into the target: the
    # stored records are already in the contract's shape, so no stream maps).
    replay = subprocess.run(
        [str(Path(sys.executable).with_name("ml-connector")), "audit", "--ledger-url",
         ledger_url, "replay", "--failed", "--stream", "vendors"],
        capture_output=True, text=True, timeout=60, check=True)
    assert "replayed 2 record(s)" in replay.stderr
    replayed = tmp_path / "replay.singer"
    replayed.write_text(replay.stdout)
    basware.clear_log()

    run = run_target(replayed)

    assert run.returncode == 0, run.stderr
    (post,) = basware.posts()
    assert sorted(r["externalCode"] for r in post["body"]) == ["FIX-V100", "FIX-V200"]
    assert ledger_entries("FIX-V100")[-1].action == Action.CREATED
    assert basware.item_statuses()[("Vendor", "FIX-V100")] == "Success"
