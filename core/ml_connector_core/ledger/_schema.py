"""Ledger tables, engines and in-place migrations (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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

#: Every ledger table, index, constraint and sequence name has this prefix (schema v3), so
#: the ledger can share a database, and a PostgreSQL schema, with Meltano's system database
#: (which has its own `runs`) or any other tool's tables.
PREFIX = "ledger_"
_PREFIXED_SINCE = 3
#: entries.reply: what the source system is to be told of a record (schema v4).
_REPLIES_SINCE = 4
#: entries.system: the Basware tenant or Sage 300 database an entry is about (schema v5).
_SYSTEMS_SINCE = 5
#: ledger_refs: the business ids of each record, found without reading payloads (schema v6).
_REFS_SINCE = 6


def _table_name(base: str, version: int) -> str:
    return f"{PREFIX}{base}" if version >= _PREFIXED_SINCE else base


def _runs(md: MetaData, version: int) -> Table:
    name = _table_name("runs", version)
    return Table(
        name, md,
        Column("run_id", String(36), primary_key=True),
        Column("plugin", _ID, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        Column("meltano_job_id", String(255)),
        Column("meltano_state_id", String(255)),
        Column("status", String(20), nullable=False),
        Column("summary", Text),
        Index(f"ix_{name}_started_at", "started_at"),
        Index(f"ix_{name}_meltano_job_id", "meltano_job_id"),
    )


def _schema_version(md: MetaData, version: int) -> Table:
    return Table(
        _table_name("schema_version", version), md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )


def _entries(md: MetaData, version: int) -> Table:
    """The entries table as it is at schema `version`."""
    name = _table_name("entries", version)
    columns = [
        # INTEGER on SQLite so it is the rowid alias (BIGINT would not autoincrement there).
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("run_id", String(36), ForeignKey(f"{_table_name('runs', version)}.run_id"),
               nullable=False),
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
        Index(f"ix_{name}_stream_source_key", "stream", "source_key", "id"),
        Index(f"ix_{name}_payload_hash", "payload_hash"),
        # v4: with id, so a run's entries are read in order a page at a time (replies).
        Index(f"ix_{name}_run_id_id", "run_id", "id") if version >= _REPLIES_SINCE
        else Index(f"ix_{name}_run_id", "run_id"),
        Index(f"ix_{name}_action_created_at", "action", "created_at"),
    ]
    if version >= 2:
        columns += [Column("key_properties", Text), Column("stream_schema", Text)]
    if version >= _REPLIES_SINCE:
        columns += [Column("reply", Text)]
    if version >= _SYSTEMS_SINCE:
        columns += [Column("system", _KEY)]
    return Table(name, md, *columns)


def _unclaimed(md: MetaData) -> Table:
    """Per plugin, whether entries written before schema v5 (system unknown) are still to be
    claimed by that plugin's first run (`Ledger.claim_unassigned`)."""
    return Table(
        f"{PREFIX}unclaimed", md,
        Column("plugin", _ID, primary_key=True),
        Column("entries", BigInteger, nullable=False),
    )


def _refs(md: MetaData) -> Table:
    """The business ids naming each record (stream, source key): an invoice number, a vendor
    number, a PO number, a Sage batch/entry... (`_refs.refs`), each row once. One row per
    record and id, not per entry: an unchanged re-run adds nothing. The primary key is the
    look-up index (ref first); a clustered table on SQLite (no rowid, no second copy)."""
    return Table(
        f"{PREFIX}refs", md,
        Column("ref", _KEY, primary_key=True),
        Column("stream", String(200), primary_key=True),
        Column("source_key", _KEY, primary_key=True),
        sqlite_with_rowid=False,
    )


def _tables(md: MetaData, version: int) -> tuple[Table, ...]:
    """The ledger's tables as they are at schema `version`, in creation order."""
    tables = (_schema_version(md, version), _runs(md, version), _entries(md, version))
    if version >= _SYSTEMS_SINCE:
        tables += (_unclaimed(md),)
    if version >= _REFS_SINCE:
        tables += (_refs(md),)
    return tables


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _add_replay_schema(conn: Connection) -> None:
    for column in ("key_properties", "stream_schema"):
        conn.execute(text(f"ALTER TABLE entries ADD COLUMN {column} TEXT"))


