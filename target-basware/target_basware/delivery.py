"""Delivering prepared records to Basware: order, batching, requestStatus, ledger, summary.

One `Delivery` per target run holds every record that still has to reach Basware, across all
streams, and sends it in dependency order (BRIEF decision 5, reference data first):

    payment_terms, tax_codes, accounts, cost_centers -> vendors -> matching_orders
    -> matching_order_lines

Each stream's batches are POSTed, then their requestStatus is followed to the end *before* the
next stream is posted, because Basware processes imports asynchronously and rejects a vendor
whose payment term, an order whose vendor, or a line whose order it has not processed yet.
Within a stream, POSTs and requestStatus polls run `max_in_flight` at a time in worker threads
(core's `InOrder`); what they answer is settled here on the main thread, in the order they were
started: outcomes, ledger entries, counts. A stream's POSTs go on in the background while more
records are taken in (the target's own work overlaps Basware's latency); they are settled
before anything depends on them: another stream's POSTs, a STATE, the end of the run.

Records are confirmed (and the Singer STATE that follows them may be emitted) only once their
requestStatus item is final and written to the ledger.

An item `NotProcessed` is not an outcome: Basware says it already holds exactly this record
(the answer to an earlier POST of it was lost, or that POST's run was killed before reading
its requestStatus), not how P2P took it. The outcome is then looked up in Basware's
requestStatus history (`_settle_not_processed`): the record's latest import that P2P did
process decides, so a record P2P refused ends `rejected` with Basware's reason.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from ml_connector_core.basware_api import BaswareClient, BaswareError, error_messages
from ml_connector_core.concurrency import InOrder
from ml_connector_core.dryrun import CREATE, REJECT, SKIP, UPDATE, DryRunReport
from ml_connector_core.ledger import (
    FAILURE,
    SAGE_TO_BASWARE,
    Action,
    Entry,
    KeyOutcome,
    Ledger,
    Run,
)
from ml_connector_core.run_keys import RunKeys
from ml_connector_core.run_summary import RunCounts

logger = logging.getLogger("target-basware")

MAX_REQUEST_BYTES = 6_000_000  # Basware's 6 MB per request, with room for the HTTP envelope
# Records checked against the ledger at once (one look-up per chunk and stream).
INTAKE_CHUNK = 500
# POSTed requests whose requestStatus may wait to be followed (each holds its batch).
MAX_IN_FLIGHT = 20
# A stream with no record among the last STALE_AFTER received has ended: its partial last
# batch is sent at the next checkpoint instead of waiting for the end of the run.
STALE_AFTER = 1000
FINAL_REQUEST_STATES = frozenset({"Success", "Error", "AcknowledgedSuccess", "AcknowledgedError"})
# Item statuses that say nothing about how P2P took a record: an identical re-post, and one
# overtaken by a newer version before it was processed.
NOT_DECIDED = frozenset({"NotProcessed", "RecordExpired"})
# Entries per page when looking up imports in Basware's requestStatus history (its maximum).
LOOKUP_PAGE_SIZE = 500
# Looking up this run's own imports starts this long before the run did (seconds): room for
# the clocks of this machine and Basware to run at slightly different rates.
LOOKUP_MARGIN = 300
REFERENCES = "references"  # the RunKeys kind: reference keys that arrived in this run

T = TypeVar("T")
R = TypeVar("R")


class RequestStatusTimeout(Exception):
    """Basware did not finish processing a request in time: outcome unknown, run fails."""


@dataclass(frozen=True)
class StreamSpec:
    """What the delivery needs to know about one stream (its sink class provides it)."""

    name: str
    endpoint: str  # e.g. /v1/vendors
    entity_type: str  # requestStatus entityType, e.g. Vendor
    post_limit: int  # records per POST (Basware's per-endpoint maximum)
    contract: dict[str, Any]


@dataclass
class Prepared:
    """A record that passed its contract, ready for delivery (built in preprocess_record)."""

    stream: str
    key: str  # externalCode: the Basware key (ledger target_key)
    record: dict[str, Any]  # the contract record, stored in the ledger for replay
    payload: dict[str, Any]  # the Basware entity
    payload_hash: str
    provides: tuple[str, ...] = ()  # reference keys other records may point at
    references: tuple[str, ...] = ()  # reference keys that must reach Basware first
    closed: bool = False
    known: bool = False  # Basware already has this key (from an earlier run): update
    refused_before: bool = False  # Basware rejected exactly this payload in an earlier run
    source_key: str = ""  # the ledger key: the record's sourceKey, else its externalCode

    def __post_init__(self) -> None:
        self.source_key = self.source_key or self.key
    size: int = 0  # bytes of the JSON payload
    confirmed: bool = False  # its outcome is final and queued for the ledger
    seq: int = 0  # its number in the run's intake (Delivery.confirmed_through)
    sent: bool = False  # POSTed; its requestStatus is followed (Delivery.in_flight)
    references_arrived: bool = False  # all its references came in this run (sticky)
    # Sent because the source deleted the record (target_basware.deletions): the reason.
    deactivation: str | None = None
    keep_payload: bool = False  # the ledger keeps its record even when nothing is sent


@dataclass
class Rejected:
    """A record that broke its contract: rejected alone, with key and field."""

    stream: str
    key: str  # externalCode, or a description of the record when it has none
    record: dict[str, Any]
    error: str
    source_key: str = ""  # the ledger key: the record's sourceKey, else `key`
    external_code: str | None = None


@dataclass
class _Request:
    """One bulk POST whose requestStatus is being followed."""

    stream: StreamSpec
    records: list[Prepared]
    basware_request_id: str
    bw_request_id: str


@dataclass
class _PostAnswer:
    """What Basware answered one POST of a batch (taken in a worker thread)."""

    spec: StreamSpec
    batch: list[Prepared]
    bw_request_id: str
    response: Any  # requests.Response


@dataclass
class Summary:
    """Counts per stream and outcome, plus totals the operator needs."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    posts: int = 0
    request_status_polls: int = 0
    received: int = 0  # records the sinks handed over, bad ones included
    settled: int = 0  # records answered NotProcessed whose outcome was looked up in Basware
    lookup_pages: int = 0  # pages of Basware's requestStatus history read for them

    def add(self, stream: str, outcome: str, n: int = 1) -> None:
        self.counts.setdefault(stream, Counter())[outcome] += n

    @property
    def rejected(self) -> int:
        return sum(c["rejected"] for c in self.counts.values())

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.counts.values())

    def run_counts(self) -> RunCounts:
        """The outcomes folded into the summary line both targets end with (core
        run_summary); a record replaced by a later one with the same key is "superseded"."""
        totals: Counter[str] = Counter()
        for counts in self.counts.values():
            totals.update(counts)
        written = totals.pop("created", 0) + totals.pop("updated", 0)
        unchanged = sum(totals.pop(outcome, 0) for outcome in (
            "unchanged", "skipped (already delivered)", "skipped (closed, never sent)"))
        extra = {"superseded": totals.pop("merged duplicate", 0)}
        rejected, failed = totals.pop("rejected", 0), totals.pop("failed", 0)
        extra.update(sorted(totals.items()))  # anything else, e.g. a dry run's verdicts
        return RunCounts(self.received, written, unchanged, rejected, failed, extra)

    def as_dict(self) -> dict[str, Any]:
        return {"streams": {s: dict(sorted(c.items())) for s, c in sorted(self.counts.items())},
                "posts": self.posts, "rejected": self.rejected, "failed": self.failed,
                **({"settled_by_lookup": self.settled, "lookup_pages": self.lookup_pages}
                   if self.settled else {})}

    def lines(self) -> list[str]:
        lines = [f"{stream}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(c.items()))
                 for stream, c in sorted(self.counts.items())]
        lines.append(f"{self.posts} POST(s) to Basware; {self.rejected} record(s) rejected, "
                     f"{self.failed} failed (details in the ledger)")
        if self.settled:
            lines.append(f"{self.settled} record(s) answered NotProcessed (Basware already held "
                         "them: an earlier answer was lost) settled from Basware's requestStatus "
                         f"history ({self.lookup_pages} page(s) read)")
        return lines


