"""The ledger queries behind mirrored deletions, on SQLite and PostgreSQL: what a target wrote
and where it stands (`written`), every payload a key kept (`payload_history`), and the
marks a tap counts new keys after (`latest_entry`, `entry_run`, `new_keys`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector_core.ledger import SUCCESS, Action, Entry, Ledger


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


def _write(ledger: Ledger, plugin: str, *rows: tuple) -> str:
    run = ledger.start_run(plugin)
    ledger.record_many(Entry(run.run_id, stream, key, action, target_key=target,
                             payload=payload, system=system)
                       for stream, key, action, target, payload, system in rows)
    return run.run_id


def test_written_gives_each_written_key_its_latest_outcome_and_kept_payload(
        ledger: Ledger) -> None:
    _write(ledger, "target", ("accounts", "A/1", Action.CREATED, "A-1", {"v": 1}, "t1"),
           ("accounts", "A/2", Action.CREATED, "A-2", {"v": 1}, "t1"),
           ("accounts", "A/3", Action.REJECTED, None, {"v": 1}, "t1"),  # never written
           ("accounts", "A/4", Action.CREATED, "A-4", {"v": 1}, "t2"),  # another tenant
           ("cost_centers", "A/1", Action.CREATED, "C-1", {"v": 1}, "t1"))
    _write(ledger, "target", ("accounts", "A/1", Action.UNCHANGED, "A-1", None, "t1"),
           ("accounts", "A/2", Action.DEACTIVATED, "A-2", {"v": 2}, "t1"),
           ("accounts", "A/1", Action.READ, None, {"v": 9}, "t1"))
    _write(ledger, "target", ("accounts", "A/2", Action.FAILED, "A-2", {"v": 3}, "t1"))

    found = {w.source_key: w for w in ledger.written("accounts", system="t1")}

    assert sorted(found) == ["A/1", "A/2"]
    assert found["A/1"].outcome.action == Action.UNCHANGED  # the latest outcome, not a read
    assert found["A/1"].payload == {"v": 1}  # the unchanged entry kept none: the write's
    assert found["A/1"].outcome.target_key == "A-1"
    assert found["A/2"].outcome.action == Action.FAILED
    assert found["A/2"].payload == {"v": 2}  # what the destination holds: the last success
    assert Action.DEACTIVATED in SUCCESS
    assert [w.source_key for w in ledger.written("accounts", "t1", ["A/2", "A/9"])] == ["A/2"]
    assert [w.source_key for w in ledger.written("accounts", "t2")] == ["A/4"]


def test_payload_history_lists_every_kept_payload_oldest_first(ledger: Ledger) -> None:
    _write(ledger, "target", ("orders", "O/1", Action.CREATED, "O-1", {"lines": [1, 2]}, "t"),
           ("orders", "O/1", Action.READ, None, {"lines": [7]}, "t"))
    _write(ledger, "target", ("orders", "O/1", Action.UNCHANGED, "O-1", None, "t"),
           ("orders", "O/1", Action.UNCHANGED, "O-1", {"lines": [1, 3]}, "t"),
           ("orders", "O/2", Action.CREATED, "O-2", {"lines": []}, "other"))

    assert ledger.payload_history("orders", ["O/1", "O/2"], system="t") == {
        "O/1": [{"lines": [1, 2]}, {"lines": [1, 3]}]}


def test_new_keys_counts_keys_first_seen_after_a_mark(ledger: Ledger) -> None:
    assert ledger.latest_entry() is None
    _write(ledger, "tap", ("vendors", "S/1", Action.READ, None, {}, "sage"),
           ("vendors", "S/2", Action.READ, None, {}, "sage"))
    mark, run_id = ledger.latest_entry()
    assert ledger.entry_run(mark) == run_id
    assert ledger.entry_run(mark + 1000) is None
    # Read again (not new), new, new in another system, and another plugin's entries.
    _write(ledger, "tap", ("vendors", "S/2", Action.READ, None, {}, "sage"),
           ("vendors", "S/3", Action.READ, None, {}, "sage"),
           ("vendors", "S/3", Action.READ, None, {}, "sage"),
           ("vendors", "S/4", Action.READ, None, {}, "other"))
    _write(ledger, "target", ("vendors", "S/5", Action.CREATED, "S-5", {}, "sage"))

    assert ledger.new_keys("tap", "vendors", "sage", mark) == 1
    assert ledger.new_keys("tap", "vendors", "other", mark) == 1
    assert ledger.new_keys("tap", "vendors", "sage", 0) == 3