def _prefix_names(conn: Connection) -> None:
    """Rename every table, index, constraint and sequence to its `ledger_` name, keeping rows.

    The result is exactly what creating a v3 ledger gives (test_ledger checks it). SQLite
    rewrites the foreign key and its automatic indexes itself but cannot rename an index:
    those are dropped and created again. On PostgreSQL, a renamed table keeps its constraint
    and sequence names (`runs_pkey`, `entries_id_seq`...), and a primary key's index or a
    sequence takes a name in the schema like a table does: they are renamed too, found in
    the catalog.
    """
    postgres = conn.dialect.name == "postgresql"
    for before, after in zip(_tables(MetaData(), 2), _tables(MetaData(), 3), strict=True):
        conn.execute(text(f"ALTER TABLE {before.name} RENAME TO {after.name}"))
        renamed_indexes = {tuple(ix.columns.keys()): ix for ix in after.indexes}
        for old in before.indexes:
            new = renamed_indexes[tuple(old.columns.keys())]
            if postgres:
                conn.execute(text(f"ALTER INDEX {old.name} RENAME TO {new.name}"))
            else:
                conn.execute(text(f"DROP INDEX {old.name}"))
                new.create(conn)
        if not postgres:
            continue
        constraints = conn.execute(text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"
        ), {"t": after.name}).scalars().all()
        for name in constraints:
            if name.startswith(f"{before.name}_"):
                conn.execute(text(f"ALTER TABLE {after.name} RENAME CONSTRAINT {name} "
                                  f"TO {after.name}_{name.removeprefix(before.name + '_')}"))
        for column in after.primary_key.columns:
            sequence = conn.execute(select(func.pg_get_serial_sequence(after.name, column.name)))
            if (sequence_name := sequence.scalar()) is not None:
                conn.execute(text(f"ALTER SEQUENCE {sequence_name} "
                                  f"RENAME TO {after.name}_{column.name}_seq"))


def _add_replies(conn: Connection) -> None:
    """entries.reply, and the run index extended with id (replies are read in pages)."""
    before, after = _entries(MetaData(), 3), _entries(MetaData(), 4)
    conn.execute(text(f"ALTER TABLE {after.name} ADD COLUMN reply TEXT"))
    conn.execute(text(f"DROP INDEX ix_{before.name}_run_id"))
    next(ix for ix in after.indexes if ix.name == f"ix_{after.name}_run_id_id").create(conn)


def _add_systems(conn: Connection) -> None:
    """entries.system, and a note per plugin of the entries that predate it: the plugin's
    first run on the new version claims them for the system it is configured for."""
    after = _entries(MetaData(), _SYSTEMS_SINCE)
    conn.execute(text(f"ALTER TABLE {after.name} ADD COLUMN system VARCHAR(500)"))
    unclaimed = _unclaimed(MetaData())
    unclaimed.create(conn)
    counts = conn.execute(select(after.c.plugin, func.count()).group_by(after.c.plugin)).all()
    if counts:
        conn.execute(unclaimed.insert(), [{"plugin": plugin, "entries": count}
                                          for plugin, count in counts])


#: Entries read per step of the refs backfill (keyset on id: memory stays flat).
_BACKFILL_ENTRIES = 5000


def insert_refs(conn: Connection, rows: list[tuple[str, str, str]]) -> None:
    """Store (ref, stream, source_key) rows; those already there are left as they are."""
    if not rows:
        return
    # The driver's executemany with plain tuples: SQLAlchemy's insert() processed every row's
    # parameters, a quarter of what recording a read cost (bench/ledger_reads.py).
    # Sorted: writers inserting the same ids at once (tap-sage300's read of a vendor and
    # target-basware's outcome of it) take PostgreSQL's unique-index locks in one order, so
    # they wait for each other instead of deadlocking.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {PREFIX}refs (ref, stream, source_key) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT DO NOTHING", sorted(rows))


def _add_refs(conn: Connection) -> None:
    """ledger_refs, filled from every entry already there (their payloads as stored), so an
    upgraded ledger finds its old records by business id like new ones."""
    from ml_connector_core.ledger import _refs as business

    _refs(MetaData()).create(conn)
    table = _entries(MetaData(), _REFS_SINCE)
    c = table.c
    after = -1
    while True:
        rows = conn.execute(
            select(c.id, c.stream, c.source_key, c.target_key, c.payload, c.sage_batch,
                   c.sage_entry).where(c.id > after).order_by(c.id).limit(_BACKFILL_ENTRIES)
        ).all()
        if not rows:
            return
        after = rows[-1].id
        found = []
        for row in rows:
            try:
                payload = json.loads(row.payload) if row.payload else None
            except ValueError:
                payload = None
            try:
                named = business.refs(row.stream, row.source_key, payload,
                                      target_key=row.target_key, sage_batch=row.sage_batch,
                                      sage_entry=row.sage_entry)
            except Exception:  # noqa: BLE001 - a malformed payload: named by its keys
                named = business.refs(row.stream, row.source_key, None,
                                      target_key=row.target_key)
            found.append((row.stream, row.source_key, named))
        insert_refs(conn, business.unique_refs(found))


