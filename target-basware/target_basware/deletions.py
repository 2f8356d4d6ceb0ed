"""Records deleted in the source reach Basware inactive or closed, once.

Basware's master-data and matching APIs only upsert by ``externalCode``; their soft deletes are
``active: false`` (accounts, cost centers and payment terms in ``companies[]``, vendors in
``processingStatus``) and ``isClosed: true`` (matching orders and lines). This target knows
what it delivered: the ledger holds, per tenant, every key it wrote and the contract record it
last sent. The source says what it has now, in one of three ways:

- **ACTIVATE_VERSION after a stream's records** (Singer's full-table signal): those records are
  all the stream has, for the companies they name (``companyCode``).
- **ACTIVATE_VERSION after a key list** (``vendor_keys`` lists ``vendors``; contracts.KEY_LISTS):
  the same, for a stream read incrementally, whose records are not all in the run.
- **An order's ``lineKeys``**: the keys of every line the order has now. Lines a version of
  the order listed earlier (the ledger keeps each order record's list) that are not listed
  now were removed from it.

A key this target delivered and the source no longer has is sent again as it was last sent,
with ``active: false`` or ``isClosed: true``, and recorded as ``deactivated`` (ml-connector
audit trace shows it). Once: when Basware already has exactly that payload (the ledger says
so), nothing is sent. A record that comes back in the source arrives active, differs from
what Basware has, and is sent active again.

What keeps this safe: a key any record of the run carries (a rejected one too) is not
deleted; a company with no record at all in the list is left alone (a company dropped from
the tap's settings, or a read that found nothing, says nothing about deletions); a record
whose key cannot be read stops the comparison for its stream in this run; ACTIVATE_VERSION is
only what the source sends after a complete read (a run cut short sends none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ml_connector_core.ledger import KeyOutcome, Ledger, Written, payload_hash
from ml_connector_core.run_keys import RunKeys
from target_basware.contracts import KEY_LISTS
from target_basware.delivery import Delivery, Prepared, Rejected

logger = logging.getLogger("target-basware")

#: The field and value that deactivate a record of each stream (the contract's soft delete).
INACTIVE: dict[str, tuple[str, bool]] = {
    "payment_terms": ("active", False), "tax_codes": ("active", False),
    "accounts": ("active", False),
    "cost_centers": ("active", False), "vendors": ("active", False),
    "matching_orders": ("isClosed", True), "matching_order_lines": ("isClosed", True),
}
ORDERS, LINES = "matching_orders", "matching_order_lines"
_SEEN = "seen"
_SEP = "\x1f"  # between stream and key in the run's set of keys


def record_key(record: dict[str, Any]) -> str | None:
    """The ledger key a record of this contract has (sourceKey, else externalCode)."""
    for name in ("sourceKey", "externalCode"):
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class Deletions:
    """One run's view of what the source still has, and the deactivations it leads to."""

    def __init__(self, *, delivery: Delivery, ledger: Ledger, system: str,
                 builders: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]],
                 source_system: str) -> None:
        self.delivery = delivery
        self.ledger = ledger
        self.system = system
        self.builders = builders
        self.source_system = source_system
        self.seen = RunKeys(_SEEN)  # every key a record of the run carried, per stream
        self.companies: dict[str, set[str]] = {}  # stream -> companyCodes its records name
        self.unsure: dict[str, str] = {}  # stream -> why its list cannot be trusted this run
        self.queued = 0
        self._sent: set[tuple[str, str]] = set()  # (stream, key) deactivated in this run

    # -- what the source has --------------------------------------------------------------

    def saw(self, stream: str, result: Prepared | Rejected) -> None:
        """A record of `stream` (accepted or rejected, a key list's too) arrived."""
        record = result.record if isinstance(result.record, dict) else {}
        key = result.source_key if isinstance(result, Prepared) else record_key(record)
        if key is None:
            self.unsure.setdefault(stream, f"a record without a usable key ({result.key})")
            return
        self.seen.add(_SEEN, f"{stream}{_SEP}{key}")
        company = record.get("companyCode")
        if isinstance(company, str) and company.strip():
            self.companies.setdefault(stream, set()).add(company.strip())

    # -- a complete list: ACTIVATE_VERSION ---------------------------------------------------

    def complete(self, stream: str) -> None:
        """ACTIVATE_VERSION for `stream`: its records (or, for a key list, its keys) are all
        the source has for the companies they name."""
        target = KEY_LISTS.get(stream, stream)
        if target not in INACTIVE:
            return
        if stream in self.unsure:
            logger.warning("%s: deletions not checked in this run: %s", stream,
                           self.unsure[stream])
            return
        companies = self.companies.get(stream, set())
        if not companies:
            logger.info("%s: complete list with no company in it; no deletion checked", stream)
            return
        what = ("not in the source's complete list of " + target if stream == target
                else f"not in the source's list {stream}")
        before = self.queued
        for written in self.ledger.written(target, self.system):
            if self.seen.has(_SEEN, f"{stream}{_SEP}{written.source_key}"):
                continue
            payload = written.payload
            if not isinstance(payload, dict) or payload.get("companyCode") not in companies:
                continue
            self._deactivate(target, written, f"deleted in the source ({what})")
        # Records Basware never took (their latest outcome a failure) that the source no
        # longer has: nothing to switch off, and nothing left to fix; an `unchanged` entry
        # says so and resolves the failure (`audit failures` lists open ones).
        for key, payload in self.ledger.failing(target, self.system).items():
            if self.seen.has(_SEEN, f"{stream}{_SEP}{key}"):
                continue
            if not isinstance(payload, dict) or payload.get("companyCode") not in companies:
                continue
            self.delivery.gone_before_taken(target, key)
        logger.info("%s: %d deleted in the source, sent %s", target, self.queued - before,
                    "closed" if INACTIVE[target][0] == "isClosed" else "inactive")

    # -- an order's lines: lineKeys ------------------------------------------------------------

    def check_orders(self, intake: list[Prepared]) -> None:
        """Before the intake is queued (Delivery.on_intake): lines removed from the orders in
        it are sent closed, numbered with their order (a STATE after the order waits for
        them); an order listing a line its earlier versions did not keeps its record in the
        ledger, even when nothing is sent for it, so the next comparison knows the line."""
        orders = [r for r in intake
                  if r.stream == ORDERS and isinstance(r.record.get("lineKeys"), list)]
        if not orders:
            return
        history = self.ledger.payload_history(ORDERS, [o.source_key for o in orders],
                                              system=self.system)
        removed: dict[str, Prepared] = {}
        for order in orders:
            now = {key for key in order.record["lineKeys"] if isinstance(key, str)}
            listed: set[str] = set()
            for payload in history.get(order.source_key, ()):
                keys = payload.get("lineKeys") if isinstance(payload, dict) else None
                listed.update(k for k in keys or () if isinstance(k, str))
            if not now <= listed:
                order.keep_payload = True
            for key in listed - now:
                removed[key] = order
        if not removed:
            return
        for written in self.ledger.written(LINES, self.system, removed):
            order = removed[written.source_key]
            payload = written.payload
            if (not isinstance(payload, dict) or payload.get("orderExternalCode") != order.key
                    or self.seen.has(_SEEN, f"{LINES}{_SEP}{written.source_key}")):
                continue
            self._deactivate(LINES, written, f"removed from order {order.key} in the source",
                             seq=order.seq)

    # -- sending -------------------------------------------------------------------------------

    def _deactivate(self, stream: str, written: Written, reason: str,
                    seq: int | None = None) -> None:
        field, value = INACTIVE[stream]
        record = {**written.payload, field: value}
        try:
            entity = self.builders[stream](record, self.source_system)
        except (KeyError, TypeError, ValueError) as exc:  # a record kept by an older version
            logger.warning("%s record %s: deleted in the source but its last delivered record "
                           "cannot be rebuilt (%s); not sent", stream, written.source_key, exc)
            return
        digest = payload_hash(entity)
        latest: KeyOutcome = written.outcome
        if latest.delivered_as(digest) or (stream, written.source_key) in self._sent:
            return  # Basware has it inactive (closed) already, or will in this run: once
        self._sent.add((stream, written.source_key))
        key = str(record.get("externalCode") or latest.target_key)
        logger.info("%s record %s: %s; sending it %s", stream, key, reason,
                    "closed" if field == "isClosed" else "inactive")
        self.queued += 1
        self.delivery.queue_deactivation(Prepared(
            stream=stream, key=key, record=record, payload=entity, payload_hash=digest,
            closed=field == "isClosed", source_key=written.source_key, deactivation=reason),
            latest, seq=seq)

    def close(self) -> None:
        self.seen.close()