class Delivery:
    """Buffers, orders, sends and confirms records for one run."""

    def __init__(self, *, client: BaswareClient | None, ledger: Ledger, run: Run,
                 streams: list[StreamSpec], request_status_timeout: float, system: str,
                 client_factory: Callable[[], BaswareClient] | None = None,
                 batch_size_rows: int | None = None,
                 dry_run: DryRunReport | None = None, max_in_flight: int = 1) -> None:
        """`system`: the Basware tenant (ml_connector_core.systems) every ledger look-up and
        entry is about, so another tenant starts from nothing. `max_in_flight`: POSTs or
        requestStatus polls of one stream on the wire at once (1: no threads)."""
        self._client = client
        self.system = system
        self._client_factory = client_factory
        self.ledger = ledger
        self.run = run
        self.order = list(streams)  # dependency order
        self.specs = {spec.name: spec for spec in streams}
        self.request_status_timeout = request_status_timeout
        self.batch_size_rows = batch_size_rows
        self.pending: dict[str, OrderedDict[str, Prepared]] = {s.name: OrderedDict()
                                                                for s in streams}
        # Reference keys that arrived in this run, on disk: as a set they were ~100 bytes
        # per record, the peak growing by 27 MB from 1,000 to 100,000 vendors.
        self.arrived = RunKeys(REFERENCES)
        self.received = 0  # records taken in (accepted or rejected), numbering each
        self.last_seq: dict[str, int] = {}  # per stream: the number of its latest record
        self._intake: list[Prepared] = []  # accepted, not yet checked against the ledger
        self.in_flight: list[_Request] = []  # POSTed, requestStatus not followed to the end
        self.summary = Summary()
        self._entries: list[Entry] = []  # ledger entries not yet written
        # Called with each intake before it is queued (target_basware.deletions: lines
        # removed from the orders in it).
        self.on_intake: Callable[[list[Prepared]], None] | None = None
        self._started = time.monotonic()  # where a look-up of this run's own imports begins
        self.dry_run = dry_run  # set: verdicts instead of POSTs (ml_connector_core.dryrun)
        # After the ledger was restored older (or replaced): what it says was delivered may
        # not be what Basware holds, so every record read is sent (target.py, "restore").
        self.resend = False
        self.max_in_flight = max(1, max_in_flight)
        self._pool: ThreadPoolExecutor | None = None  # started with the first calls
        # POSTs on the wire in the background (all of one stream), settled by _settle_posts;
        # what a 400 leaves to send again waits in _reposts until then.
        self._posts: InOrder[_PostAnswer] | None = None
        self._posting: str | None = None  # the stream whose POSTs are in _posts
        self._reposts: list[list[Prepared]] = []

    @property
    def intake(self) -> tuple[Prepared, ...]:
        """The records accepted and not yet checked against the ledger or queued (a copy:
        read it, never change it; `accept` adds to it)."""
        return tuple(self._intake)

    @property
    def client(self) -> BaswareClient:
        # Created on first use: a run that posts nothing asks Basware for nothing, not even
        # a token.
        if self._client is None:
            assert self._client_factory is not None
            self._client = self._client_factory()
        return self._client

    # -- intake ------------------------------------------------------------------------------

    def reject(self, rejected: Rejected) -> None:
        logger.warning("%s record %s rejected: %s", rejected.stream, rejected.key,
                       rejected.error)
        self.summary.received += 1
        self.received += 1
        self.summary.add(rejected.stream, "rejected")
        if self.dry_run:
            self.dry_run.add(rejected.stream, rejected.key, REJECT, rejected.error,
                             rejected.source_key)
        self._entries.append(self._entry(rejected.stream, rejected.source_key or rejected.key,
                                         Action.REJECTED, payload=rejected.record,
                                         error=rejected.error,
                                         target_key=rejected.external_code))

    def accept(self, record: Prepared) -> None:
        """Take a record in. Whether Basware already has it is asked of the ledger for a
        chunk of records at once (`_resolve_intake`), not with two queries per record."""
        self.summary.received += 1
        self.received += 1
        record.seq = self.last_seq[record.stream] = self.received
        if record.provides:
            self.arrived.add_all(REFERENCES, record.provides)
        self._intake.append(record)
        # Whole batches go as soon as they are ready, not only at the tap's STATEs (taps may
        # send one per 100,000 records): memory stays at about a batch per stream.
        if len(self._intake) >= INTAKE_CHUNK and self.full_batch_ready():
            self.deliver(final=False)

    def _resolve_intake(self) -> None:
        """Skip what Basware already has with this exact payload; queue the rest."""
        intake, self._intake = self._intake, []
        if intake and self.on_intake is not None:
            self.on_intake(intake)
        keys: dict[str, list[str]] = {}
        for record in intake:
            keys.setdefault(record.stream, []).append(record.source_key)
        outcomes = {stream: self.ledger.outcomes(stream, stream_keys, system=self.system)
                    for stream, stream_keys in keys.items()}
        for record in intake:
            self._queue(record, outcomes[record.stream].get(record.source_key))

    def _queue(self, record: Prepared, latest: KeyOutcome | None) -> None:
        if latest is not None and latest.delivered_as(record.payload_hash) and not self.resend:
            self.summary.add(record.stream, "skipped (already delivered)")
            if self.dry_run:
                self.dry_run.add(record.stream, record.key, SKIP,
                                 "already delivered with this payload", record.source_key)
            self._entries.append(self._entry(record.stream, record.source_key, Action.UNCHANGED,
                                             payload_hash=record.payload_hash,
                                             target_key=latest.target_key,
                                             payload=record.record if record.keep_payload
                                             else None))
            return
        record.known = latest is not None and latest.target_key is not None
        record.refused_before = (latest is not None and latest.action == Action.REJECTED
                                 and latest.payload_hash == record.payload_hash)
        if record.refused_before and latest is not None and latest.basware_request_id:
            self._still_refused(record, latest)
            return
        if record.closed and not record.known:
            # Only open orders and lines matter for matching; a closed one Basware never had
            # stays out. One it has is sent, closed, so invoices stop matching against it.
            self.summary.add(record.stream, "skipped (closed, never sent)")
            if self.dry_run:
                self.dry_run.add(record.stream, record.key, SKIP,
                                 "closed in Sage and never sent to Basware", record.source_key)
            self._entries.append(self._entry(
                record.stream, record.source_key, Action.UNCHANGED,
                payload_hash=record.payload_hash, target_key=None, error="not sent: closed in the source and never sent to "
                                       "Basware"))
            return
        queue = self.pending[record.stream]
        if record.key in queue:
            # The same key twice in one run (taps re-send the bookmark record): the later
            # version wins; two versions in one request would race in Basware.
            del queue[record.key]
            self.summary.add(record.stream, "merged duplicate")
        queue[record.key] = record

    def _still_refused(self, record: Prepared, latest: KeyOutcome) -> None:
        """P2P refused exactly this payload (its requestStatus said Error): an identical re-send
        is NotProcessed and never reaches P2P (Basware's FAQ: change the record to resend), so
        it is not sent. It stays rejected, with Basware's reason, for audit and replay."""
        reason = latest.error or "Basware rejected this record"
        logger.warning("%s record %s rejected: %s (not sent again: Basware refused exactly this "
                       "record in request %s and does not process an identical re-send; fix "
                       "the cause, then change the record in the source)", record.stream,
                       record.key, reason, latest.basware_request_id)
        self.summary.add(record.stream, "rejected")
        if self.dry_run:
            self.dry_run.add(record.stream, record.key, REJECT,
                             f"Basware rejected exactly this payload before: {reason}",
                             record.source_key)
        self._entries.append(self._entry(
            record.stream, record.source_key, Action.REJECTED, payload=record.record,
            payload_hash=record.payload_hash, error=reason, target_key=record.key,
            basware_request_id=latest.basware_request_id))

    def gone_before_taken(self, stream: str, source_key: str) -> None:
        """A record Basware never took (its latest outcome a failure) that the source has
        deleted: nothing to send; an `unchanged` entry says so and resolves its failure."""
        logger.info("%s record %s: deleted in the source before Basware took it; its failure "
                    "is resolved, nothing to send", stream, source_key)
        if self.dry_run:
            return
        self._entries.append(self._entry(
            stream, source_key, Action.UNCHANGED, target_key=None,
            error="not sent: deleted in the source before Basware took it"))

    def handed_over(self, stream: str, source_key: str, target_key: str,
                    record: dict[str, Any], note: str, *, into_stream: str,
                    into_keys: list[str]) -> None:
        """A record sent as part of other records (a goods receipt in its order lines,
        target_basware.receipts): an `unchanged` entry with the record and where it went, so
        `audit trace` finds it and an earlier rejection of it is resolved; the outcome in
        Basware is that of the records it went into (`into_keys` of `into_stream`), and so is
        a dry run's verdict."""
        if self.dry_run:
            self.dry_run.carried(stream, target_key, source_key, into_stream, into_keys)
            return
        self._entries.append(self._entry(stream, source_key, Action.UNCHANGED,
                                         target_key=target_key, payload=record, error=note))

    def queue_deactivation(self, record: Prepared, latest: KeyOutcome | None,
                           seq: int | None = None) -> None:
        """Queue a record the source deleted (target_basware.deletions), sent inactive; not
        part of the input, numbered `seq` (default: after everything received so far), so a
        STATE that follows it waits for its outcome."""
        record.seq = self.received if seq is None else seq
        self._queue(record, latest)

    def has_pending(self) -> bool:
        self._resolve_intake()
        return any(self.pending.values())

    def confirmed_through(self) -> int:
        """The highest intake number up to which every record is confirmed or skipped: a
        STATE received after record n may be emitted once this is >= n. Asked at a STATE,
        so what is in flight is followed to the end first: checkpoints keep up with POSTs."""
        self._resolve_intake()
        try:
            self._settle_posts()
            if self.in_flight:
                self._follow(list(self.in_flight))
        finally:
            self.flush_ledger()
        waiting = [record.seq for queue in self.pending.values() for record in queue.values()]
        waiting += [record.seq for request in self.in_flight for record in request.records
                    if not record.confirmed]
        return min(waiting) - 1 if waiting else self.received

    # -- delivery ----------------------------------------------------------------------------

    def batch_limit(self, spec: StreamSpec) -> int:
        return min(spec.post_limit, self.batch_size_rows or spec.post_limit)

    def full_batch_ready(self) -> bool:
        """True when some stream has a full POST's worth of records ready to go."""
        self._resolve_intake()
        return any(self._plan(final=False).values())

    def deliver(self, final: bool) -> None:
        """Send what is ready, stream by stream in dependency order; `final` sends everything.
        Before the end (`final` False) only whole batches go: every POST carries the
        endpoint's maximum but the last one per stream."""
        self._resolve_intake()
        for stream, ready in self._plan(final).items():
            queue = self.pending[stream]
            try:
                if ready:
                    self._send_stream(self.specs[stream], ready)
            finally:
                # On a fatal error the unconfirmed records stay queued for fail_pending().
                for record in ready:
                    if record.confirmed and queue.get(record.key) is record:
                        del queue[record.key]
                self.flush_ledger()
        if final:
            try:
                self._settle_posts()
                self._follow(list(self.in_flight))
            finally:
                self.flush_ledger()

    def _plan(self, final: bool) -> dict[str, list[Prepared]]:
        """The records to send now, per stream in dependency order.

        A record is ready when everything it references arrived in this run and is not held
        back itself. A reference not seen in this run (e.g. an order of a vendor that did not
        change) waits for the end of input: by then every stream has arrived, and whatever was
        delivered in an earlier run is already in Basware.
        """
        held: set[str] = set()
        plan: dict[str, list[Prepared]] = {}
        for spec in self.order:
            ready: list[Prepared] = []
            for record in self.pending[spec.name].values():
                if record.sent:
                    continue  # in flight; dependents wait for it in _send_stream
                if final or self._references_ready(record, held):
                    ready.append(record)
                else:
                    held.update(record.provides)
            if not final and self.received - self.last_seq.get(spec.name, 0) < STALE_AFTER:
                # Whole batches only while the stream still flows; the rest waits for more.
                # A stream quiet for STALE_AFTER records has ended (taps send a stream's
                # records together), so its last batch goes too and no checkpoint waits on it.
                # And a round of max_in_flight of them, so the POSTs go out side by side.
                limit = self.batch_limit(spec)
                whole = len(ready) - len(ready) % limit
                if whole < limit * self.max_in_flight:
                    whole = 0
                for record in ready[whole:]:
                    held.update(record.provides)
                del ready[whole:]
            plan[spec.name] = ready
        return plan

    def _references_ready(self, record: Prepared, held: set[str]) -> bool:
        """Everything `record` references arrived in this run and is not held back."""
        if any(ref in held for ref in record.references):
            return False
        if not record.references_arrived:  # asked of the disk until true, then remembered
            record.references_arrived = all(self.arrived.has(REFERENCES, ref)
                                            for ref in record.references)
        return record.references_arrived

    def close(self) -> None:
        self.arrived.close()
        if self._posts is not None and len(self._posts):
            self._posts.drain(raise_first=False)  # not left running behind the run
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _workers(self) -> ThreadPoolExecutor | None:
        """The threads every concurrent call runs in (none with one request in flight)."""
        if self._pool is None and self.max_in_flight > 1:
            self._pool = ThreadPoolExecutor(self.max_in_flight,
                                            thread_name_prefix="target-basware")
        return self._pool

    def _in_parallel(self, calls: list[Callable[[], T]], settle: Callable[[T], R]) -> list[R]:
        """Run `calls` at most `max_in_flight` at a time; `settle` each result on this thread
        in the order the calls were started, and return what it says. A failure (a call's or
        settle's) stops new calls; the ones already on the wire are still settled (their
        outcomes recorded) before the first failure is raised."""
        settled: list[R] = []
        results: InOrder[T] = InOrder(self._workers(), self.max_in_flight,
                                      lambda result: settled.append(settle(result)))
        try:
            for call in calls:
                results.submit(call)
        except BaseException:
            results.drain(raise_first=False)
            raise
        results.drain()
        return settled

    def flush_ledger(self) -> None:
        if self._entries:
            entries, self._entries = self._entries, []
            self.ledger.record_many(entries)

    def fail_pending(self, error: BaseException) -> None:
        """After a fatal error: what was never confirmed goes into the ledger as failed."""
        reason = f"not delivered: the run stopped ({type(error).__name__}: {error})"
        if self._posts is not None:  # what Basware accepted joins in_flight (outcome unknown)
            self._posts.drain(raise_first=False)
            self._reposts = []
            self._posting = None
        try:
            self._resolve_intake()  # what was delivered before is skipped, not failed
        except Exception:  # the ledger itself may be what failed
            for record in self._intake:
                self.pending[record.stream][record.key] = record
            self._intake = []
        for request in self.in_flight:  # sent, outcome unknown; older versions of queued keys
            for record in request.records:
                if not record.confirmed and self.pending[record.stream].get(record.key) \
                        is not record:
                    self.pending[record.stream][f"{record.key} (in flight)"] = record
        self.in_flight = []
        for queue in self.pending.values():
            for record in queue.values():
                if record.confirmed:
                    continue
                self.summary.add(record.stream, "failed")
                self._entries.append(self._entry(
                    record.stream, record.source_key, Action.FAILED, payload=record.record,
                    payload_hash=record.payload_hash, error=reason, target_key=record.key))
            queue.clear()
        self.flush_ledger()

    def _send_stream(self, spec: StreamSpec, records: list[Prepared]) -> None:
        if self.dry_run:
            self._judge(records)
            return
        # Basware refuses a record whose references it has not processed yet, so what other
        # streams have in flight is followed to the end first; one stream's batches do not
        # wait for each other, and at most MAX_IN_FLIGHT requests are followed later.
        if self._posting not in (None, spec.name):
            self._settle_posts()
        self._follow([request for request in self.in_flight if request.stream.name != spec.name])
        batches = list(_batches(records, self.batch_limit(spec), MAX_REQUEST_BYTES))
        for batch in batches:
            for record in batch:
                record.sent = True
        if self.max_in_flight == 1:
            self._post_all(spec, batches)
        else:
            self._post_in_background(spec, batches)
        if len(self.in_flight) > MAX_IN_FLIGHT:
            self._follow(self.in_flight[:len(self.in_flight) - MAX_IN_FLIGHT])

    def _judge(self, records: list[Prepared]) -> None:
        """Dry run: the verdict each record would get, in place of the POST."""
        assert self.dry_run is not None
        for record in records:
            record.confirmed = True
            if record.refused_before:
                # Refused by Basware's validation (HTTP 400) with exactly this payload; a
                # refusal by P2P is not even sent (_still_refused).
                verdict, reason = REJECT, ("Basware rejected exactly this payload before and "
                                           "does not process an identical re-send")
            else:
                verdict, reason = (UPDATE if record.known else CREATE), record.deactivation
            self.summary.add(record.stream, f"would {verdict}")
            self.dry_run.add(record.stream, record.key, verdict, reason, record.source_key)

    def _post_in_background(self, spec: StreamSpec, batches: list[list[Prepared]]) -> None:
        """Start the POSTs and return: with `max_in_flight` on the wire, starting one settles
        the oldest first (an accepted one joins `in_flight`)."""
        if self._posts is None:
            self._posts = InOrder(self._workers(), self.max_in_flight, self._settle_background)
        self._posting = spec.name
        for batch in batches:
            self._posts.submit(partial(self._send_batch, spec, batch))

    def _settle_background(self, answer: _PostAnswer) -> None:
        self._reposts += self._settle_post(answer)

    def _settle_posts(self) -> None:
        """Settle every POST still in the background, then send what a 400 left, until none is
        left: afterwards every POSTed record is either settled or in `in_flight`."""
        if self._posts is None or self._posting is None:
            return
        spec = self.specs[self._posting]
        self._posts.drain()
        reposts, self._reposts = self._reposts, []
        self._post_all(spec, reposts)
        self._posting = None

    def _post_all(self, spec: StreamSpec, batches: list[list[Prepared]]) -> None:
        """POST the batches, `max_in_flight` at a time; each accepted one joins `in_flight`.
        A batch Basware refuses (400) is narrowed down to the records it named, or halved
        until it names them, and what is left is POSTed again in the next round."""
        while batches:
            answers = self._in_parallel(
                [partial(self._send_batch, spec, batch) for batch in batches],
                self._settle_post)
            batches = [batch for again in answers for batch in again]

    def _send_batch(self, spec: StreamSpec, batch: list[Prepared]) -> _PostAnswer:
        """One POST (in a worker thread): only the HTTP call, nothing recorded."""
        bw_request_id = str(uuid.uuid4())
        response = self.client.post(spec.endpoint, [r.payload for r in batch],
                                    request_id=bw_request_id)
        return _PostAnswer(spec, batch, bw_request_id, response)

    def _settle_post(self, answer: _PostAnswer) -> list[list[Prepared]]:
        """A POST's answer: accepted, in flight; refused (400/409), the refused records
        rejected and the batches to POST again returned."""
        spec, batch = answer.spec, answer.batch
        bw_request_id, response = answer.bw_request_id, answer.response
        self.summary.posts += 1
        if response.status_code == 200:
            basware_request_id = response.headers.get("x-amzn-RequestId")
            if not basware_request_id:
                raise BaswareError(f"POST {spec.endpoint} answered 200 without x-amzn-RequestId",
                                   status=200, request_id=bw_request_id)
            logger.info("POST %s: %d record(s), requestId %s", spec.endpoint, len(batch),
                        basware_request_id)
            self.in_flight.append(_Request(spec, batch, basware_request_id, bw_request_id))
            return []
        if response.status_code not in (400, 409):
            raise BaswareError(f"POST {spec.endpoint} failed with HTTP {response.status_code}: "
                               f"{error_messages(response)}", status=response.status_code,
                               request_id=bw_request_id)
        # Schema validation failed for the whole request. Reject the records Basware names
        # and send the others again; if it names none, split until it does.
        named = _errors_by_code(response)
        culprits = [r for r in batch if r.key in named]
        if not culprits and len(batch) == 1:
            culprits = batch
            named = {batch[0].key: [error_messages(response)]}
        for record in culprits:
            self._finish(record, Action.REJECTED, error="Basware refused the record "
                         f"(HTTP {response.status_code}): " + "; ".join(named[record.key]),
                         bw_request_id=bw_request_id)
        rest = [r for r in batch if not r.confirmed]
        if not culprits:
            middle = len(batch) // 2
            return [batch[:middle], batch[middle:]]
        return [rest] if rest else []

    def _follow(self, sent: list[_Request]) -> None:
        """Poll each request's status until Basware has processed it, then record outcomes.
        Records answered NotProcessed are settled together once all are processed (one
        look-up per entity type, not one per request); their requests stay in flight (and
        their records unconfirmed) until then."""
        deadline = time.monotonic() + self.request_status_timeout
        delay = 0.05
        waiting = list(sent)
        held: list[tuple[_Request, list[Prepared], dict[str, Any]]] = []
        while waiting:
            polls = self._in_parallel([partial(self._poll, request) for request in waiting],
                                      partial(self._settle_poll, held))
            waiting = [request for request in polls if request is not None]
            if not waiting:
                break
            if time.monotonic() >= deadline:
                for request in waiting:
                    for record in request.records:
                        self._finish(record, Action.FAILED, request=request,
                                     error="Basware had not finished processing after "
                                           f"{self.request_status_timeout:g}s (requestStatus "
                                           "InProgress); it is sent again next run")
                self.flush_ledger()
                raise RequestStatusTimeout(
                    f"{len(waiting)} Basware request(s) still InProgress after "
                    f"{self.request_status_timeout:g}s: "
                    + ", ".join(r.basware_request_id for r in waiting))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        if held:
            self._settle_not_processed(held)
            for request, _, _ in held:
                self.in_flight.remove(request)

    def _poll(self, request: _Request) -> tuple[_Request, dict[str, Any] | None]:
        return request, self._request_status(request.basware_request_id)

    def _settle_poll(self, held: list[tuple[_Request, list[Prepared], dict[str, Any]]],
                     answer: tuple[_Request, dict[str, Any] | None]) -> _Request | None:
        """A poll's answer: the request when it is still to be followed, else None (its
        outcomes recorded, or its NotProcessed records added to `held` to settle)."""
        request, status = answer
        self.summary.request_status_polls += 1
        if status is None or status.get("requestStatus") not in FINAL_REQUEST_STATES:
            return request
        not_processed = self._record_outcomes(request, status)
        if not_processed:
            held.append((request, not_processed, status))
        else:
            self.in_flight.remove(request)
        return None

    def _request_status(self, request_id: str) -> dict[str, Any] | None:
        """One poll (also in a worker thread): the request's status; counted by the caller."""
        response = self.client.request("GET", f"/v1/requestStatus/{request_id}")
        if response.status_code == 404:
            return None  # not visible yet
        if response.status_code != 200:
            raise BaswareError(f"GET requestStatus {request_id} failed with "
                               f"HTTP {response.status_code}: {error_messages(response)}",
                               status=response.status_code)
        body = response.json()
        statuses = body.get("requestStatus") if isinstance(body, dict) else body
        if isinstance(statuses, list):
            return statuses[0] if statuses else None
        return statuses if isinstance(statuses, dict) else None

    def _record_outcomes(self, request: _Request, status: dict[str, Any]) -> list[Prepared]:
        """Record each record's outcome; returns those answered NotProcessed, to settle."""
        items = _items_by_code(status)
        overall = status.get("requestStatus")
        held: list[Prepared] = []  # NotProcessed: Basware already held exactly this record
        for record in request.records:
            found = items.get(record.key)
            if not found:
                if overall in ("Success", "AcknowledgedSuccess"):
                    self._finish_success(record, request)
                else:
                    self._finish(record, Action.REJECTED, request=request,
                                 error=f"Basware reported request {request.basware_request_id} "
                                       f"as {overall} without an item for this record")
                continue
            item_states = [i.get("status") for i in found]
            if all(s == "NotProcessed" for s in item_states):
                held.append(record)
            else:
                self._finish_item(record, request, found)
        self.flush_ledger()
        return held

    def _finish_item(self, record: Prepared, request: _Request,
                     found: list[dict[str, Any]]) -> None:
        """The outcome of a record from its requestStatus item(s) (one per Basware system)."""
        item_states = [i.get("status") for i in found]
        errors = [e.get("message") for i in found for e in i.get("errors") or []
                  if e.get("message")]
        if "Error" in item_states:
            self._finish(record, Action.REJECTED, request=request,
                         error="Basware: " + ("; ".join(errors) or "Error"))
        elif any(s in ("RecordExpired", "Unpublished", "InProgress") for s in item_states):
            state = next(s for s in item_states
                         if s in ("RecordExpired", "Unpublished", "InProgress"))
            self._finish(record, Action.FAILED, request=request,
                         error=f"Basware item status {state}"
                               + (": " + "; ".join(errors) if errors else ""))
        else:  # Success / Warning (a NotProcessed beside them adds nothing)
            self._finish_success(record, request, warning="; ".join(errors) or None)

    def _settle_not_processed(self, held: list[tuple[_Request, list[Prepared],
                                                     dict[str, Any]]]) -> None:
        """Records Basware answered NotProcessed: it holds exactly this payload already, from
        an import whose answer this connector never read (the POST's answer was lost and the
        retry re-sent it, or the run that sent it was killed first). How P2P took *that*
        import is the record's outcome, so it is looked up, never assumed: the record's latest
        import in Basware's requestStatus history that P2P did process (`_latest_imports`),
        one look-up per entity type for all the requests followed together.
        Found Error: rejected with Basware's reason; Success or Warning: delivered; not found
        (Basware no longer lists it): failed, so the record stays visible and is sent again."""
        by_stream: dict[str, list[tuple[_Request, list[Prepared], dict[str, Any]]]] = {}
        for request, records, status in held:
            by_stream.setdefault(request.stream.name, []).append((request, records, status))
        for group in by_stream.values():
            spec = group[0][0].stream
            starts = [self._basware_time_of_start(status) for _, _, status in group]
            imports = self._latest_imports(
                spec, {record.key for _, records, _ in group for record in records},
                since=None if None in starts else min(s for s in starts if s))
            for request, records, _ in group:
                for record in records:
                    self._settle_one(record, request, imports.get(record.key))
            self.flush_ledger()

    def _settle_one(self, record: Prepared, request: _Request,
                    found: tuple[str, list[dict[str, Any]]] | None) -> None:
        self.summary.settled += 1
        if found is None:
            self._finish(record, Action.FAILED, request=request, error=(
                "Basware answered NotProcessed (it holds exactly this record) but lists no "
                f"{request.stream.entity_type} import of it in requestStatus that says how P2P "
                "took it; change the record in the source to send it again"))
            return
        decided_by, items = found
        logger.info("%s record %s: NotProcessed in request %s; Basware processed it in "
                    "request %s, whose answer this run never read: %s", record.stream,
                    record.key, request.basware_request_id, decided_by,
                    ", ".join(str(i.get("status")) for i in items))
        self._finish_item(record, replace(request, basware_request_id=decided_by), items)

    def _latest_imports(self, spec: StreamSpec, keys: set[str], since: str | None
                        ) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """Each key's latest import that P2P decided (items neither NotProcessed nor
        RecordExpired), as (Basware request id, its items for the key). Looked up in
        `GET /v1/requestStatus?entityType=` (oldest first, so the last one seen is the
        latest): first among the entries since this run started (`since`), then, for keys not
        found there (their import was made by an earlier run, e.g. one that was killed), in
        all of them. An import still InProgress is followed until Basware has processed it."""
        settled = self._decide(self._scan_imports(spec, keys, since)) if since else {}
        rest = keys - settled.keys()
        if rest:
            settled.update(self._decide(self._scan_imports(spec, rest, None)))
        return settled

    def _decide(self, found: dict[str, list[tuple[str, list[dict[str, Any]]]]]
                ) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """Per key, the latest of its imports (oldest first) that P2P decided; one still
        InProgress is followed by its id first."""
        settled: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        for key, candidates in found.items():
            while candidates:
                request_id, items = candidates.pop()
                if any(i.get("status") == "InProgress" for i in items):
                    final = self._await_request(request_id)
                    if final is not None:
                        items = _items_by_code(final).get(key, items)
                if all(i.get("status") in NOT_DECIDED for i in items):
                    continue  # processed after all as a re-post: the one before decides
                settled[key] = (request_id, items)
                break
        return settled

    def _scan_imports(self, spec: StreamSpec, keys: set[str], since: str | None
                      ) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
        """Per key, every import of the entity type (since `since`, a Basware timestamp)
        whose items for the key are not all NotProcessed or RecordExpired, oldest first."""
        params: dict[str, Any] = {"entityType": spec.entity_type, "pageSize": LOOKUP_PAGE_SIZE}
        if since:
            params["lastUpdated"] = since
        found: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
        for page in self.client.get_pages("/v1/requestStatus", params, "requestStatus"):
            self.summary.lookup_pages += 1
            for entry in page:
                for key, items in _items_by_code(entry).items():
                    if key in keys and not all(i.get("status") in NOT_DECIDED for i in items):
                        found.setdefault(key, []).append((str(entry.get("requestId")), items))
        return found

    def _await_request(self, request_id: str) -> dict[str, Any] | None:
        """Poll one request until Basware has processed it; None if not by the timeout."""
        deadline = time.monotonic() + self.request_status_timeout
        delay = 0.05
        while True:
            status = self._request_status(request_id)
            self.summary.request_status_polls += 1
            if status is not None and status.get("requestStatus") in FINAL_REQUEST_STATES:
                return status
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _basware_time_of_start(self, status: dict[str, Any]) -> str | None:
        """When this run started, on Basware's clock: the requestStatus just read says what
        time it is there (its lastUpdated is at most now), less the time this run has taken
        by this machine's monotonic clock and a margin. No clock is compared with another."""
        stamp = _parse_stamp(status.get("lastUpdated"))
        if stamp is None:
            return None
        elapsed = time.monotonic() - self._started + LOOKUP_MARGIN
        start = stamp - timedelta(seconds=elapsed)
        return start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z"

    def _finish_success(self, record: Prepared, request: _Request,
                        warning: str | None = None) -> None:
        action = Action.UPDATED if record.known else Action.CREATED
        notes = [f"warning: {warning}" if warning else None, record.deactivation]
        if record.deactivation:
            action = Action.DEACTIVATED
        self._finish(record, action, request=request,
                     error="; ".join(n for n in notes if n) or None)

    def _finish(self, record: Prepared, action: Action, *, request: _Request | None = None,
                error: str | None = None, bw_request_id: str | None = None) -> None:
        record.confirmed = True
        queue = self.pending[record.stream]
        if queue.get(record.key) is record:  # a newer version of the key may be queued
            del queue[record.key]
        if action == Action.REJECTED:
            logger.warning("%s record %s rejected: %s", record.stream, record.key, error)
        elif action == Action.FAILED:
            logger.error("%s record %s failed: %s", record.stream, record.key, error)
        self.summary.add(record.stream, action.value)
        self._entries.append(self._entry(
            record.stream, record.source_key, action, payload=record.record,
            payload_hash=record.payload_hash, error=error, target_key=record.key,
            basware_request_id=request.basware_request_id if request else None,
            bw_request_id=request.bw_request_id if request else bw_request_id))

    def _entry(self, stream: str, source_key: str, action: Action, *, target_key: str | None,
               payload: dict[str, Any] | None = None, payload_hash: str | None = None,
               error: str | None = None, basware_request_id: str | None = None,
               bw_request_id: str | None = None) -> Entry:
        spec = self.specs[stream]
        return Entry(
            run_id=self.run.run_id, stream=stream, source_key=source_key, action=action,
            target_key=target_key, direction=SAGE_TO_BASWARE, payload=payload,
            payload_hash=payload_hash, error=error, basware_request_id=basware_request_id,
            bw_request_id=bw_request_id, key_properties=["externalCode"], system=self.system,
            # The contract is the SCHEMA `audit replay` sends; only failures are replayed.
            schema=spec.contract if action in FAILURE else None,
        )


