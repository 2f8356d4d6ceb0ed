"""Ledger tables, engines and in-place migrations (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

_ID = String(100)
_KEY = String(500)


def _runs(md: MetaData) -> Table:
    return Table(
        "runs", md,
        Column("run_id", String(36), primary_key=True),
        Column("plugin", _ID, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        Column("meltano_job_id", String(255)),
        Column("meltano_state_id", String(255)),
        Column("status", String(20), nullable=False),
        Column("summary", Text),
        Index("ix_runs_started_at", "started_at"),
        Index("ix_runs_meltano_job_id", "meltano_job_id"),
    )


def _schema_version(md: MetaData) -> Table:
    return Table(
        "schema_version", md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )


def _entries(md: MetaData, version: int) -> Table:
    """The entries table as it is at schema `version` (migrations create old shapes)."""
    columns = [
        # INTEGER on SQLite so it is the rowid alias (BIGINT would not autoincrement there).
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("run_id", String(36), ForeignKey("runs.run_id"), nullable=False),
        Column("meltano_job_id", String(255)),
        Column("meltano_state_id", String(255)),
        Column("plugin", _ID, nullable=False),
        Column("direction", String(40)),
        Column("stream", String(200), nullable=False),
        Column("source_key", _KEY, nullable=False),
        Column("target_key", _KEY),
        Column("payload_hash", String(64)),
        Column("payload", Text),
        # Validated in Python (Action): a CHECK would need a table rebuild on SQLite per new action.
        Column("action", String(20), nullable=False),
        Column("basware_request_id", _ID),
        Column("bw_request_id", _ID),
        Column("sage_batch", _ID),
        Column("sage_entry", _ID),
        Column("sage_document", _ID),
        Column("error", Text),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_entries_stream_source_key", "stream", "source_key", "id"),
        Index("ix_entries_payload_hash", "payload_hash"),
        Index("ix_entries_run_id", "run_id"),
        Index("ix_entries_action_created_at", "action", "created_at"),
    ]
    if version >= 2:
        columns += [Column("key_properties", Text), Column("stream_schema", Text)]
    return Table("entries", md, *columns)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    md = MetaData()
    for table in (_schema_version(md), _runs(md), _entries(md, version=1)):
        table.create(conn)


def _add_replay_schema(conn: Connection) -> None:
    for column in ("key_properties", "stream_schema"):
        conn.execute(text(f"ALTER TABLE entries ADD COLUMN {column} TEXT"))


#: Ordered; a step is never edited once released, a change is a new step.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, entries and their lookup indexes", _create_v1),
    Migration(2, "entries.key_properties and entries.stream_schema (faithful replay)",
              _add_replay_schema),
)
LATEST_VERSION = MIGRATIONS[-1].version

metadata = MetaData()
runs = _runs(metadata)
schema_version = _schema_version(metadata)
entries = _entries(metadata, LATEST_VERSION)

# Any constant works; it only has to be the same for every process opening a ledger.
_PG_MIGRATION_LOCK = 0x6D6C635F6C6467  # "mlc_ldg"


class LedgerVersionError(RuntimeError):
    """The ledger was created by a newer ml-connector-core than the one running."""


LEDGER_URL_ENV = "ML_CONNECTOR_LEDGER_URL"


def default_ledger_url() -> str:
    """``$ML_CONNECTOR_LEDGER_URL`` if set (one ledger for every plugin of a deployment), else
    `sqlite:///<MELTANO_PROJECT_ROOT or cwd>/.ml-connector/ledger.sqlite`; creates the dir."""
    if os.environ.get(LEDGER_URL_ENV):
        return os.environ[LEDGER_URL_ENV]
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path.cwd())
    directory = root / ".ml-connector"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(directory / 'ledger.sqlite').resolve()}"


def make_engine(url: str) -> Engine:
    """An engine for a ledger URL. Plain `postgresql://` means psycopg 3 (the `postgres` extra).

    SQLite connections use WAL (readers never block the writer), a busy timeout, enforced
    foreign keys, and transactions we begin ourselves: `BEGIN IMMEDIATE` for writers (takes the
    write lock up front, so two writers wait instead of deadlocking on a lock upgrade).
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)

    engine = create_engine(parsed)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN; pysqlite would skip it for DDL
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writer = conn.get_execution_options().get("ledger_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, marked so SQLite transactions take the write lock at BEGIN."""
    return engine.execution_options(ledger_write=True)


T = TypeVar("T")
# On top of the 30 s busy_timeout per attempt: long enough to outlast any sane writer.
_LOCK_RETRY_SECONDS = 120.0


def write_with_retry(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in a write transaction; retry it whole when SQLite reports a lock.

    busy_timeout already waits for the lock; this covers the cases SQLite reports without
    waiting (e.g. a busy WAL snapshot or checkpoint). The failed transaction was rolled back,
    so retrying cannot write twice.
    """
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    delay = 0.01
    while True:
        try:
            with writer(engine).begin() as conn:
                return work(conn)
        except OperationalError as exc:
            locked = "database is locked" in str(exc) or "database is busy" in str(exc)
            if not locked or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0, delay))
        delay = min(delay * 2, 1.0)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(select(func.max(schema_version.c.version))).scalar() or 0


def migrate(engine: Engine, target: int = LATEST_VERSION) -> int:
    """Bring the ledger to schema `target` in place; returns the version it is at.

    All missing steps run in one transaction (DDL is transactional on SQLite and PostgreSQL), so
    a failed migration leaves the ledger as it was. Concurrent openers serialize on a lock
    (PostgreSQL advisory lock, SQLite write lock) and the later ones find nothing to do.
    """

    def work(conn: Connection) -> int:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        version = current_version(conn)
        if version > LATEST_VERSION:
            raise LedgerVersionError(
                f"ledger schema is v{version}, this ml-connector-core knows up to "
                f"v{LATEST_VERSION}: upgrade ml-connector-core"
            )
        for step in MIGRATIONS[version:target]:
            step.apply(conn)
            conn.execute(schema_version.insert().values(
                version=step.version, description=step.description,
                applied_at=datetime.now(UTC),
            ))
        return max(version, target)

    return write_with_retry(engine, work)
