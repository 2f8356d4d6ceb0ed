"""The audit ledger on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import mlc_core_workers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData, func, inspect, select, text
from sqlalchemy.engine import make_url

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
from ml_connector_core.ledger._schema import (
    _entries,
    _runs,
    entries,
    make_engine,
    runs,
    schema_version,
)


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
        assert versions == [1, 2, 3, 4, 5, 6]
        columns = {c["name"] for c in inspect(ledger.engine).get_columns(entries.name)}
        assert {"key_properties", "stream_schema", "reply"} <= columns
        [old] = ledger.trace("V1")
        assert (old.payload, old.key_properties, old.action) == ({"a": 1}, None, Action.READ)
        # The new columns work on the upgraded ledger.
        ledger.record(Entry("r1", "vendors", "V1", "failed", payload={"a": 2},
                            key_properties=["VendorID"], schema={"type": "object"}))
        assert ledger.latest_outcome("vendors", "V1").key_properties == ["VendorID"]

    with Ledger.open(ledger_url) as again, again.engine.connect() as conn:  # reopen: no-op
        assert conn.execute(select(func.count()).select_from(schema_version)).scalar() == 6


FIXTURES = Path(__file__).parent / "fixtures"
V2_TYPES = {"sqlite": {"timestamp": "DATETIME", "entry_id": "INTEGER"},
            "postgresql": {"timestamp": "TIMESTAMP WITH TIME ZONE", "entry_id": "BIGSERIAL"}}
V2_AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def table_rows(url: str, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the named tables, in primary key order, as the database hands them back."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            md = MetaData()
            md.reflect(conn, only=names)
            return {name: [dict(row._mapping) for row in conn.execute(
                select(md.tables[name]).order_by(*md.tables[name].primary_key.columns))]
                for name in names}
    finally:
        engine.dispose()


def build_v2_ledger(url: str) -> dict[str, list[dict[str, Any]]]:
    """A ledger as the v2 release left it: its DDL (frozen in fixtures/) and rows in every
    table and column. Returns the rows as read back."""
    engine = make_engine(url)
    with engine.begin() as conn:
        ddl = (FIXTURES / "ledger_v2.sql").read_text().format(**V2_TYPES[conn.dialect.name])
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        md = MetaData()
        md.reflect(conn, only=["schema_version", "runs", "entries"])
        conn.execute(md.tables["schema_version"].insert(), [
            {"version": 1, "description": "runs, entries and their lookup indexes",
             "applied_at": V2_AT},
            {"version": 2, "description": "entries.key_properties and entries.stream_schema "
             "(faithful replay)", "applied_at": V2_AT + timedelta(days=30)},
        ])
        conn.execute(md.tables["runs"].insert(), [
            {"run_id": "run-tap", "plugin": "tap-basware", "started_at": V2_AT,
             "finished_at": V2_AT + timedelta(minutes=2), "meltano_job_id": "job-1",
             "meltano_state_id": "prod:tap-basware-to-target-sage300", "status": "success",
             "summary": '{"read":1}'},
            {"run_id": "run-target", "plugin": "target-sage300", "started_at": V2_AT,
             "finished_at": None, "meltano_job_id": "job-1", "meltano_state_id": None,
             "status": "running", "summary": None},
        ])
        entry = {c.name: None for c in md.tables["entries"].columns if c.name != "id"}
        conn.execute(md.tables["entries"].insert(), [
            {**entry, "run_id": "run-tap", "plugin": "tap-basware", "direction": "basware->sage300",
             "stream": "invoices", "source_key": "INV-1", "payload_hash": "a" * 64,
             "payload": '{"id":"INV-1"}', "action": "read", "created_at": V2_AT,
             "key_properties": '["id"]', "stream_schema": '{"type":"object"}'},
            {**entry, "run_id": "run-target", "plugin": "target-sage300", "stream": "invoices",
             "source_key": "INV-1", "target_key": "DOC-7", "payload_hash": "a" * 64,
             "action": "created", "sage_batch": "B12", "sage_entry": "B12-1",
             "sage_document": "DOC-7", "created_at": V2_AT + timedelta(seconds=1)},
            {**entry, "run_id": "run-target", "plugin": "target-sage300", "stream": "invoices",
             "source_key": "INV-2", "action": "rejected", "error": "HTTP 400: vendor V9 unknown",
             "meltano_job_id": "job-1", "bw_request_id": "req-1", "basware_request_id": "amzn-1",
             "created_at": V2_AT + timedelta(seconds=2)},
        ])
    engine.dispose()
    return table_rows(url, ["schema_version", "runs", "entries"])


def with_no_reply(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of an older ledger as they read after the v4 and v5 steps: with an empty reply
    and no system yet (each plugin's first run claims its entries)."""
    return [{**row, "reply": None, "system": None} for row in rows]


