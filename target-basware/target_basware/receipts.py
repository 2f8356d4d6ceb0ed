"""Goods receipts: sent as the ``goodsReceipts[]`` of the matching order lines they belong to.

Basware has no endpoint of its own for the receipts of an external (matching) order: they are
part of the order line (reference §7), and an upsert of a line replaces its whole record. So:

- A receipt (stream ``goods_receipts``) becomes one ``goodsReceipts[]`` entry per receipt line
  (``<receipt externalCode>-<receipt lineNumber>``, the receipt number, the quantity) on the
  line it received (``<orderExternalCode>-<orderLineNumber>``, as meltano.yml builds line
  codes). A receipt cancelled in the source keeps that entry and adds a cancelling one
  (``<entry>-C``, same number and quantity) whose ``referenceGRExternalCode`` names it.
- The line is taken as it is in this run (a line record not confirmed yet) or as this target
  last sent it (the ledger keeps the contract record), and sent again with the receipt added.
- Every line sent, whether it came from the PO or from a receipt, carries all the receipts it
  was sent with before (`merge_earlier`, on each intake chunk: a few ledger queries per 500
  records), so a re-posted line never loses one.
- The result is an ordinary line record: the ledger's payload hash keeps an unchanged line
  (a receipt read again on its bookmark day) from costing a request.

A receipt whose line Basware never got (rejected, or not sent yet) is rejected alone with that
reason; ``ml-connector retry`` sends it once the line is there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ml_connector_core.ledger import Ledger, payload_hash
from target_basware.delivery import Delivery, Prepared
from target_basware.payloads import sub_code

LINES = "matching_order_lines"
RECEIPTS = "goods_receipts"
GOODS_RECEIPTS = "goodsReceipts"
#: The contract names of a receipt line and where tap-sage300's po_receipts has them
#: (ReceiptLine2s rows); the `receipt_line_fields` setting overrides them per name.
DEFAULT_LINE_FIELDS = {"lineNumber": "LineNumber", "orderLineNumber": "PurchaseOrderLineNumber",
                       "quantity": "QuantityReceived"}
CANCEL = "C"  # the cancelling entry's code: <entry code>-C


def line_fields(config: Mapping[str, Any]) -> dict[str, str]:
    return {**DEFAULT_LINE_FIELDS, **(config.get("receipt_line_fields") or {})}


def rename_lines(record: dict[str, Any], fields: Mapping[str, str]) -> None:
    """The receipt's lines in the contract's names (stream maps cannot rename inside a list);
    a line that is not an object is left as it is for the contract to reject."""
    lines = record.get("lines")
    if isinstance(lines, list):
        record["lines"] = [{name: line.get(source) for name, source in fields.items()}
                           if isinstance(line, dict) else line for line in lines]


def receipt_entries(receipt: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """The goodsReceipts[] entries of a (contract-valid) receipt, per order line number."""
    found: dict[int, list[dict[str, Any]]] = {}
    for line in receipt["lines"]:
        code = sub_code(receipt["externalCode"], str(line["lineNumber"]))
        entry = {"externalCode": code, "goodsReceiptNumber": receipt["goodsReceiptNumber"],
                 "quantity": line["quantity"]}
        entries = found.setdefault(int(line["orderLineNumber"]), [])
        entries.append(entry)
        if receipt.get("isCancelled"):
            entries.append({**entry, "externalCode": sub_code(code, CANCEL),
                            "referenceGRExternalCode": code})
    return found


def merged(*lists: Any) -> list[dict[str, Any]]:
    """Entries by externalCode (a later list's entry wins), in code order so the payload and
    its hash do not depend on the order receipts arrived in."""
    by_code: dict[str, dict[str, Any]] = {}
    for entries in lists:
        for entry in entries or ():
            if isinstance(entry, dict) and isinstance(entry.get("externalCode"), str):
                by_code[entry["externalCode"]] = entry
    return [by_code[code] for code in sorted(by_code)]


class Receipts:
    """One run's goods receipts: turned into line records, and kept on every line sent."""

    def __init__(self, *, delivery: Delivery, ledger: Ledger, system: str,
                 build: Callable[[dict[str, Any], str], dict[str, Any]],
                 source_system: str) -> None:
        self.delivery = delivery
        self.ledger = ledger
        self.system = system
        self.build = build
        self.source_system = source_system

    # -- a receipt arrives -----------------------------------------------------------------

    def lines_for(self, receipt: dict[str, Any], make: Callable[[dict[str, Any]], Prepared]
                  ) -> list[Prepared] | str:
        """The line records that carry `receipt`, or why there are none (the reason it is
        rejected)."""
        order_code, order_key = receipt["orderExternalCode"], receipt.get("orderSourceKey")
        wanted = {number: (f"{order_code}-{number}",
                           f"{order_key}/{number}" if order_key else f"{order_code}-{number}")
                  for number in receipt_entries(receipt)}
        bases = self._current_lines(wanted.values())
        missing = [code for code, key in wanted.values() if key not in bases]
        if missing:
            return (f"order line(s) {', '.join(missing)} not in Basware (never sent, or "
                    "rejected): the receipt goes once the line is there (ml-connector retry)")
        records = []
        for number, entries in receipt_entries(receipt).items():
            base = dict(bases[wanted[number][1]])
            base[GOODS_RECEIPTS] = merged(base.get(GOODS_RECEIPTS), entries)
            records.append(make(base))
        return records

    def _current_lines(self, codes_keys: Any) -> dict[str, dict[str, Any]]:
        """Each line's contract record as it stands: this run's latest (not confirmed yet),
        else the one this target last sent (the ledger), by ledger key."""
        found: dict[str, dict[str, Any]] = {}
        pending = self.delivery.pending.get(LINES, {})
        intake = {r.key: r for r in self.delivery.intake if r.stream == LINES}
        rest = []
        for code, key in codes_keys:
            latest = intake.get(code) or pending.get(code)
            if latest is not None and latest.source_key == key:
                found[key] = latest.record
            else:
                rest.append(key)
        if rest:
            for written in self.ledger.written(LINES, self.system, rest):
                if isinstance(written.payload, dict):
                    found[written.source_key] = written.payload
        return found

    # -- every line on its way (Delivery.on_intake) -----------------------------------------

    def merge_earlier(self, intake: list[Prepared]) -> None:
        """Add to each line of the chunk the receipts it was last sent with (Basware replaces
        a line's whole record: a re-post without them would drop them)."""
        lines = [r for r in intake if r.stream == LINES]
        if not lines:
            return
        earlier = {w.source_key: w.payload.get(GOODS_RECEIPTS)
                   for w in self.ledger.written(LINES, self.system,
                                                [r.source_key for r in lines])
                   if isinstance(w.payload, dict) and w.payload.get(GOODS_RECEIPTS)}
        for index, record in enumerate(intake):
            before = earlier.get(record.source_key)
            if record.stream != LINES or not before:
                continue
            receipts = merged(before, record.record.get(GOODS_RECEIPTS))
            if receipts == record.record.get(GOODS_RECEIPTS):
                continue
            data = {**record.record, GOODS_RECEIPTS: receipts}
            payload = self.build(data, self.source_system)
            intake[index] = replace(record, record=data, payload=payload,
                                    payload_hash=payload_hash(payload), size=0)

