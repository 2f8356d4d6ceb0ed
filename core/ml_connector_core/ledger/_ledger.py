"""The audit ledger (BRIEF decision 7): what every plugin read or wrote, and what came of it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, case, func, or_, select, tuple_
from sqlalchemy.engine import Row

from ml_connector_core.ledger import _refs as business
from ml_connector_core.ledger._schema import (
    entries,
    insert_refs,
    make_engine,
    migrate,
    refs,
    runs,
    unclaimed,
    write_with_retry,
)
from ml_connector_core.ledger.location import default_ledger_url
from ml_connector_core.redaction import Redactor

SAGE_TO_BASWARE = "sage300->basware"
BASWARE_TO_SAGE = "basware->sage300"

# Error texts can carry whole HTTP bodies; the first lines are what an operator needs.
_MAX_ERROR_CHARS = 10_000
_MAX_SCHEMAS_KEPT = 64  # distinct SCHEMA objects remembered (a run has a few streams)
# Keys per IN (...) of a bulk look-up: well under SQLite's 999 bound parameters.
_BULK_KEYS = 500
# (ref, stream, source_key) rows a Ledger remembers having stored, so a record's later
# entries (its outcome after its read) do not store them again; cleared when full.
_REFS_KEPT = 200_000
#: The ledger's own bookkeeping, not records: the mark of the state each run was handed
#: (ml_connector_core.restore). Left out of reports and replays.
MARKS_STREAM = "state_marks"


class Action(StrEnum):
    """What happened to a record. `read` is an observation; every other action is an outcome."""

    READ = "read"
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    FAILED = "failed"
    ACKNOWLEDGED = "acknowledged"
    RESPONDED = "responded"
    #: Sent inactive (closed, for orders and lines) because the source deleted the record.
    DEACTIVATED = "deactivated"


SUCCESS = frozenset({Action.CREATED, Action.UPDATED, Action.UNCHANGED, Action.ACKNOWLEDGED,
                     Action.RESPONDED, Action.DEACTIVATED})
FAILURE = frozenset({Action.REJECTED, Action.FAILED})


@dataclass(frozen=True)
class Run:
    """One plugin invocation."""

    run_id: str
    plugin: str
    started_at: datetime
    job_id: str | None = None
    state_id: str | None = None
    status: str = "running"
    finished_at: datetime | None = None
    summary: Any = None


@dataclass(frozen=True)
class Entry:
    """One ledger line. Build it with the first four fields plus whatever you know.

    On `record()`: `payload` (a record dict) is stored as redacted JSON and, unless given,
    `payload_hash` is computed from it; `error` may be an exception; `plugin`, the Meltano ids
    and `created_at` are filled in from the run and the clock. `key_properties` and `schema`
    (the stream's Singer SCHEMA) let `audit replay` emit a faithful SCHEMA message; a schema
    is stored once per run and stream (again only if it changes) and read back from there.
    `reply` (JSON-able) is what the source system is to be told of the record: target-sage300's
    transfer outcome, which tap-basware answers to Basware (`Ledger.replies`). `system` is the
    Basware tenant or Sage 300 database the entry is about (`ml_connector_core.systems`): every
    outcome query of a plugin names the system it talks to, so another tenant or database
    starts from nothing.
    Entries read back have `id` set, `payload`/`schema` parsed and `created_at` in UTC.
    """

    run_id: str
    stream: str
    source_key: str
    action: Action | str
    target_key: str | None = None
    direction: str | None = None
    payload: Any = None
    payload_hash: str | None = None
    error: str | BaseException | None = None
    basware_request_id: str | None = None  # x-amzn-RequestId of an async Basware import
    bw_request_id: str | None = None  # our X-BW-REQUEST-ID
    sage_batch: str | None = None
    sage_entry: str | None = None
    sage_document: str | None = None
    key_properties: Sequence[str] | None = None
    schema: Mapping[str, Any] | None = None
    reply: Any = None
    system: str | None = None
    plugin: str | None = None
    meltano_job_id: str | None = None
    meltano_state_id: str | None = None
    created_at: datetime | None = None
    id: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class KeyOutcome:
    """Where one key stands (`Ledger.outcomes`): its latest outcome and payload hash, and the
    target key of its latest successful write (None if it was never written). `error` and
    `basware_request_id` are those of the latest outcome (e.g. the Basware import whose
    requestStatus rejected the record, and Basware's reason)."""

    action: Action
    payload_hash: str | None
    target_key: str | None = None
    error: str | None = None
    basware_request_id: str | None = None

    def delivered_as(self, payload_hash: str) -> bool:
        """True if the latest outcome is a success for exactly this payload (`was_delivered`)."""
        return self.action in SUCCESS and self.payload_hash == payload_hash


@dataclass(frozen=True)
class Written:
    """A key that was written successfully (`Ledger.written`): its latest outcome, and the
    payload of its latest successful write that kept one (what the destination holds)."""

    source_key: str
    outcome: KeyOutcome
    payload: Any


@dataclass(frozen=True)
class FailureGroup:
    """Failures of one stream that share a cause (error first line, numbers and ids collapsed)."""

    stream: str
    cause: str
    count: int
    keys: int
    example_keys: tuple[str, ...]
    example_error: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ResolvedRecord:
    """A record a business id names (`Ledger.resolve`): one (stream, source key), with what
    the ledger knows of it. `plugin` wrote its latest outcome (else its latest entry);
    `plugins` are all that wrote about it. `business_ids` are labelled (invoice, vendor, po,
    company, sage entry, amount, currency...: `_refs.business_ids`) from its newest payload;
    `business_id` is the one a person types for it. `matched` is False for a record found only
    as the same record in another stream of its family (the invoice's transfer response).
    Records of more than one `subject` mean the id is ambiguous (a vendor number used in two
    companies): name it with its company."""

    stream: str
    source_key: str
    direction: str | None
    plugin: str
    plugins: tuple[str, ...]
    family: str
    subject: str
    business_id: str
    business_ids: dict[str, str]
    latest_action: Action
    latest_at: datetime
    matched: bool = True


@dataclass(frozen=True)
class OpenFailure:
    """A record whose latest outcome is a failure (`Ledger.open_failures`). `error` is the
    latest failure's full text (redacted when stored); `first_failed_at` is the first failure
    since the record's last success (or ever), `failures` how many there were since. The
    business ids are as in `ResolvedRecord`, from the record's newest payload in its family
    (an acknowledge failure keeps no payload; its read does)."""

    stream: str
    source_key: str
    direction: str | None
    plugin: str
    error: str
    first_failed_at: datetime
    last_failed_at: datetime
    failures: int
    business_id: str
    business_ids: dict[str, str]
    system: str | None = None
    action: Action = Action.REJECTED
    #: With `Ledger.failed_records`: the success that resolved the record, and when (None
    #: while it is open). Then `first_failed_at` and `failures` count every failure it had.
    resolved_by: Action | None = None
    resolved_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.resolved_by is None


@dataclass(frozen=True)
class Replay:
    """What `replayable()` selected: entries to replay (oldest first) and keys left alone."""

    entries: list[Entry]
    skipped: list[tuple[Entry, str]]  # (latest entry of the key, why it is not replayed)


@dataclass(frozen=True)
class Report:
    """Counts per stream and action over the selected runs."""

    runs: list[Run]
    counts: dict[str, dict[str, int]]


_AS_IS = frozenset({str, int, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for a record as Singer targets see it (Decimal, datetime, date...).

    Numbers are canonical so the same value hashes the same whether it came as int, float or
    Decimal: integral values become int, others float (exact for money amounts). Aware
    datetimes are written in UTC.
    """
    if value.__class__ in _AS_IS:  # the common case, without isinstance chains (hot path)
        return value
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Mapping):
        return {(key if key.__class__ is str else str(key)):
                (item if item.__class__ in _AS_IS else to_jsonable(item))
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, float | Decimal):
        if isinstance(value, Decimal) and not value.is_finite() or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            return str(value)  # JSON has no NaN/Infinity
        return int(value) if value == int(value) else float(value)
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"the ledger cannot store a {type(value).__name__}: {value!r}")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(payload: Any) -> str:
    """sha256 (hex) of the canonical JSON of `payload`: sorted keys, canonical numbers/dates."""
    return _sha256(_dumps(to_jsonable(payload)))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
# Any word with a digit is an id or a number; HTTP statuses stay (400 and 409 differ in cause).
_WORD_WITH_DIGIT = re.compile(r"(?<!HTTP )\b\w*\d\w*\b")


def normalize_cause(error: str | None) -> str:
    """The first line of an error with quoted values, UUIDs and numbers/ids collapsed."""
    first = next((line.strip() for line in (error or "").splitlines() if line.strip()), "")
    first = _QUOTED.sub("'…'", first)
    first = _UUID.sub("<id>", first)
    return _WORD_WITH_DIGIT.sub("#", first) or "(no error text)"


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC; SQLite hands datetimes back naive (they were stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Ledger:
    """The audit ledger on one database (`Ledger.open(url)`); safe to share between threads.

    Every payload, summary and error text is redacted with the ledger's Redactor before it is
    stored. Outcome queries read one (stream, source_key) timeline: `read` entries are
    observations and never count as an outcome.
    """

    def __init__(self, engine: Engine, redactor: Redactor) -> None:
        self.engine = engine
        self.redactor = redactor
        self._runs: dict[str, Run] = {}
        # A stream's SCHEMA as stored, per schema object: it is the same object for every
        # entry of a stream, and serializing it per entry cost more than the entry itself
        # (14.6 kB per invoice read, 5 ms: tap-basware's largest cost).
        self._schema_texts: dict[int, tuple[Mapping[str, Any], str]] = {}
        # The schema text last stored per (run, stream): an entry stores it only when new.
        self._schemas_stored: dict[tuple[str, str], str] = {}
        # Business ids this Ledger stored (`ledger_refs`): a record's outcome after its read
        # names the same ids; they are not written again.
        self._refs_stored: set[tuple[str, str, str]] = set()

    payload_hash = staticmethod(payload_hash)

    @classmethod
    def open(cls, url: str | None = None, *, secrets: Iterable[str] | Redactor = ()) -> Ledger:
        """Open (creating or migrating in place) the ledger at `url`, default
        `default_ledger_url()`. `secrets`: values never to store, or a ready Redactor."""
        engine = make_engine(url or default_ledger_url())
        migrate(engine)
        redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)
        return cls(engine, redactor)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def start_run(self, plugin: str, job_id: str | None = None,
                  state_id: str | None = None) -> Run:
        """Register a run. The Meltano ids default to $MELTANO_RUN_ID / $MELTANO_STATE_ID: an
        operator or scheduler exporting MELTANO_RUN_ID (which `meltano run` also takes as its
        run id) makes the tap's and the target's runs correlate."""
        run = Run(
            run_id=str(uuid.uuid4()), plugin=plugin, started_at=datetime.now(UTC),
            job_id=job_id or os.environ.get("MELTANO_RUN_ID"),
            state_id=state_id or os.environ.get("MELTANO_STATE_ID"),
        )
        write_with_retry(self.engine, lambda conn: conn.execute(runs.insert().values(
            run_id=run.run_id, plugin=plugin, started_at=run.started_at, status=run.status,
            meltano_job_id=run.job_id, meltano_state_id=run.state_id,
        )))
        self._runs[run.run_id] = run
        return run

    def finish_run(self, run_id: str, status: str, summary: Any = None) -> None:
        """Close a run with a status (e.g. `success`, `failed`) and a JSON-able summary."""
        text = None if summary is None else _dumps(self.redactor.redact_obj(to_jsonable(summary)))
        write_with_retry(self.engine, lambda conn: conn.execute(
            runs.update().where(runs.c.run_id == run_id).values(
                status=status, finished_at=datetime.now(UTC), summary=text)
        ))

    def record(self, entry: Entry) -> None:
        """Store one entry (own transaction)."""
        self.record_many([entry])

    def record_many(self, batch: Iterable[Entry]) -> int:
        """Store entries in one transaction (all or none); returns how many."""
        schemas: dict[tuple[str, str], str] = {}  # stored by this batch
        named: list[tuple[str, str, set[str]]] = []  # each entry's business ids
        rows = [self._row(entry, schemas, named) for entry in batch]
        if not rows:
            return 0
        new_refs = [ref for ref in business.unique_refs(named) if ref not in self._refs_stored]

        def work(conn: Any) -> None:
            conn.execute(entries.insert(), rows)
            insert_refs(conn, new_refs)  # same transaction: an entry is never without its ids

        write_with_retry(self.engine, work)
        self._schemas_stored.update(schemas)  # only once they are in the database
        if len(self._refs_stored) + len(new_refs) > _REFS_KEPT:
            self._refs_stored.clear()
        self._refs_stored.update(new_refs)
        return len(rows)

    def _schema_text(self, schema: Mapping[str, Any]) -> str:
        known = self._schema_texts.get(id(schema))
        if known is not None and known[0] is schema:
            return known[1]
        text = _dumps(self.redactor.redact_obj(to_jsonable(schema), by_key=False))
        if len(self._schema_texts) >= _MAX_SCHEMAS_KEPT:  # callers that build a dict each time
            self._schema_texts.clear()
        self._schema_texts[id(schema)] = (schema, text)
        return text

    def _run(self, run_id: str) -> Run:
        """The run an entry belongs to (cached: its ids go into every entry)."""
        run = self._runs.get(run_id) or self.run(run_id)
        if run is None:
            raise ValueError(f"unknown run_id {run_id!r}: call start_run() first")
        self._runs[run_id] = run
        return run

    def _row(self, entry: Entry, schemas: dict[tuple[str, str], str],
             named: list[tuple[str, str, set[str]]]) -> dict[str, Any]:
        run = self._run(entry.run_id)
        schema = None if entry.schema is None else self._schema_text(entry.schema)
        if schema is not None:
            where = (run.run_id, entry.stream)
            if schema in (schemas.get(where), self._schemas_stored.get(where)):
                schema = None  # this run has it for this stream already
            else:
                schemas[where] = schema
        action = Action(entry.action)  # ValueError on anything outside the enum
        redact = self.redactor
        stored, digest, payload = None, entry.payload_hash, None
        if entry.payload is not None:
            payload = to_jsonable(entry.payload)
            canonical = _dumps(payload)  # payload_hash's text; stored as is when nothing is secret
            digest = digest or _sha256(canonical)
            if redact.json_is_clean(canonical):
                stored = canonical
            else:
                payload = redact.redact_obj(payload)  # the ids come from what is stored
                stored = _dumps(payload)
        source_key = str(entry.source_key)
        target_key = None if entry.target_key is None else str(entry.target_key)
        if entry.stream != MARKS_STREAM:  # the ledger's bookkeeping names no record
            named.append((entry.stream, source_key, _refs_of(entry, source_key, target_key,
                                                             payload)))
        error = entry.error
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        return {
            "run_id": run.run_id,
            "meltano_job_id": entry.meltano_job_id or run.job_id,
            "meltano_state_id": entry.meltano_state_id or run.state_id,
            "plugin": entry.plugin or run.plugin,
            "direction": entry.direction,
            "stream": entry.stream,
            "source_key": source_key,
            "target_key": target_key,
            "payload_hash": digest,
            "payload": stored,
            "action": action.value,
            "basware_request_id": entry.basware_request_id,
            "bw_request_id": entry.bw_request_id,
            "sage_batch": entry.sage_batch,
            "sage_entry": entry.sage_entry,
            "sage_document": entry.sage_document,
            "error": None if error is None else redact.redact(error)[:_MAX_ERROR_CHARS],
            "key_properties": None if entry.key_properties is None
            else _dumps(list(entry.key_properties)),
            "stream_schema": schema,
            "reply": None if entry.reply is None
            else _dumps(redact.redact_obj(to_jsonable(entry.reply))),
            "system": entry.system,
            "created_at": _utc(entry.created_at) or datetime.now(UTC),
        }

    # -- reading ---------------------------------------------------------------------------

    def _select(self, statement: Any) -> list[Entry]:
        with self.engine.connect() as conn:
            return [_entry_from_row(row) for row in conn.execute(statement)]

    def latest_outcome(self, stream: str, source_key: str, system: str | None = None
                       ) -> Entry | None:
        """The newest non-`read` entry for the key (about `system`, when given), or None if
        it never had an outcome."""
        found = self._select(
            select(entries)
            .where(entries.c.stream == stream, entries.c.source_key == str(source_key),
                   entries.c.action != Action.READ.value, *_about(system))
            .order_by(entries.c.id.desc()).limit(1)
        )
        return found[0] if found else None

    def was_delivered(self, stream: str, source_key: str, payload_hash: str,
                      system: str | None = None) -> bool:
        """True if the key's latest outcome (in `system`) is a success for exactly this
        payload hash: the target can skip the write (dedup across re-reads and re-runs)."""
        latest = self.latest_outcome(stream, source_key, system)
        return (latest is not None and latest.action in SUCCESS
                and latest.payload_hash == payload_hash)

    def target_key_for(self, stream: str, source_key: str, system: str | None = None
                       ) -> str | None:
        """The external id the key was last successfully written under in `system` (the id
        map, e.g. Basware invoice id -> Sage 300 document), or None: check before creating."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(entries.c.target_key)
                .where(entries.c.stream == stream, entries.c.source_key == str(source_key),
                       entries.c.target_key.is_not(None),
                       entries.c.action.in_([a.value for a in SUCCESS]), *_about(system))
                .order_by(entries.c.id.desc()).limit(1)
            ).scalar()

    def outcomes(self, stream: str, source_keys: Iterable[str], system: str | None = None
                 ) -> dict[str, KeyOutcome]:
        """For many keys of one stream at once (a few queries per 500 keys, not two per key):
        each key's latest outcome in `system` and the target key it was last written under
        there. Keys that never had an outcome are absent. `latest_outcome` and
        `target_key_for`, in bulk."""
        keys = list(dict.fromkeys(str(key) for key in source_keys))
        c = entries.c
        found: dict[str, KeyOutcome] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _BULK_KEYS):
                chunk = keys[start:start + _BULK_KEYS]
                where = (c.stream == stream, c.source_key.in_(chunk), *_about(system))
                latest = (select(func.max(c.id)).where(*where, c.action != Action.READ.value)
                          .group_by(c.source_key))
                for row in conn.execute(select(c.source_key, c.action, c.payload_hash, c.error,
                                               c.basware_request_id)
                                        .where(c.id.in_(latest))):
                    found[row.source_key] = KeyOutcome(
                        Action(row.action), row.payload_hash, error=row.error,
                        basware_request_id=row.basware_request_id)
                written = (select(func.max(c.id)).where(
                    *where, c.target_key.is_not(None),
                    c.action.in_([a.value for a in SUCCESS])).group_by(c.source_key))
                for row in conn.execute(select(c.source_key, c.target_key)
                                        .where(c.id.in_(written))):
                    outcome = found.get(row.source_key)
                    if outcome is not None:
                        found[row.source_key] = replace(outcome, target_key=row.target_key)
        return found

    def written(self, stream: str, system: str | None = None,
                source_keys: Iterable[str] | None = None) -> Iterator[Written]:
        """The keys of `stream` (all of them, or those in `source_keys`) that were written
        successfully in `system` with a payload kept, each with its latest outcome and that
        payload: what a target delivered and where it stands now. A few queries per 500 keys;
        a target compares them with what the source still has (deletions)."""
        c = entries.c
        success = [a.value for a in SUCCESS]
        chunks: Iterable[list[str] | None] = [None]
        if source_keys is not None:
            keys = list(dict.fromkeys(str(key) for key in source_keys))
            chunks = [keys[i:i + _BULK_KEYS] for i in range(0, len(keys), _BULK_KEYS)]
        with self.engine.connect() as conn:
            for chunk in chunks:
                where = [c.stream == stream, *_about(system)]
                if chunk is not None:
                    where.append(c.source_key.in_(chunk))
                kept = (select(func.max(c.id)).where(
                    *where, c.action.in_(success), c.target_key.is_not(None),
                    c.payload.is_not(None)).group_by(c.source_key))
                payloads = {row.source_key: (row.target_key, _loads(row.payload)) for row in
                            conn.execute(select(c.source_key, c.target_key, c.payload)
                                         .where(c.id.in_(kept)))}
                if not payloads:
                    continue
                latest = (select(func.max(c.id)).where(*where, c.action != Action.READ.value)
                          .group_by(c.source_key))
                for row in conn.execute(select(c.source_key, c.action, c.payload_hash,
                                               c.error, c.basware_request_id)
                                        .where(c.id.in_(latest)).order_by(c.source_key)):
                    kept_row = payloads.get(row.source_key)
                    if kept_row is None:
                        continue
                    yield Written(row.source_key, KeyOutcome(
                        Action(row.action), row.payload_hash, target_key=kept_row[0],
                        error=row.error, basware_request_id=row.basware_request_id),
                        kept_row[1])

    def failing(self, stream: str, system: str | None = None) -> dict[str, Any]:
        """The keys of `stream` (about `system`) whose latest outcome is a failure, each with
        the payload that failure kept (None if none): e.g. records Basware never took, which a
        target compares with what the source still has (a record the source deleted before
        Basware took it is resolved, not deactivated)."""
        c = entries.c
        failure = [a.value for a in FAILURE]
        with self.engine.connect() as conn:
            keys = conn.execute(select(c.source_key).distinct().where(
                c.stream == stream, c.action.in_(failure), *_about(system))).scalars().all()
        failing = [key for key, outcome in self.outcomes(stream, keys, system).items()
                   if outcome.action in FAILURE]
        found: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(failing), _BULK_KEYS):
                chunk = failing[start:start + _BULK_KEYS]
                latest = (select(func.max(c.id)).where(
                    c.stream == stream, c.source_key.in_(chunk), *_about(system),
                    c.action != Action.READ.value).group_by(c.source_key))
                for row in conn.execute(select(c.source_key, c.payload).where(c.id.in_(latest))):
                    found[row.source_key] = _loads(row.payload)
        return found

    def payload_history(self, stream: str, source_keys: Iterable[str],
                        system: str | None = None) -> dict[str, list[Any]]:
        """Every payload the keys' outcomes in `system` kept, oldest first (read entries
        left out): e.g. each version of an order's list of lines a target was given."""
        keys = list(dict.fromkeys(str(key) for key in source_keys))
        c = entries.c
        found: dict[str, list[Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _BULK_KEYS):
                chunk = keys[start:start + _BULK_KEYS]
                for row in conn.execute(
                        select(c.source_key, c.payload)
                        .where(c.stream == stream, c.source_key.in_(chunk), *_about(system),
                               c.action != Action.READ.value, c.payload.is_not(None))
                        .order_by(c.id)):
                    found.setdefault(row.source_key, []).append(_loads(row.payload))
        return found

    def latest_entry(self) -> tuple[int, str] | None:
        """The id and run of the newest entry (of any plugin), or None in an empty ledger: a
        mark that later entries are newer than (`new_keys`)."""
        c = entries.c
        with self.engine.connect() as conn:
            row = conn.execute(select(c.id, c.run_id).order_by(c.id.desc()).limit(1)).first()
        return None if row is None else (int(row.id), str(row.run_id))

    def entry_run(self, entry_id: int) -> str | None:
        """The run that wrote entry `entry_id`, None if this ledger has no such entry (a mark
        from another ledger, or from before a restore, is recognised as such)."""
        with self.engine.connect() as conn:
            return conn.execute(select(entries.c.run_id)
                                .where(entries.c.id == int(entry_id))).scalar()

    def new_keys(self, plugin: str, stream: str, system: str | None, after_id: int) -> int:
        """How many keys `plugin` wrote its first entry of `stream` (about `system`) for after
        entry `after_id`: e.g. the records a tap saw for the first time since a mark."""
        c = entries.c
        older = entries.alias("older")
        earlier = (select(older.c.id).where(
            older.c.stream == stream, older.c.source_key == c.source_key,
            older.c.plugin == plugin, older.c.id <= after_id,
            *(() if system is None else (older.c.system == system,))).exists())
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count(c.source_key.distinct()))
                .where(c.id > after_id, c.plugin == plugin, c.stream == stream,
                       *_about(system), ~earlier)).scalar() or 0)

    def claim_unassigned(self, plugin: str, system: Any) -> int:
        """Assign `plugin`'s entries written before ledger schema v5 (which did not record
        their system) to the system it is configured for now, once: the first run after the
        upgrade talks to the systems those entries were written for (upgrade first, switch
        systems later: docs/ledger.md). `system` is the identity, or a function of an entry
        giving it (target-sage300 knows the company of each entry only from the entry).
        Returns how many entries were claimed; one small query when there is nothing to do."""
        with self.engine.connect() as conn:
            pending = conn.execute(select(unclaimed.c.entries)
                                   .where(unclaimed.c.plugin == plugin)).scalar()
        if pending is None:
            return 0
        c = entries.c
        legacy = (c.plugin == plugin, c.system.is_(None))

        def work(conn: Any) -> int:
            if not callable(system):
                claimed = conn.execute(entries.update().where(*legacy)
                                       .values(system=system)).rowcount
            else:
                claimed = 0
                rows = conn.execute(select(entries).where(*legacy)).all()
                by_system: dict[str, list[int]] = {}
                for row in rows:
                    found = system(_entry_from_row(row))
                    if found:
                        by_system.setdefault(found, []).append(row.id)
                for found, ids in by_system.items():
                    for start in range(0, len(ids), _BULK_KEYS):
                        claimed += conn.execute(entries.update().where(
                            c.id.in_(ids[start:start + _BULK_KEYS])).values(system=found)
                        ).rowcount
            conn.execute(unclaimed.delete().where(unclaimed.c.plugin == plugin))
            return claimed

        return write_with_retry(self.engine, work)

    def run(self, run_id: str) -> Run | None:
        """A run as the ledger holds it now, None if this ledger has no such run."""
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else _run_from_row(row)

    def replies(self, run_id: str, after: int = 0, limit: int = _BULK_KEYS) -> list[Entry]:
        """A page of the run's entries that carry a reply, with id greater than `after`,
        oldest first: the outbox a later run answers to the source system, a page at a
        time, keeping the last id it answered as its cursor."""
        c = entries.c
        return self._select(select(entries)
                            .where(c.run_id == run_id, c.id > after, c.reply.is_not(None))
                            .order_by(c.id).limit(limit))

    # -- business ids ----------------------------------------------------------------------

    def named_by(self, stream: str, ids: Iterable[str]) -> dict[str, str]:
        """For business ids (a Sage entry COMPANY/BATCH/ENTRY, ...): the source key of the
        record of `stream` each names, from ledger_refs (indexed; no payload is read). An id
        naming no record of the stream is absent. target-basware finds the Basware invoice a
        posted Sage document came from this way (its batch and entry)."""
        wanted = {business.normalize_ref(ref): ref for ref in ids}
        found: dict[str, str] = {}
        r = refs.c
        keys = list(wanted)
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _BULK_KEYS):
                for row in conn.execute(select(r.ref, r.source_key).where(
                        r.stream == stream, r.ref.in_(keys[start:start + _BULK_KEYS]))):
                    found.setdefault(wanted[row.ref], row.source_key)
        return found

    def resolve(self, ref: str) -> list[ResolvedRecord]:
        """The records a business id names: an invoice number (INV-18825), a Basware invoice
        id, a vendor (SAMLTD/1600, or 1600 alone), a PO number (PO200161 or SAMLTD/PO200161;
        its lines too), a Sage entry (SAMINC/5/14, or 5/14 alone), an externalCode, a source or
        target key. Case and surrounding blanks do not matter. Each record comes with the same
        record in the other streams of its family (an invoice's read, its Sage outcome, its
        transfer response), oldest first. Empty when nothing is named so. Records of more than
        one `subject`: the id is ambiguous (`ResolvedRecord`)."""
        wanted = business.normalize_ref(ref)
        r = refs.c
        with self.engine.connect() as conn:
            direct = list(dict.fromkeys(
                (row.stream, row.source_key) for row in conn.execute(
                    select(r.stream, r.source_key).where(r.ref == wanted))))
            if not direct:
                return []
            family = {(stream, key) for found, key in direct
                      for stream in business.family_streams(found)}
            found = list(direct)
            for start in range(0, len(direct), _BULK_KEYS):
                keys = {business.normalize_ref(key) for _, key in direct[start:start + _BULK_KEYS]}
                for row in conn.execute(select(r.stream, r.source_key).where(r.ref.in_(keys))):
                    if (row.stream, row.source_key) in family:
                        found.append((row.stream, row.source_key))
            described = self._describe(conn, list(dict.fromkeys(found)))
        matched = set(direct)
        records = [replace(record, matched=(record.stream, record.source_key) in matched)
                   for record in described]
        return sorted(records, key=lambda record: record.latest_at)

    def _describe(self, conn: Any, records: list[tuple[str, str]]) -> list[ResolvedRecord]:
        """What the ledger knows of each (stream, source_key): plugins, latest outcome, and
        business ids, completed from the same record's other streams (the transfer response
        has the invoice's number from its read)."""
        c = entries.c
        described: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for stream, key in records:
            rows = conn.execute(
                select(c.id, c.plugin, c.action, c.direction, c.created_at,
                       c.payload.is_not(None).label("kept"))
                .where(c.stream == stream, c.source_key == key).order_by(c.id)).all()
            if not rows:
                continue
            outcomes = [row for row in rows if row.action != Action.READ.value]
            latest = (outcomes or rows)[-1]
            kept = next((row.id for row in reversed(rows) if row.kept), None)
            ids: dict[str, str] = {}
            if kept is not None:
                row = conn.execute(select(c.payload, c.target_key, c.sage_batch, c.sage_entry)
                                   .where(c.id == kept)).one()
                ids = business.business_ids(stream, key, _loads(row.payload),
                                            target_key=row.target_key,
                                            sage_batch=row.sage_batch, sage_entry=row.sage_entry)
            described.append(((stream, key), {
                "direction": next((r.direction for r in reversed(rows) if r.direction), None),
                "plugin": latest.plugin, "plugins": tuple(dict.fromkeys(r.plugin for r in rows)),
                "latest_action": Action(latest.action), "latest_at": _utc(latest.created_at),
                "ids": ids}))
        by_record: dict[tuple[str, str], dict[str, str]] = {}
        for (stream, key), info in described:
            merged = by_record.setdefault((business.family(stream), key), {})
            for label, value in info["ids"].items():
                merged.setdefault(label, value)
        result = []
        for (stream, key), info in described:
            ids = {**by_record[(business.family(stream), key)], **info["ids"]}
            result.append(ResolvedRecord(
                stream=stream, source_key=key, direction=info["direction"],
                plugin=info["plugin"], plugins=info["plugins"], family=business.family(stream),
                subject=business.subject(stream, key),
                business_id=business.primary_id(stream, key, ids), business_ids=ids,
                latest_action=info["latest_action"], latest_at=info["latest_at"]))
        return result

    def history(self, records: Iterable[tuple[str, str]]) -> list[Entry]:
        """Every entry of the (stream, source_key) records, across runs and plugins, oldest
        first: what `audit trace` shows for the records `resolve` found."""
        wanted = list(dict.fromkeys((str(stream), str(key)) for stream, key in records))
        c = entries.c
        found: list[Entry] = []
        for start in range(0, len(wanted), _BULK_KEYS):
            found += self._select(select(entries).where(
                tuple_(c.stream, c.source_key).in_(wanted[start:start + _BULK_KEYS])))
        return sorted(found, key=lambda entry: entry.id or 0)

    def open_failures(self, since: datetime | None = None) -> list[OpenFailure]:
        """One item per record whose latest outcome is a failure (rejected or failed), its
        last failure at or after `since` when given, oldest first. A later success of the
        record (created, updated, unchanged, deactivated...) resolves it; `read` entries
        change nothing. Reads only the outcomes of records that ever failed."""
        return self.failed_records(since, include_resolved=False)

    def failed_records(self, since: datetime | None = None, include_resolved: bool = True
                       ) -> list[OpenFailure]:
        """Every record that ever failed (its last failure at or after `since`), open ones as
        in `open_failures` and, with `include_resolved`, resolved ones with every failure
        they had and the success that resolved them (`resolved_by`, `resolved_at`)."""
        c = entries.c
        failure = [a.value for a in FAILURE]
        with self.engine.connect() as conn:
            candidates = [(row.stream, row.source_key) for row in conn.execute(
                select(c.stream, c.source_key).distinct()
                .where(c.action.in_(failure), c.stream != MARKS_STREAM))]
            open_: dict[tuple[str, str], dict[str, Any]] = {}
            for start in range(0, len(candidates), _BULK_KEYS):
                chunk = candidates[start:start + _BULK_KEYS]
                timeline: dict[tuple[str, str], list[Row[Any]]] = {}
                for row in conn.execute(
                        select(c.id, c.stream, c.source_key, c.plugin, c.direction, c.action,
                               c.error, c.created_at, c.system)
                        .where(tuple_(c.stream, c.source_key).in_(chunk),
                               c.action != Action.READ.value).order_by(c.id)):
                    timeline.setdefault((row.stream, row.source_key), []).append(row)
                for record, rows in timeline.items():
                    streak: list[Row[Any]] = []
                    failed = [row for row in rows if row.action in failure]
                    for row in rows:
                        if row.action in failure:
                            streak.append(row)
                        else:
                            streak = []
                    if since is not None and _utc(failed[-1].created_at) < _utc(since):
                        continue
                    if streak:
                        open_[record] = {"streak": streak}
                    elif include_resolved:
                        after = next(row for row in rows if row.id > failed[-1].id)
                        open_[record] = {"streak": failed, "resolved": after}
            if not open_:
                return []
            self._failure_ids(conn, open_)
        result = []
        for (stream, key), info in open_.items():
            streak = info["streak"]
            last = streak[-1]
            ids = info.get("ids", {})
            resolved = info.get("resolved")
            result.append(OpenFailure(
                stream=stream, source_key=key, direction=last.direction, plugin=last.plugin,
                error=last.error or "", first_failed_at=_utc(streak[0].created_at),
                last_failed_at=_utc(last.created_at), failures=len(streak),
                business_id=business.primary_id(stream, key, ids), business_ids=ids,
                system=last.system, action=Action(last.action),
                resolved_by=None if resolved is None else Action(resolved.action),
                resolved_at=None if resolved is None else _utc(resolved.created_at)))
        return sorted(result, key=lambda failure: (failure.first_failed_at, failure.stream,
                                                    failure.source_key))

    def _failure_ids(self, conn: Any, open_: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Each open failure's business ids, from the newest payload of the record in each
        stream of its family: its own stream's first, then the others' (read entries too)."""
        c = entries.c
        wanted = list(dict.fromkeys((other, key) for stream, key in open_
                                    for other in business.family_streams(stream)))
        newest: dict[tuple[str, str], dict[str, str]] = {}
        for start in range(0, len(wanted), _BULK_KEYS):
            chunk = wanted[start:start + _BULK_KEYS]
            kept = (select(func.max(c.id)).where(tuple_(c.stream, c.source_key).in_(chunk),
                                                 c.payload.is_not(None))
                    .group_by(c.stream, c.source_key))
            for row in conn.execute(select(c.stream, c.source_key, c.payload, c.target_key,
                                           c.sage_batch, c.sage_entry).where(c.id.in_(kept))):
                newest[(row.stream, row.source_key)] = business.business_ids(
                    row.stream, row.source_key, _loads(row.payload), target_key=row.target_key,
                    sage_batch=row.sage_batch, sage_entry=row.sage_entry)
        for (stream, key), info in open_.items():
            ids = dict(newest.get((stream, key), {}))
            for other in business.family_streams(stream):
                for label, value in newest.get((other, key), {}).items():
                    ids.setdefault(label, value)
            info["ids"] = ids

    def trace(self, key: str) -> list[Entry]:
        """Every entry where `key` is the source key, target key or any remote id, across
        streams and runs, oldest first."""
        c = entries.c
        columns = (c.source_key, c.target_key, c.basware_request_id, c.bw_request_id,
                   c.sage_batch, c.sage_entry, c.sage_document)
        return self._select(
            select(entries).where(or_(*(column == key for column in columns))).order_by(c.id)
        )

    def failures(self, since: datetime | None = None) -> list[FailureGroup]:
        """Rejected/failed entries (since `since`) grouped by stream and normalized cause,
        most frequent first."""
        c = entries.c
        statement = (select(c.stream, c.source_key, c.error, c.created_at)
                     .where(c.action.in_([a.value for a in FAILURE])).order_by(c.id))
        if since is not None:
            statement = statement.where(c.created_at >= _utc(since))
        groups: dict[tuple[str, str], list[Row[Any]]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(statement):
                groups.setdefault((row.stream, normalize_cause(row.error)), []).append(row)
        result = []
        for (stream, cause), rows in groups.items():
            keys = list(dict.fromkeys(row.source_key for row in rows))
            result.append(FailureGroup(
                stream=stream, cause=cause, count=len(rows), keys=len(keys),
                example_keys=tuple(keys[:3]), example_error=(rows[-1].error or "").split("\n")[0],
                first_seen=_utc(rows[0].created_at), last_seen=_utc(rows[-1].created_at),
            ))
        return sorted(result, key=lambda group: (-group.count, group.stream, group.cause))

    def replayable(self, stream: str | None = None, failed_only: bool = True,
                   keys: Iterable[str] | None = None, since: datetime | None = None) -> Replay:
        """Select what to send again once the cause of failures is fixed.

        Candidates are the keys with a rejected/failed entry (`failed_only`), or with any entry,
        matching `stream`, `keys` and `since`. A candidate is replayed with the payload of its
        latest outcome if that outcome is a failure; with `failed_only=False`, a key that was
        only ever read (never delivered, e.g. a crash) is replayed with its latest read payload.
        A key whose latest outcome is a success is never replayed; it lands in `skipped`.
        """
        c = entries.c
        candidates = select(c.stream, c.source_key).distinct().where(c.stream != MARKS_STREAM)
        if failed_only:
            candidates = candidates.where(c.action.in_([a.value for a in FAILURE]))
        if stream is not None:
            candidates = candidates.where(c.stream == stream)
        if keys is not None:
            candidates = candidates.where(c.source_key.in_([str(key) for key in keys]))
        if since is not None:
            candidates = candidates.where(c.created_at >= _utc(since))
        # Per key: the newest outcome (kind 1) and the newest read (kind 0).
        kind = case((c.action == Action.READ.value, 0), else_=1)
        ranked = (
            select(entries, kind.label("kind"), func.row_number().over(
                partition_by=(c.stream, c.source_key, kind), order_by=c.id.desc()).label("rn"))
            .where(tuple_(c.stream, c.source_key).in_(candidates))
            .subquery()
        )
        latest: dict[tuple[str, str], dict[int, Entry]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(select(ranked).where(ranked.c.rn == 1)):
                latest.setdefault((row.stream, row.source_key), {})[row.kind] = \
                    _entry_from_row(row)
        replay: list[Entry] = []
        skipped: list[tuple[Entry, str]] = []
        for by_kind in latest.values():
            outcome, read = by_kind.get(1), by_kind.get(0)
            if outcome is not None and outcome.action in SUCCESS:
                skipped.append((outcome, f"latest outcome is {outcome.action}"))
            elif outcome is not None:
                if outcome.payload is None:
                    skipped.append((outcome, "failed entry has no stored payload"))
                else:
                    replay.append(outcome)
            elif read is not None and read.payload is not None:
                replay.append(read)
            elif read is not None:
                skipped.append((read, "read entry has no stored payload"))
        replay.sort(key=lambda entry: entry.id or 0)
        skipped.sort(key=lambda item: item[0].id or 0)
        return Replay(self._with_schemas(replay), skipped)

    def _with_schemas(self, found: list[Entry]) -> list[Entry]:
        """Entries with the SCHEMA their run stored for the stream (once, on its first entry
        of the stream), where they carry none themselves."""
        c = entries.c
        newest: dict[tuple[str, str], int] = {}
        for entry in found:
            if entry.schema is None:
                where = (entry.run_id, entry.stream)
                newest[where] = max(newest.get(where, 0), entry.id or 0)
        if not newest:
            return found
        schemas: dict[tuple[str, str], Any] = {}
        with self.engine.connect() as conn:
            for (run_id, stream), last_id in newest.items():
                text = conn.execute(
                    select(c.stream_schema).where(c.run_id == run_id, c.stream == stream,
                                                  c.id <= last_id, c.stream_schema.is_not(None))
                    .order_by(c.id.desc()).limit(1)).scalar()
                if text is not None:
                    schemas[(run_id, stream)] = _loads(text)
        return [replace(entry, schema=schemas.get((entry.run_id, entry.stream)))
                if entry.schema is None else entry for entry in found]

    def report(self, run_id: str | None = None) -> Report:
        """Entry counts per stream × action for a run. `run_id` may also be a Meltano run id
        (all plugin runs sharing it); default: the latest run, with its Meltano siblings."""
        with self.engine.connect() as conn:
            if run_id is None:
                run_id = conn.execute(
                    select(func.coalesce(runs.c.meltano_job_id, runs.c.run_id))
                    .order_by(runs.c.started_at.desc()).limit(1)
                ).scalar()
                if run_id is None:
                    return Report([], {})
            selected = [_run_from_row(row) for row in conn.execute(
                select(runs).where(or_(runs.c.run_id == run_id, runs.c.meltano_job_id == run_id))
                .order_by(runs.c.started_at)
            )]
            counts: dict[str, dict[str, int]] = {}
            if selected:
                for row in conn.execute(
                    select(entries.c.stream, entries.c.action, func.count())
                    .where(entries.c.run_id.in_([run.run_id for run in selected]),
                           entries.c.stream != MARKS_STREAM)
                    .group_by(entries.c.stream, entries.c.action)
                ):
                    counts.setdefault(row[0], {})[row[1]] = row[2]
        return Report(selected, counts)

    # -- what is stuck (`ml-connector status`) ---------------------------------------------

    def latest_entries(self, stream: str, keys: Iterable[str] | None = None,
                       actions: Iterable[str] | None = None) -> dict[str, Entry]:
        """Per source key of `stream` (only `keys`, if given), its newest entry with one of
        `actions` (any action if None): e.g. the last transfer response of every invoice,
        or the newest `read` payload of a few keys, to name them as the business does."""
        c = entries.c
        where = [c.stream == stream]
        if actions is not None:
            where.append(c.action.in_([str(action) for action in actions]))
        key_list = None if keys is None else list(dict.fromkeys(str(key) for key in keys))
        found: dict[str, Entry] = {}
        for chunk in ([None] if key_list is None else
                      [key_list[i:i + _BULK_KEYS] for i in range(0, len(key_list), _BULK_KEYS)]):
            condition = where if chunk is None else [*where, c.source_key.in_(chunk)]
            ranked = select(entries, func.row_number().over(
                partition_by=c.source_key, order_by=c.id.desc()).label("rn")
            ).where(*condition).subquery()
            for entry in self._select(select(ranked).where(ranked.c.rn == 1)):
                found[entry.source_key] = entry
        return found

    def unanswered(self, stream: str, answers: str) -> dict[str, datetime]:
        """Keys of `stream` acknowledged after the last `answers` entry of the same key (none
        at all, or an older one), each with its first acknowledgement since: the invoices
        tap-basware took from Basware's queue and Basware has not heard the outcome of."""
        c = entries.c
        answer = entries.alias("answer")
        last_answer = (select(func.max(answer.c.id))
                       .where(answer.c.stream == answers, answer.c.source_key == c.source_key,
                              answer.c.action == Action.RESPONDED.value)
                       .scalar_subquery())
        statement = (select(c.source_key, func.min(c.created_at))
                     .where(c.stream == stream, c.action == Action.ACKNOWLEDGED.value,
                            c.id > func.coalesce(last_answer, 0))
                     .group_by(c.source_key))
        with self.engine.connect() as conn:
            return {key: _utc(when) for key, when in conn.execute(statement)}

    # -- the AP report (`audit report`: ml_connector_core.ap_report) ------------------------

    def runs_between(self, since: datetime | None = None, until: datetime | None = None
                     ) -> list[Run]:
        """Plugin runs started at or after `since` and before `until` (either open), oldest
        first: the runs a report covers."""
        statement = select(runs).order_by(runs.c.started_at)
        if since is not None:
            statement = statement.where(runs.c.started_at >= _utc(since))
        if until is not None:
            statement = statement.where(runs.c.started_at < _utc(until))
        with self.engine.connect() as conn:
            return [_run_from_row(row) for row in conn.execute(statement)]

    def run_counts(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Entries per stream and action written by the runs (state marks left out)."""
        c = entries.c
        ids = list(dict.fromkeys(run_ids))
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _BULK_KEYS):
                for stream, action, count in conn.execute(
                        select(c.stream, c.action, func.count())
                        .where(c.run_id.in_(ids[start:start + _BULK_KEYS]),
                               c.stream != MARKS_STREAM)
                        .group_by(c.stream, c.action)):
                    per_stream = counts.setdefault(stream, {})
                    per_stream[action] = per_stream.get(action, 0) + count
        return counts

    def run_entries(self, run_ids: Iterable[str], streams: Iterable[str] | None = None,
                    actions: Iterable[str] | None = None) -> list[Entry]:
        """The entries the runs wrote, of `streams` and with `actions` (all if None), oldest
        first, payloads parsed (state marks left out)."""
        c = entries.c
        ids = list(dict.fromkeys(run_ids))
        where = [c.stream != MARKS_STREAM]
        if streams is not None:
            where.append(c.stream.in_(list(streams)))
        if actions is not None:
            where.append(c.action.in_([str(action) for action in actions]))
        found: list[Entry] = []
        for start in range(0, len(ids), _BULK_KEYS):
            found += self._select(select(entries)
                                  .where(c.run_id.in_(ids[start:start + _BULK_KEYS]), *where))
        return sorted(found, key=lambda entry: entry.id or 0)


def _refs_of(entry: Entry, source_key: str, target_key: str | None, payload: Any) -> set[str]:
    """The ids naming the entry's record. They are an index: a payload they cannot be read
    from (a bug there, on a malformed record) leaves the record named by its keys, and the
    entry is recorded all the same."""
    try:
        return business.refs(entry.stream, source_key, payload, target_key=target_key,
                             sage_batch=entry.sage_batch, sage_entry=entry.sage_entry)
    except Exception:  # noqa: BLE001 - never lose an entry over its ids
        return business.refs(entry.stream, source_key, None, target_key=target_key)


def _about(system: str | None) -> tuple[Any, ...]:
    """The condition that an entry is about `system` (none when `system` is None)."""
    return () if system is None else (entries.c.system == system,)


def _run_from_row(row: Row[Any]) -> Run:
    m = row._mapping
    return Run(
        run_id=m["run_id"], plugin=m["plugin"], started_at=_utc(m["started_at"]),
        job_id=m["meltano_job_id"], state_id=m["meltano_state_id"], status=m["status"],
        finished_at=_utc(m["finished_at"]), summary=_loads(m["summary"]),
    )


_ENTRY_FIELDS = [f.name for f in fields(Entry)]


def _entry_from_row(row: Row[Any]) -> Entry:
    m = row._mapping
    values = {name: m[name] for name in _ENTRY_FIELDS if name in m}
    return replace(
        Entry(**values),
        action=Action(m["action"]),
        payload=_loads(m["payload"]),
        key_properties=_loads(m["key_properties"]),
        schema=_loads(m["stream_schema"]),
        reply=_loads(m["reply"]) if "reply" in m else None,
        created_at=_utc(m["created_at"]),
    )