def another_ledger(url: str, tmp_path: Path, name: str, version: int) -> str:
    """The URL of a new ledger at schema `version` beside `url`: a SQLite file, or a
    PostgreSQL schema of the same database (through search_path, so unqualified names land
    there)."""
    if make_url(url).get_backend_name() == "sqlite":
        url = f"sqlite:///{tmp_path / name}.sqlite"
    else:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        engine.dispose()
        url = make_url(url).update_query_dict({"options": f"-csearch_path={name}"}) \
            .render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine, target=version)
    engine.dispose()
    return url


def schema_of(url: str) -> dict[str, Any]:
    """Every table with its columns, indexes, keys and (PostgreSQL) constraint and sequence
    names: what must be equal for two ledgers to be the same schema."""
    engine = make_engine(url)
    inspector = inspect(engine)
    found: dict[str, Any] = {"sequences": sorted(inspector.get_sequence_names())
                             if engine.dialect.name == "postgresql" else []}
    for table in inspector.get_table_names():
        found[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"])
                        for c in inspector.get_columns(table)],
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted((fk["name"] or "", fk["referred_table"],
                                    tuple(fk["constrained_columns"]))
                                   for fk in inspector.get_foreign_keys(table)),
            "indexes": sorted((ix["name"], tuple(ix["column_names"]), ix["unique"])
                              for ix in inspector.get_indexes(table)),
        }
    engine.dispose()
    return found


def names_in(schema: dict[str, Any]) -> set[str]:
    """Every name a schema_of() schema puts in the database's namespace."""
    names = set(schema["sequences"])
    for table, shape in schema.items():
        if table != "sequences":
            names |= {table, *(ix[0] for ix in shape["indexes"]),
                      *(fk[0] for fk in shape["foreign_keys"] if fk[0])}
            names |= {shape["primary_key"]["name"]} - {None}
    return names


def test_upgrades_a_v2_ledger_keeping_every_row(ledger_url: str, tmp_path: Path) -> None:
    before = build_v2_ledger(ledger_url)
    # What migrate() builds as "v2" (the v3 step renames those names) is the v2 release.
    assert schema_of(another_ledger(ledger_url, tmp_path, "built_at_v2", 2)) == schema_of(
        ledger_url)

    with Ledger.open(ledger_url) as ledger:
        after = table_rows(ledger_url, [schema_version.name, runs.name, entries.name])
        assert after[runs.name] == before["runs"]
        assert after[entries.name] == with_no_reply(before["entries"])
        assert after[schema_version.name][:2] == before["schema_version"]
        assert [row["version"] for row in after[schema_version.name]] == [1, 2, 3, 4, 5, 6]
        # The API reads the old rows, and new ones go after them.
        assert [e.action for e in ledger.trace("INV-1")] == [Action.READ, Action.CREATED]
        assert ledger.target_key_for("invoices", "INV-1") == "DOC-7"
        assert ledger.replayable().skipped[0][0].error == "HTTP 400: vendor V9 unknown"
        # The v6 step named every old record by its ids (ledger_refs), like new ones.
        assert [(r.stream, r.source_key) for r in ledger.resolve("doc-7")] == [
            ("invoices", "INV-1")]
        ledger.record(Entry("run-target", "invoices", "INV-2", Action.CREATED, target_key="D8"))
        assert ledger.latest_outcome("invoices", "INV-2").id == len(before["entries"]) + 1
        ledger.finish_run("run-target", "success")
        assert [r.status for r in ledger.report("job-1").runs] == ["success", "success"]

    # Renamed in place is the same as created new, and nothing is left without the prefix:
    # no table, index, constraint or sequence can collide with Meltano's in one schema.
    upgraded = schema_of(ledger_url)
    created = schema_of(another_ledger(ledger_url, tmp_path, "created_new", LATEST_VERSION))
    assert upgraded == created
    assert {name for name in names_in(upgraded) if "ledger_" not in name} == set()