def _items_by_code(status: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A requestStatus entry's items by externalCode, across its systems."""
    items: dict[str, list[dict[str, Any]]] = {}
    for system in status.get("systems") or []:
        for item in system.get("items") or []:
            items.setdefault(str(item.get("externalCode")), []).append(item)
    return items


def _parse_stamp(value: Any) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _errors_by_code(response: Any) -> dict[str, list[str]]:
    try:
        body = response.json()
    except ValueError:
        return {}
    named: dict[str, list[str]] = {}
    for error in body.get("errors") or [] if isinstance(body, dict) else []:
        code = error.get("externalCode")
        if code:
            where = f" ({error['info']})" if error.get("info") else ""
            named.setdefault(code, []).append(f"{error.get('message')}{where}")
    return named


def _batches(records: list[Prepared], limit: int, max_bytes: int) -> Iterator[list[Prepared]]:
    """Batches of at most `limit` records and `max_bytes` of JSON (array brackets, commas)."""
    batch: list[Prepared] = []
    size = 2
    for record in records:
        if not record.size:
            record.size = len(json.dumps(record.payload, separators=(",", ":")).encode())
        if batch and (len(batch) >= limit or size + record.size + 1 > max_bytes):
            yield batch
            batch, size = [], 2
        batch.append(record)
        size += record.size + 1
    if batch:
        yield batch
