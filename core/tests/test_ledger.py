"""The audit ledger on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import mlc_core_workers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select, text

from ml_connector_core.ledger import (
    LATEST_VERSION,
    Action,
    Entry,
    Ledger,
    LedgerVersionError,
    default_ledger_url,
    migrate,
    normalize_cause,
    payload_hash,
)
from ml_connector_core.ledger._schema import entries, make_engine, schema_version


@pytest.fixture
def ledger(ledger_url: str):
    with Ledger.open(ledger_url) as opened:
        yield opened


def test_migrates_a_v1_ledger_in_place(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    assert migrate(engine, target=1) == 1
    assert "key_properties" not in {c["name"] for c in inspect(engine).get_columns("entries")}
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO runs (run_id, plugin, started_at, status) VALUES ('r1', 'tap', :t, 'ok')"
        ), {"t": now})
        conn.execute(text(
            "INSERT INTO entries (run_id, plugin, stream, source_key, action, payload, created_at)"
            " VALUES ('r1', 'tap', 'vendors', 'V1', 'read', '{\"a\": 1}', :t)"
        ), {"t": now})
    engine.dispose()

    with Ledger.open(ledger_url) as ledger:
        with ledger.engine.connect() as conn:
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
        assert versions == [1, 2]
        columns = {c["name"] for c in inspect(ledger.engine).get_columns("entries")}
        assert {"key_properties", "stream_schema"} <= columns
        [old] = ledger.trace("V1")
        assert (old.payload, old.key_properties, old.action) == ({"a": 1}, None, Action.READ)
        # The new columns work on the upgraded ledger.
        ledger.record(Entry("r1", "vendors", "V1", "failed", payload={"a": 2},
                            key_properties=["VendorID"], schema={"type": "object"}))
        assert ledger.latest_outcome("vendors", "V1").key_properties == ["VendorID"]

    with Ledger.open(ledger_url) as again, again.engine.connect() as conn:  # reopen: no-op
        assert conn.execute(select(func.count()).select_from(schema_version)).scalar() == 2


def test_refuses_a_ledger_from_a_newer_version(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(schema_version.insert().values(
            version=LATEST_VERSION + 1, description="future", applied_at=datetime.now(UTC)))
    engine.dispose()
    with pytest.raises(LedgerVersionError, match="upgrade"):
        Ledger.open(ledger_url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_writers_lose_nothing(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    workers, each = 8, 40
    # Nobody creates the ledger beforehand: the workers also race to migrate it.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        written = pool.starmap(mlc_core_workers.write_entries,
                               [(url, w, each) for w in range(workers)])
    assert written == [each] * workers
    with Ledger.open(url) as ledger, ledger.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(entries)).scalar() == workers * each
        distinct = select(func.count(func.distinct(entries.c.source_key)))
        assert conn.execute(distinct).scalar() == workers * each
        assert conn.execute(select(func.count()).select_from(schema_version)).scalar() == 2
        finished = conn.execute(text("SELECT count(*) FROM runs WHERE status = 'success'"))
        assert finished.scalar() == workers


def test_trace_follows_a_key_across_runs_and_streams_oldest_first(ledger: Ledger) -> None:
    tap = ledger.start_run("tap-basware")
    target = ledger.start_run("target-sage300")
    ledger.record(Entry(tap.run_id, "invoices", "INV-1", Action.READ, payload={"id": "INV-1"}))
    ledger.record(Entry(target.run_id, "invoices", "INV-1", Action.FAILED, error="HTTP 500"))
    ledger.record(Entry(tap.run_id, "vendors", "V9", Action.READ))  # unrelated
    ledger.record(Entry(target.run_id, "invoices", "INV-1", Action.CREATED, target_key="DOC-7",
                        sage_batch="B12", sage_entry="B12-1", sage_document="DOC-7"))
    ledger.record(Entry(tap.run_id, "invoice_responses", "INV-1", Action.RESPONDED,
                        bw_request_id="req-1", basware_request_id="amzn-1"))
    ledger.record(Entry(tap.run_id, "ap_documents", "DOC-7", Action.READ))

    trace = ledger.trace("INV-1")
    assert [(e.stream, e.action) for e in trace] == [
        ("invoices", "read"), ("invoices", "failed"), ("invoices", "created"),
        ("invoice_responses", "responded"),
    ]
    assert [e.plugin for e in trace] == ["tap-basware", "target-sage300", "target-sage300",
                                          "tap-basware"]
    assert all(a.created_at <= b.created_at for a, b in zip(trace, trace[1:], strict=False))
    assert trace[0].created_at.tzinfo is not None and trace[0].created_at.microsecond >= 0
    # A target key or any remote id finds the entries that mention it.
    assert [e.action for e in ledger.trace("DOC-7")] == ["created", "read"]
    for remote in ("B12", "B12-1", "req-1", "amzn-1"):
        assert len(ledger.trace(remote)) == 1
    assert ledger.trace("nothing") == []


def test_dedup_helpers(ledger: Ledger) -> None:
    run = ledger.start_run("target-basware", job_id="job-1", state_id="dev:tap-to-target")
    v1 = {"VendorID": "V1", "Name": "Acme", "Credit": Decimal("1000.00")}
    h1 = payload_hash(v1)
    assert not ledger.was_delivered("vendors", "V1", h1)
    assert ledger.latest_outcome("vendors", "V1") is None

    ledger.record(Entry(run.run_id, "vendors", "V1", Action.READ, payload=v1))
    assert ledger.latest_outcome("vendors", "V1") is None  # a read is not an outcome
    ledger.record(Entry(run.run_id, "vendors", "V1", Action.CREATED, payload=v1,
                        target_key="BW-V1"))
    assert ledger.was_delivered("vendors", "V1", h1)
    assert ledger.target_key_for("vendors", "V1") == "BW-V1"
    assert not ledger.was_delivered("vendors", "V1", payload_hash({**v1, "Name": "Acme Ltd"}))

    ledger.record(Entry(run.run_id, "vendors", "V1", Action.READ, payload=v1))
    assert ledger.was_delivered("vendors", "V1", h1)  # re-reads change nothing

    ledger.record(Entry(run.run_id, "vendors", "V1", Action.FAILED, payload=v1, error="boom"))
    assert not ledger.was_delivered("vendors", "V1", h1)  # the latest outcome failed
    assert ledger.target_key_for("vendors", "V1") == "BW-V1"  # the id map keeps the success
    latest = ledger.latest_outcome("vendors", "V1")
    assert (latest.action, latest.error, latest.meltano_job_id, latest.meltano_state_id) == (
        Action.FAILED, "boom", "job-1", "dev:tap-to-target")

    ledger.record(Entry(run.run_id, "vendors", "V1", Action.UNCHANGED, payload_hash=h1))
    assert ledger.was_delivered("vendors", "V1", h1)
    assert ledger.target_key_for("vendors", "V2") is None


def test_bulk_outcomes_agree_with_the_per_key_helpers(ledger: Ledger) -> None:
    run = ledger.start_run("target-basware")
    h = {n: payload_hash({"n": n}) for n in range(4)}
    ledger.record_many([
        Entry(run.run_id, "vendors", "V1", Action.CREATED, payload_hash=h[1], target_key="BW-1"),
        Entry(run.run_id, "vendors", "V1", Action.READ, payload_hash=h[2]),  # not an outcome
        Entry(run.run_id, "vendors", "V2", Action.CREATED, payload_hash=h[1], target_key="BW-2"),
        Entry(run.run_id, "vendors", "V2", Action.FAILED, payload_hash=h[2], target_key="BW-2"),
        Entry(run.run_id, "vendors", "V3", Action.REJECTED, payload_hash=h[3]),
        Entry(run.run_id, "vendors", "V4", Action.READ, payload_hash=h[3]),
        Entry(run.run_id, "accounts", "V1", Action.UPDATED, payload_hash=h[0], target_key="A"),
    ])
    keys = ["V1", "V2", "V3", "V4", "V5", *(f"X{n}" for n in range(1200))]  # > one chunk

    found = ledger.outcomes("vendors", keys)

    assert set(found) == {"V1", "V2", "V3"}  # never an outcome: absent
    for key, outcome in found.items():
        latest = ledger.latest_outcome("vendors", key)
        assert (outcome.action, outcome.payload_hash) == (latest.action, latest.payload_hash)
        assert outcome.target_key == ledger.target_key_for("vendors", key)
    assert found["V1"].delivered_as(h[1]) and not found["V1"].delivered_as(h[2])
    assert not found["V2"].delivered_as(h[2])  # the latest outcome failed
    assert found["V2"].target_key == "BW-2" and found["V3"].target_key is None


def test_record_validates(ledger: Ledger) -> None:
    run = ledger.start_run("tap")
    with pytest.raises(ValueError):
        ledger.record(Entry(run.run_id, "s", "k", "exploded"))
    with pytest.raises(ValueError, match="start_run"):
        ledger.record(Entry(str(uuid.uuid4()), "s", "k", "read"))
    with pytest.raises(TypeError):
        ledger.record(Entry(run.run_id, "s", "k", "read", payload={"x": object()}))
    assert ledger.record_many([]) == 0
    assert ledger.record_many(Entry(run.run_id, "s", f"k{i}", "read") for i in range(3)) == 3


def test_payload_hash_is_canonical() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    base = {"a": Decimal("10.50"), "b": [1, 2], "when": moment, "day": moment.date()}
    same = {"day": moment.date(), "when": moment.astimezone(timezone(timedelta(hours=-5))),
            "b": (1.0, Decimal("2")), "a": 10.5}
    assert payload_hash(base) == payload_hash(same)
    assert payload_hash(base) != payload_hash({**base, "a": Decimal("10.51")})
    assert len(payload_hash(base)) == 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_payload_hash_ignores_key_order(payload: dict) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert payload_hash(payload) == payload_hash(reordered)


def test_normalize_cause() -> None:
    assert normalize_cause("HTTP 400: vendor V00123 not found\ntraceback...") == (
        "HTTP 400: vendor # not found")
    assert normalize_cause("GL account '6000-100' is inactive") == "GL account '…' is inactive"
    assert normalize_cause(f"request {uuid.uuid4()} timed out after 30s") == (
        "request <id> timed out after #")
    assert normalize_cause(None) == "(no error text)"


def test_failures_grouped_by_cause(ledger: Ledger) -> None:
    run = ledger.start_run("target-basware")
    old = datetime.now(UTC) - timedelta(days=10)
    ledger.record(Entry(run.run_id, "vendors", "V0", "failed", error="HTTP 400: V000 bad",
                        created_at=old))
    for key in ("V00123", "V00999", "V00123"):
        ledger.record(Entry(run.run_id, "vendors", key, Action.REJECTED,
                            error=f"HTTP 400: vendor {key} not found\n{{'detail': 1}}"))
    ledger.record(Entry(run.run_id, "vendors", "V5", "failed", error=TimeoutError("after 30s")))
    ledger.record(Entry(run.run_id, "purchase_orders", "PO1", "failed",
                        error="HTTP 400: vendor V00123 not found"))
    ledger.record(Entry(run.run_id, "vendors", "V6", "created"))

    groups = ledger.failures(since=datetime.now(UTC) - timedelta(days=2))
    assert [(g.stream, g.cause, g.count, g.keys) for g in groups] == [
        ("vendors", "HTTP 400: vendor # not found", 3, 2),
        ("purchase_orders", "HTTP 400: vendor # not found", 1, 1),
        ("vendors", "TimeoutError: after #", 1, 1),
    ]
    assert groups[0].example_keys == ("V00123", "V00999")
    assert groups[0].example_error == "HTTP 400: vendor V00123 not found"
    assert groups[0].first_seen <= groups[0].last_seen
    assert sum(g.count for g in ledger.failures()) == 6


def test_replayable(ledger: Ledger) -> None:
    run = ledger.start_run("target-basware")
    rec = run.run_id
    ledger.record(Entry(rec, "vendors", "A", "failed", payload={"id": "A", "v": 1}, error="x"))
    ledger.record(Entry(rec, "vendors", "B", "rejected", payload={"id": "B"}, error="y"))
    ledger.record(Entry(rec, "vendors", "A", "read", payload={"id": "A", "v": 2}))
    ledger.record(Entry(rec, "vendors", "A", "created", payload={"id": "A", "v": 2}))
    ledger.record(Entry(rec, "vendors", "C", "read", payload={"id": "C"}))  # never delivered
    ledger.record(Entry(rec, "vendors", "D", "failed", error="no payload kept"))
    ledger.record(Entry(rec, "accounts", "E", "failed", payload={"id": "E"}, error="z"))
    ledger.record(Entry(rec, "vendors", "F", "failed", payload={"id": "F", "v": 1}, error="z"))
    ledger.record(Entry(rec, "vendors", "F", "failed", payload={"id": "F", "v": 2}, error="z"))

    selection = ledger.replayable()
    assert [(e.stream, e.source_key, e.payload) for e in selection.entries] == [
        ("vendors", "B", {"id": "B"}), ("accounts", "E", {"id": "E"}),
        ("vendors", "F", {"id": "F", "v": 2}),
    ]
    assert [(e.source_key, why) for e, why in selection.skipped] == [
        ("A", "latest outcome is created"), ("D", "failed entry has no stored payload")]

    everything = ledger.replayable(failed_only=False)
    assert sorted(e.source_key for e in everything.entries) == ["B", "C", "E", "F"]
    assert [e.source_key for e in ledger.replayable(stream="accounts").entries] == ["E"]
    assert [e.source_key for e in ledger.replayable(keys=["A", "B"]).entries] == ["B"]
    assert ledger.replayable(since=datetime.now(UTC) + timedelta(hours=1)).entries == []


def test_report_counts_per_stream_and_action(ledger: Ledger) -> None:
    assert ledger.report().runs == []
    first = ledger.start_run("target-basware")
    ledger.record(Entry(first.run_id, "vendors", "V1", "created"))
    tap = ledger.start_run("tap-sage300", job_id="meltano-run-1")
    target = ledger.start_run("target-basware", job_id="meltano-run-1")
    ledger.record_many([Entry(tap.run_id, "vendors", f"V{i}", "read") for i in range(3)])
    ledger.record_many([
        Entry(target.run_id, "vendors", "V0", "created"),
        Entry(target.run_id, "vendors", "V1", "unchanged"),
        Entry(target.run_id, "vendors", "V2", "failed", error="x"),
        Entry(target.run_id, "accounts", "6000", "updated"),
    ])
    ledger.finish_run(target.run_id, "failed", {"failed": 1})

    latest = ledger.report()  # latest run, with its Meltano sibling
    assert [r.plugin for r in latest.runs] == ["tap-sage300", "target-basware"]
    assert latest.counts == {
        "vendors": {"read": 3, "created": 1, "unchanged": 1, "failed": 1},
        "accounts": {"updated": 1},
    }
    assert latest.runs[1].status == "failed" and latest.runs[1].summary == {"failed": 1}
    only_first = ledger.report(first.run_id)
    assert only_first.counts == {"vendors": {"created": 1}}
    assert ledger.report(tap.run_id).counts == {"vendors": {"read": 3}}
    assert ledger.report("no-such-run").runs == []


def test_default_ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path / "project"))
    url = default_ledger_url()
    assert url == f"sqlite:///{tmp_path / 'project' / '.ml-connector' / 'ledger.sqlite'}"
    assert (tmp_path / "project" / ".ml-connector").is_dir()
    with Ledger.open() as ledger:
        ledger.start_run("tap")
    assert (tmp_path / "project" / ".ml-connector" / "ledger.sqlite").exists()


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger, ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_stored_schema_keeps_secret_looking_field_names(sqlite_url: str) -> None:
    schema = {"type": "object", "properties": {"Password": {"type": "string"},
                                               "Memo": {"type": "string",
                                                        "default": "x S3cr3t-value"}}}
    with Ledger.open(sqlite_url, secrets=["S3cr3t-value"]) as ledger:
        run = ledger.start_run("tap")
        ledger.record(Entry(run.run_id, "users", "u1", "failed", schema=schema,
                            payload={"Password": "hunter2", "Memo": "m"}))
        stored = ledger.latest_outcome("users", "u1")
    assert stored.schema["properties"]["Password"] == {"type": "string"}
    assert stored.schema["properties"]["Memo"]["default"] == "x ***"
    assert stored.payload == {"Password": "***", "Memo": "m"}
