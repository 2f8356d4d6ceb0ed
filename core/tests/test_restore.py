"""Restores (ml_connector_core.restore, outcome_handover): a state and a ledger restored apart
are told apart from each other and from two different ledgers, on both backends. The jobs
restored end to end: tests/test_restore.py."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from ml_connector_core.ledger import Action, Entry, Ledger
from ml_connector_core.outcome_handover import (
    LEDGERS_KEY,
    RUNS_KEY,
    clear_state_command,
    missing_runs,
    missing_runs_message,
    recoverable_runs,
    run_ledgers,
    with_run,
    without_runs,
)
from ml_connector_core.restore import (
    LEDGER_OLDER,
    MARK_KEY,
    MARKS_STREAM,
    OTHER_LEDGER,
    STATE_OLDER,
    check_state,
    ledger_identity,
    read_mark,
    stamped,
)


def run_of(ledger: Ledger, state: dict, plugin: str = "target-basware"):
    """One plugin run handed `state`: (the state it emits, what it found)."""
    run_id = ledger.start_run(plugin).run_id
    mark, finding = check_state(ledger, run_id, state)
    return stamped({"bookmarks": {}}, mark), finding


def copy_sqlite(url: str, to: Path) -> str:
    """A backup as docs/operations.md takes it (SQLite's backup API)."""
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    source.backup(sqlite3.connect(to))
    source.close()
    return f"sqlite:///{to}"


def test_identity_is_kept_by_a_copy_and_differs_between_ledgers(ledger_url: str,
                                                                 tmp_path: Path) -> None:
    with Ledger.open(ledger_url) as ledger:
        identity = ledger_identity(ledger)
        assert identity and identity == ledger_identity(ledger)
    with Ledger.open(f"sqlite:///{tmp_path / 'other.sqlite'}") as other:
        assert ledger_identity(other) not in (None, identity)


def test_states_in_order_find_nothing_and_carry_one_lineage(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        first, found = run_of(ledger, {})
        assert found is None
        second, found = run_of(ledger, first)
        assert found is None
        third, found = run_of(ledger, second)
        assert found is None
        marks = [read_mark(state) for state in (first, second, third)]
        assert {m.lineage for m in marks} == {marks[0].lineage}
        assert [m.seq for m in marks] == [1, 2, 3]
        assert all(m.ledger == ledger_identity(ledger) for m in marks)
        # The same state handed twice (a run that failed before saving its own): no finding.
        assert run_of(ledger, second)[1] is None
        handed = [e.target_key for e in ledger.trace(marks[0].lineage)
                  if e.stream == MARKS_STREAM]
        assert handed == ["000000000000", "000000000001", "000000000002", "000000000002"]
        assert all(e.action == Action.READ for e in ledger.trace(marks[0].lineage))


def test_a_ledger_older_than_the_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        first, _ = run_of(ledger, {})
    backup = copy_sqlite(url, tmp_path / "backup.sqlite")
    with Ledger.open(url) as ledger:
        second, _ = run_of(ledger, first)
    shutil.copy(tmp_path / "backup.sqlite", tmp_path / "ledger.sqlite")  # restored alone

    with Ledger.open(url) as ledger:
        after, found = run_of(ledger, second)
        assert found is not None and found.kind == LEDGER_OLDER
        text = found.describe(url, "prod:tap-sage300-to-target-basware")
        assert "is older than Meltano's state prod:tap-sage300-to-target-basware" in text
        assert read_mark(second).run in text
        # Said once: the run after it finds its own mark.
        assert run_of(ledger, after)[1] is None
    assert backup


def test_a_state_older_than_the_ledger_once_a_later_state_was_handed(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        first, _ = run_of(ledger, {})
        second, _ = run_of(ledger, first)
        third, _ = run_of(ledger, second)

        again, found = run_of(ledger, first)  # the state restored to `first`

        assert found is not None and found.kind == STATE_OLDER
        assert (found.handed.seq, found.later_seq) == (1, 2)
        assert "older than the ledger" in found.describe(ledger_url, "prod:x-to-y")
        # A new lineage from there on: the next runs do not say it again.
        assert read_mark(again).lineage != read_mark(third).lineage
        assert run_of(ledger, again)[1] is None


def test_another_ledger(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'a.sqlite'}") as ledger:
        state, _ = run_of(ledger, {})
    with Ledger.open(f"sqlite:///{tmp_path / 'b.sqlite'}") as other:
        after, found = run_of(other, state)
        assert found is not None and found.kind == OTHER_LEDGER
        assert "another ledger" in found.describe("sqlite:///b", "prod:x-to-y")
        assert run_of(other, after)[1] is None


def test_a_malformed_mark_is_no_mark(ledger_url: str) -> None:
    for raw in ("x", {"lineage": "", "seq": 1}, {"lineage": "a", "seq": True},
                {"lineage": "a", "seq": -1}, {"lineage": "a"}):
        assert read_mark({MARK_KEY: raw}) is None
    with Ledger.open(ledger_url) as ledger:
        assert run_of(ledger, {MARK_KEY: "x"})[1] is None


def test_outcome_runs_name_their_ledger_and_an_older_copy_is_recoverable(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        identity = ledger_identity(ledger)
    copy_sqlite(url, tmp_path / "backup.sqlite")
    with Ledger.open(url) as ledger:
        run_id = ledger.start_run("target-sage300").run_id
        ledger.record(Entry(run_id, "ap_invoices", "inv1", Action.CREATED, reply={"ok": 1}))
        state = with_run({"bookmarks": {}}, run_id, ledger)
    assert state[RUNS_KEY] == {run_id: 0} and run_ledgers(state) == {run_id: identity}
    assert with_run({}, "r2")[RUNS_KEY] == {"r2": 0} and LEDGERS_KEY not in with_run({}, "r2")

    with Ledger.open(f"sqlite:///{tmp_path / 'backup.sqlite'}") as older:
        missing = missing_runs(older, state[RUNS_KEY])
        assert missing == [run_id]
        assert recoverable_runs(older, missing, state) == [run_id]
        # A state from an older release names no ledger: not known to be recoverable.
        assert recoverable_runs(older, missing, {RUNS_KEY: {run_id: 0}}) == []
    with Ledger.open(f"sqlite:///{tmp_path / 'other.sqlite'}") as other:
        assert recoverable_runs(other, missing, state) == []

    assert without_runs(state, [run_id]) == {"bookmarks": {}}


def test_the_message_names_both_causes_and_the_command() -> None:
    text = missing_runs_message(["r1"], "postgresql://mlc:s3cret@db/ledger",
                                "prod:tap-basware-to-target-sage300",
                                {"r1": "2026-01-02T03:04:05.000006+00:00"})
    assert "s3cret" not in text and "postgresql://mlc:***@db/ledger" in text
    assert "the ledger created 2026-01-02T03:04:05.000006+00:00" in text
    assert "give both the same ledger_url" in text
    assert ("`meltano --environment=prod state clear --force "
            "prod:tap-basware-to-target-sage300`") in text
    assert clear_state_command("tap-basware-to-target-sage300") == \
        "meltano state clear --force tap-basware-to-target-sage300"