#: Ordered; a step is never edited once released, a change is a new step. A new ledger is
#: created at the latest version directly (v1 is the first release's `_tables(md, 1)`).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "entries.key_properties and entries.stream_schema (faithful replay)",
              _add_replay_schema),
    Migration(3, "ledger_ prefix on every table and index (one database with Meltano's)",
              _prefix_names),
    Migration(4, "entries.reply (transfer outcomes handed over through the ledger)",
              _add_replies),
    Migration(5, "entries.system (the Basware tenant or Sage 300 database of each entry)",
              _add_systems),
    Migration(6, "ledger_refs (business ids of each record: invoice, vendor, PO numbers...)",
              _add_refs),
)
LATEST_VERSION = MIGRATIONS[-1].version

metadata = MetaData()
schema_version, runs, entries, unclaimed, refs = _tables(metadata, LATEST_VERSION)

# Any constant works; it only has to be the same for every process opening a ledger.
_PG_MIGRATION_LOCK = 0x6D6C635F6C6467  # "mlc_ldg"


class LedgerVersionError(RuntimeError):
    """The ledger was created by a newer ml-connector-core than the one running."""


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


def _is_unprefixed_ledger(conn: Connection) -> bool:
    """A ledger of schema v1 or v2 (before `ledger_`): its version table and entries table,
    not merely some other tool's `schema_version` in a shared database."""
    inspector = inspect(conn)
    if not (inspector.has_table("schema_version") and inspector.has_table("entries")):
        return False
    columns = {column["name"] for column in inspector.get_columns("entries")}
    return {"run_id", "stream", "source_key", "payload_hash", "action"} <= columns


def current_version(conn: Connection) -> int:
    """The ledger's schema version; 0 if there is no ledger yet."""
    prefixed = inspect(conn).has_table(schema_version.name)
    unprefixed = _is_unprefixed_ledger(conn)
    if prefixed and unprefixed:
        # Only an older ml-connector-core, still running somewhere, creates those tables next
        # to a v3 ledger: its runs would miss what this ledger knows (dedup, id map).
        raise LedgerVersionError(
            "this database holds a ledger (ledger_* tables) and tables of an older ledger "
            "(schema_version, runs, entries) created by an ml-connector-core before v3: "
            "upgrade it everywhere it runs, then move or drop those tables (docs/ledger.md)"
        )
    if not (prefixed or unprefixed):
        return 0
    table = schema_version if prefixed else _schema_version(MetaData(), 2)
    return conn.execute(select(func.max(table.c.version))).scalar() or 0


def migrate(engine: Engine, target: int = LATEST_VERSION) -> int:
    """Bring the ledger to schema `target` in place; returns the version it is at.

    A new ledger is created at `target` directly (an older `target` builds a ledger as an
    earlier release left it, for tests). All missing steps run in one transaction (DDL is
    transactional on SQLite and PostgreSQL), so a failed migration leaves the ledger as it
    was. Concurrent openers serialize on a lock (PostgreSQL advisory lock, SQLite write lock)
    and the later ones find nothing to do.
    """

    def record(conn: Connection, version: int, description: str) -> None:
        conn.execute(_schema_version(MetaData(), version).insert().values(
            version=version, description=description, applied_at=datetime.now(UTC)))

    def work(conn: Connection) -> int:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        version = current_version(conn)
        if version > LATEST_VERSION:
            raise LedgerVersionError(
                f"ledger schema is v{version}, this ml-connector-core knows up to "
                f"v{LATEST_VERSION}: upgrade ml-connector-core"
            )
        if version == 0:
            for table in _tables(MetaData(), target):
                table.create(conn)
            record(conn, target, f"new ledger at v{target}")
            return target
        for step in MIGRATIONS:
            if version < step.version <= target:
                step.apply(conn)
                record(conn, step.version, step.description)
        return max(version, target)

    return write_with_retry(engine, work)