def test_refuses_a_ledger_beside_the_tables_of_an_older_release(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.start_run("target-basware")
    written_by_old = build_v2_ledger(ledger_url)  # an older ml-connector-core, still running
    with pytest.raises(LedgerVersionError, match="older"):
        Ledger.open(ledger_url)

    # docs/ledger.md's SQL moves what the older version wrote into the ledger.
    docs = (Path(__file__).parents[2] / "docs" / "ledger.md").read_text()
    [sql] = re.findall(r"```sql\n(.*?)```", docs, re.S)
    engine = make_engine(ledger_url)
    with engine.begin() as conn:
        for statement in filter(str.strip, sql.split(";")):
            if statement.strip() not in ("BEGIN", "COMMIT"):
                conn.exec_driver_sql(statement)
    engine.dispose()
    with Ledger.open(ledger_url) as ledger:
        assert len(ledger.report("job-1").runs) == len(written_by_old["runs"])
        assert [e.action for e in ledger.trace("INV-1")] == [Action.READ, Action.CREATED]
        moved = table_rows(ledger_url, [entries.name])[entries.name]
    assert [(e["source_key"], e["action"]) for e in moved] == [
        (e["source_key"], e["action"]) for e in written_by_old["entries"]]


def test_another_tools_schema_version_table_is_left_alone(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE schema_version (version VARCHAR(50), script TEXT)")
        conn.exec_driver_sql("INSERT INTO schema_version VALUES ('7.1', 'V7_1__init.sql')")
    engine.dispose()
    with Ledger.open(sqlite_url) as ledger:
        ledger.start_run("tap")
    assert table_rows(sqlite_url, ["schema_version"])["schema_version"] == [
        {"version": "7.1", "script": "V7_1__init.sql"}]


MELTANO = Path(sys.executable).with_name("meltano")
STATE_ID = "dev:tap-basware-to-target-sage300"


def meltano(project: Path, database_uri: str, *args: str) -> str:
    """Run the installed Meltano in `project` on the given system database; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTANO_")}
    env |= {"MELTANO_DATABASE_URI": database_uri, "MELTANO_STATE_BACKEND_URI": "systemdb"}
    done = subprocess.run([str(MELTANO), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)  # a bound for a hang, not a criterion
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("first", ["ledger upgraded from v2", "meltano"])
def test_meltano_and_the_ledger_share_one_postgresql_database(
        first: str, pg_url: str, tmp_path: Path) -> None:
    project = tmp_path / "meltano-project"
    project.mkdir()
    (project / "meltano.yml").write_text(
        "project_id: ledger-shares-a-database\nsend_anonymous_usage_stats: false\n"
        "default_environment: dev\nenvironments:\n- name: dev\n")
    state = {"singer_state": {"bookmarks": {"invoices": {"replication_key_value": "2024-05-01"}}}}
    old_entries = []
    if first == "ledger upgraded from v2":
        old_entries = build_v2_ledger(pg_url)["entries"]
        Ledger.open(pg_url).close()

    # Meltano creates (or finds) its system tables, `runs` among them, beside the ledger's.
    meltano(project, pg_url, "state", "set", "--force", STATE_ID, json.dumps(state))
    with Ledger.open(pg_url) as ledger:
        run = ledger.start_run("tap-basware", state_id=STATE_ID)
        ledger.record(Entry(run.run_id, "invoices", "INV-42", Action.READ, payload={"n": 42}))
        ledger.finish_run(run.run_id, "success", {"read": 1})
        [entry] = ledger.trace("INV-42")
        assert (entry.payload, entry.meltano_state_id) == ({"n": 42}, STATE_ID)
        assert ledger.report(run.run_id).runs[0].summary == {"read": 1}
        assert len(ledger.trace("INV-1")) == len([e for e in old_entries
                                                  if e["source_key"] == "INV-1"])
    assert json.loads(meltano(project, pg_url, "state", "get", STATE_ID)) == state

    engine = make_engine(pg_url)
    tables = set(inspect(engine).get_table_names())
    meltano_runs = {c["name"] for c in inspect(engine).get_columns("runs")}
    engine.dispose()
    assert {"runs", "state", runs.name, entries.name, schema_version.name} <= tables
    assert "job_name" in meltano_runs and "plugin" not in meltano_runs  # Meltano's own `runs`


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
        # One opener created the ledger (at the latest version); the others found it.
        assert conn.execute(select(schema_version.c.version)).scalars().all() == [LATEST_VERSION]
        finished = select(func.count()).select_from(runs).where(runs.c.status == "success")
        assert conn.execute(finished).scalar() == workers


def test_concurrent_openers_upgrade_a_v2_ledger_once(ledger_url: str) -> None:
    before = build_v2_ledger(ledger_url)
    workers, each = 4, 5
    with multiprocessing.get_context("spawn").Pool(workers) as pool:  # all race to migrate
        written = pool.starmap(mlc_core_workers.write_entries,
                               [(ledger_url, w, each) for w in range(workers)])
    assert written == [each] * workers
    after = table_rows(ledger_url, [schema_version.name, entries.name])
    assert [row["version"] for row in after[schema_version.name]] == [1, 2, 3, 4, 5, 6]
    assert after[entries.name][:len(before["entries"])] == with_no_reply(before["entries"])
    assert len(after[entries.name]) == len(before["entries"]) + workers * each


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
        Entry(run.run_id, "vendors", "V3", Action.REJECTED, payload_hash=h[3],
              error="Basware: Currency EUR is not active in P2P", basware_request_id="R-3"),
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
    # The latest outcome's reason and Basware import come along (target-basware's re-reads).
    assert (found["V3"].error, found["V3"].basware_request_id) == (
        "Basware: Currency EUR is not active in P2P", "R-3")
    assert (found["V1"].error, found["V1"].basware_request_id) == (None, None)


def test_every_outcome_is_about_one_system(ledger: Ledger) -> None:
    """Deliveries to one Basware tenant (or Sage database) say nothing about another: a new
    one starts from nothing, the same one keeps its dedup and id map."""
    test, prod = "basware https://test-api.basware.com client c1", \
        "basware https://api.basware.com client c1"
    run = ledger.start_run("target-basware")
    h = payload_hash({"n": 1})
    ledger.record(Entry(run.run_id, "vendors", "V1", Action.CREATED, payload_hash=h,
                        target_key="BW-1", system=test))

    assert ledger.was_delivered("vendors", "V1", h, system=test)
    assert not ledger.was_delivered("vendors", "V1", h, system=prod)
    assert ledger.latest_outcome("vendors", "V1", system=prod) is None
    assert ledger.target_key_for("vendors", "V1", system=prod) is None
    assert set(ledger.outcomes("vendors", ["V1"], system=test)) == {"V1"}
    assert ledger.outcomes("vendors", ["V1"], system=prod) == {}
    [entry] = ledger.trace("V1")
    assert entry.system == test


def test_entries_older_than_systems_are_claimed_once_by_their_plugin(ledger_url: str) -> None:
    """A v4 ledger's entries name no system: each plugin's first run on v5 claims its own
    for the system it is configured for (the one they were written for), and only once."""
    engine = make_engine(ledger_url)
    migrate(engine, target=4)
    v4_runs, v4_entries = _runs(MetaData(), 4), _entries(MetaData(), 4)
    now = datetime.now(UTC)
    with engine.begin() as conn:  # as a v4 release wrote them: no system column
        for plugin in ("target-basware", "target-sage300"):
            conn.execute(v4_runs.insert().values(run_id=plugin, plugin=plugin, started_at=now,
                                                 status="success"))
        conn.execute(v4_entries.insert(), [
            {"run_id": "target-basware", "plugin": "target-basware", "stream": "vendors",
             "source_key": "SAMINC/1200", "action": "created", "target_key": "SAMINC-1200",
             "payload_hash": "a" * 64, "created_at": now},
            {"run_id": "target-sage300", "plugin": "target-sage300", "stream": "ap_invoices",
             "source_key": "inv-1", "action": "created", "target_key": "SAMLTD/5/14",
             "payload_hash": None, "created_at": now},
        ])
    engine.dispose()

    tenant = "basware https://api.basware.com client c1"
    with Ledger.open(ledger_url) as ledger:
        assert ledger.outcomes("vendors", ["SAMINC/1200"], system=tenant) == {}
        assert ledger.claim_unassigned("target-basware", tenant) == 1
        assert ledger.claim_unassigned("target-basware", "basware elsewhere client x") == 0
        assert ledger.was_delivered("vendors", "SAMINC/1200", "a" * 64, system=tenant)
        # target-sage300 knows each entry's company only from the entry itself.
        assert ledger.claim_unassigned("target-sage300", lambda entry: "sage300 x company "
                                       + entry.target_key.split("/")[0]) == 1
        assert ledger.target_key_for("ap_invoices", "inv-1",
                                     system="sage300 x company SAMLTD") == "SAMLTD/5/14"
        assert ledger.claim_unassigned("tap-basware", tenant) == 0  # had no entries


def test_replies_are_read_a_page_at_a_time_after_a_cursor(ledger: Ledger) -> None:
    target = ledger.start_run("target-sage300")
    other = ledger.start_run("target-sage300")
    ledger.record_many([
        Entry(target.run_id, "ap_invoices", "INV-1", Action.CREATED, target_key="SAMINC/1/1",
              reply={"success": True, "message": "Created", "batch": 1, "entry": 1}),
        Entry(target.run_id, "ap_invoices", "record 2", Action.REJECTED, error="no source id"),
        Entry(other.run_id, "ap_invoices", "INV-9", Action.REJECTED,
              reply={"success": False, "message": "GL account 6999 does not exist"}),
        *(Entry(target.run_id, "ap_invoices", f"INV-{n}", Action.REJECTED,
                reply={"success": False, "message": f"reason {n}"}) for n in range(2, 8)),
    ])

    first = ledger.replies(target.run_id, limit=4)
    assert [e.source_key for e in first] == ["INV-1", "INV-2", "INV-3", "INV-4"]
    assert first[0].reply == {"success": True, "message": "Created", "batch": 1, "entry": 1}
    rest = ledger.replies(target.run_id, after=first[-1].id, limit=4)
    assert [e.source_key for e in rest] == ["INV-5", "INV-6", "INV-7"]
    assert ledger.replies(target.run_id, after=rest[-1].id) == []
    assert ledger.run(target.run_id).plugin == "target-sage300"
    assert ledger.run(str(uuid.uuid4())) is None


def test_replies_are_redacted(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url, secrets=["s3cret-pw"]) as ledger:
        run = ledger.start_run("target-sage300")
        ledger.record(Entry(run.run_id, "ap_invoices", "INV-1", Action.REJECTED,
                            reply={"success": False, "message": "login s3cret-pw refused"}))
        [entry] = ledger.replies(run.run_id)
    assert "s3cret-pw" not in json.dumps(entry.reply)


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


def test_a_stream_schema_is_stored_once_per_run_and_replayed_with_every_entry(
        ledger: Ledger) -> None:
    """tap-basware passes its SCHEMA with every invoice it reads (14.6 kB each); the ledger
    stores it on the run's first entry of the stream, again only when it changes, and replay
    gives each entry the schema its run had for the stream."""
    schema = {"type": "object", "properties": {"invoiceId": {"type": "string"},
                                               "grossSum": {"type": "number"}}}
    changed = {**schema, "required": ["invoiceId"]}
    first = ledger.start_run("tap-basware").run_id
    ledger.record_many([Entry(first, "accounting_documents", f"I{n}", "read",
                              payload={"invoiceId": f"I{n}"}, schema=schema)
                        for n in (1, 2)])
    ledger.record(Entry(first, "accounting_documents", "I3", "read",
                        payload={"invoiceId": "I3"}, schema=schema))
    ledger.record(Entry(first, "vendors", "V1", "read", payload={"id": "V1"},
                        schema={"type": "object"}))
    ledger.record(Entry(first, "accounting_documents", "I4", "read",
                        payload={"invoiceId": "I4"}, schema=changed))
    second = ledger.start_run("tap-basware").run_id
    ledger.record(Entry(second, "accounting_documents", "I5", "read",
                        payload={"invoiceId": "I5"}, schema=schema))

    with ledger.engine.connect() as conn:
        stored = {row.source_key: row.stream_schema is not None for row in conn.execute(
            select(entries.c.source_key, entries.c.stream_schema))}
    assert stored == {"I1": True, "I2": False, "I3": False, "V1": True, "I4": True,
                      "I5": True}

    replayed = {e.source_key: e.schema for e in ledger.replayable(failed_only=False).entries}
    assert replayed == {"I1": schema, "I2": schema, "I3": schema, "V1": {"type": "object"},
                        "I4": changed, "I5": schema}
    # Only what replay selected is looked up: one key of a run still gets its schema.
    (only,) = ledger.replayable(failed_only=False, keys=["I3"]).entries
    assert only.schema == schema
