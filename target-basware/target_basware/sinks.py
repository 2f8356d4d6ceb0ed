"""One sink per Basware import endpoint.

hotglue's split: `preprocess_record` normalizes, checks the contract and builds the Basware
entity with no I/O; `process_record` hands the result to the run's Delivery, which does the
ledger look-ups and, later and in dependency order, the POSTs (see delivery.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any, ClassVar

from singer_sdk.sinks import BatchSink

from ml_connector_core.ledger import payload_hash, to_jsonable
from target_basware import contracts, payloads, receipts
from target_basware.delivery import Delivery, Prepared, Rejected, StreamSpec

PREPARED = "_target_basware_prepared"  # where preprocess_record leaves its result
logger = logging.getLogger("target-basware")


class BaswareSink(BatchSink):
    """Base sink: contract check and payload build per record; delivery is target-wide."""

    endpoint: ClassVar[str]
    entity_type: ClassVar[str]
    post_limit: ClassVar[int]
    contract: ClassVar[dict[str, Any]]
    build: ClassVar[Callable[[dict[str, Any], str], dict[str, Any]]]

    @classmethod
    def spec(cls, stream_name: str) -> StreamSpec:
        return StreamSpec(stream_name, cls.endpoint, cls.entity_type, cls.post_limit,
                          cls.contract)

    def get_validator(self) -> None:
        # The stream's contract (contracts.py) is the one judge of a record, and it rejects a
        # bad record alone; the SDK's check against the incoming SCHEMA would stop the run.
        return None

    def _validate_and_parse(self, record: dict) -> dict:
        # Nor does the SDK parse dates: an impossible date (2026-02-30) or a number where the
        # SCHEMA says date-time would stop the whole run; the contract rejects that record.
        return record

    def _singer_validate_message(self, record: dict) -> None:
        # A record without externalCode breaks its contract and is rejected alone (the SDK
        # would stop the run with MissingKeyPropertiesError).
        return None

    @property
    def is_full(self) -> bool:
        # Batches are cut at delivery time, per endpoint limit, in dependency order; a sink
        # must never post on its own because it filled up before its dependencies arrived.
        return False

    @property
    def delivery(self) -> Delivery:
        return self._target.delivery  # type: ignore[attr-defined]

    def __init__(self, target: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self._target = target

    # -- mapping and validation (no I/O) -----------------------------------------------------

    def preprocess_record(self, record: dict, context: dict) -> dict:
        problems = contracts.non_finite_numbers(record)  # before JSON turns NaN into "NaN"
        data = self._normalize(record)
        key = _record_key(data)
        source_key = data.get("sourceKey") if isinstance(data.get("sourceKey"), str) else None
        problems += contracts.contract_errors(self.stream_name, data)
        result: Prepared | Rejected
        if problems:
            code = data.get("externalCode")
            result = Rejected(self.stream_name, key, data, "; ".join(problems),
                              source_key=_readable_key(source_key, LEDGER_KEY_LENGTH)
                              if source_key else key,
                              external_code=_readable_key(code)
                              if isinstance(code, str) and code else None)
        else:
            entity = type(self).build(data, self.config.get("source_system") or "SAGE300")
            result = Prepared(
                stream=self.stream_name, key=key, record=data, payload=entity,
                payload_hash=payload_hash(entity), provides=tuple(self.provides(data)),
                references=tuple(self.references(data)), closed=bool(data.get("isClosed")),
                source_key=source_key or key,
            )
        # Key properties stay at the top so the SDK's Singer checks still apply.
        return {**{k: record[k] for k in self.key_properties if k in record}, PREPARED: result}

    def _normalize(self, record: dict[str, Any]) -> dict[str, Any]:
        """Plain JSON values: the SDK hands datetimes and Decimals; Sage pads strings and has
        no null for text, so an empty optional field means "not given"."""
        data = to_jsonable(record)
        required = set(self.contract.get("required", []))
        for name, value in data.items():
            if isinstance(value, str):
                value = value.strip()
                prop = self.contract["properties"].get(name, {})
                if prop.get("format") == "date" and "T" in value:
                    value = value.split("T", 1)[0]  # a date-time where a date is due
                data[name] = None if value == "" and name not in required else value
        return data

    def provides(self, record: dict[str, Any]) -> list[str]:
        """Reference keys this record satisfies (see Delivery.deliver)."""
        return []

    def references(self, record: dict[str, Any]) -> list[str]:
        """Reference keys that must reach Basware before this record."""
        return []

    # -- hand-over ---------------------------------------------------------------------------

    def process_record(self, record: dict, context: dict) -> None:
        result = record[PREPARED]
        self._target.deletions.saw(self.stream_name, result)  # the source has this key
        if isinstance(result, Rejected):
            self.delivery.reject(result)
        else:
            self.delivery.accept(result)

    def process_batch(self, context: dict) -> None:
        # Nothing per sink: the target drains all sinks together in dependency order.
        return None


def _record_key(data: dict[str, Any]) -> str:
    code = data.get("externalCode")
    if isinstance(code, str) and code.strip():
        return _readable_key(code)
    # No usable key: name the record by its first values so a person can find it.
    sample = {k: v for k, v in list(data.items())[:4]}
    return f"(no externalCode) {json.dumps(sample, default=str)[:200]}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_KEY_SHOWN = 100  # an externalCode has at most 36 characters
LEDGER_KEY_LENGTH = 500  # the ledger's key columns (PostgreSQL refuses longer values)


def _readable_key(key: str, limit: int = MAX_KEY_SHOWN) -> str:
    """A key as logs and the ledger can hold it. A valid key is returned as it is; a broken
    one (only rejected records have those) gets its control characters escaped, so it cannot
    forge log lines, and is shortened with a digest to fit the ledger's key columns."""
    shown = json.dumps(key)[1:-1] if _CONTROL.search(key) else key
    if len(shown) <= limit:
        return shown
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{shown[:60]}... ({len(key)} characters, sha1 {digest})"


def _ref(stream: str, *parts: Any) -> str:
    return f"{stream}:" + "/".join(str(p) for p in parts)


class PaymentTermsSink(BaswareSink):
    endpoint = "/v1/paymentTerms"
    entity_type = "PaymentTerm"
    post_limit = 500
    contract = contracts.PAYMENT_TERMS
    build = staticmethod(payloads.payment_term)

    def provides(self, record: dict[str, Any]) -> list[str]:
        return [_ref("payment_terms", record["companyCode"], record["paymentTermCode"])]


class TaxCodesSink(BaswareSink):
    endpoint = "/v1/taxCodes"
    entity_type = "TaxCode"
    post_limit = 500
    contract = contracts.TAX_CODES
    build = staticmethod(payloads.tax_code)

    def provides(self, record: dict[str, Any]) -> list[str]:
        return [_ref("tax_codes", record["companyCode"], record["taxCode"])]


class AccountsSink(BaswareSink):
    endpoint = "/v1/accounts"
    entity_type = "Account"
    post_limit = 500
    contract = contracts.ACCOUNTS
    build = staticmethod(payloads.account)

    def provides(self, record: dict[str, Any]) -> list[str]:
        # Order lines name the account without a company, so the reference key has none.
        return [_ref("accounts", record["accountCode"])]


class CostCentersSink(BaswareSink):
    endpoint = "/v1/costCenters"
    entity_type = "CostCenter"
    post_limit = 500
    contract = contracts.COST_CENTERS
    build = staticmethod(payloads.cost_center)

    def provides(self, record: dict[str, Any]) -> list[str]:
        return [_ref("cost_centers", record["costCenterCode"])]


class VendorsSink(BaswareSink):
    endpoint = "/v1/vendors"
    entity_type = "Vendor"
    post_limit = 200
    contract = contracts.VENDORS
    build = staticmethod(payloads.vendor)

    def provides(self, record: dict[str, Any]) -> list[str]:
        return [_ref("vendors", record["companyCode"], record["vendorCode"])]

    def references(self, record: dict[str, Any]) -> list[str]:
        term = record.get("paymentTermCode")
        return [_ref("payment_terms", record["companyCode"], term)] if term else []


class MatchingOrdersSink(BaswareSink):
    endpoint = "/v1/matchingOrders"
    entity_type = "MatchingOrder"
    post_limit = 500
    contract = contracts.MATCHING_ORDERS
    build = staticmethod(payloads.matching_order)

    def provides(self, record: dict[str, Any]) -> list[str]:
        return [_ref("matching_orders", record["externalCode"])]

    def references(self, record: dict[str, Any]) -> list[str]:
        refs = [_ref("vendors", record["companyCode"], record["supplierCode"])]
        if record.get("paymentTermCode"):
            refs.append(_ref("payment_terms", record["companyCode"], record["paymentTermCode"]))
        return refs


class MatchingOrderLinesSink(BaswareSink):
    endpoint = "/v1/matchingOrderLines"
    entity_type = "MatchingOrderLine"
    post_limit = 100
    contract = contracts.MATCHING_ORDER_LINES
    build = staticmethod(payloads.matching_order_line)

    def references(self, record: dict[str, Any]) -> list[str]:
        return line_references(record)


def line_references(record: dict[str, Any]) -> list[str]:
    """What a matching order line needs in Basware first: its order, account, cost center."""
    refs = [_ref("matching_orders", record["orderExternalCode"])]
    if record.get("accountCode"):
        refs.append(_ref("accounts", record["accountCode"]))
    if record.get("costCenterCode"):
        refs.append(_ref("cost_centers", record["costCenterCode"]))
    return refs


class GoodsReceiptsSink(BaswareSink):
    """Goods receipts: nothing of their own is posted; each becomes the goodsReceipts[] of
    the matching order lines it received, sent as line records (target_basware.receipts)."""

    endpoint = ""
    entity_type = ""
    post_limit = 0
    contract = contracts.GOODS_RECEIPTS
    build = staticmethod(lambda record, source_system: {})

    def preprocess_record(self, record: dict, context: dict) -> dict:
        record = dict(record)
        receipts.rename_lines(record, receipts.line_fields(self.config))
        return super().preprocess_record(record, context)

    def process_record(self, record: dict, context: dict) -> None:
        result = record[PREPARED]
        if isinstance(result, Prepared):
            source_system = self.config.get("source_system") or "SAGE300"

            def line(data: dict[str, Any]) -> Prepared:
                entity = payloads.matching_order_line(data, source_system)
                key = data["externalCode"]
                return Prepared(stream=receipts.LINES, key=key, record=data, payload=entity,
                                payload_hash=payload_hash(entity),
                                references=tuple(line_references(data)),
                                closed=bool(data.get("isClosed")),
                                source_key=data.get("sourceKey") or key)

            lines = self._target.receipts.lines_for(result.record, line)
            if isinstance(lines, str):
                result = Rejected(self.stream_name, result.key, result.record, lines,
                                  source_key=result.source_key, external_code=result.key)
            else:
                self.delivery.summary.add(self.stream_name, "received")
                for prepared in lines:
                    self.delivery.accept(prepared)
                self.delivery.handed_over(
                    self.stream_name, result.source_key, result.key, result.record,
                    "sent as goodsReceipts of order line(s) "
                    + ", ".join(prepared.key for prepared in lines),
                    into_stream=receipts.LINES, into_keys=[p.key for p in lines])
                return
        self.delivery.reject(result)


class KeyListSink(BaswareSink):
    """A key list (contracts.KEY_LISTS): every key a stream has in the source, followed by
    ACTIVATE_VERSION. Each record is checked against its contract and remembered for
    target_basware.deletions; nothing is posted and nothing of it goes into the ledger."""

    endpoint = ""
    entity_type = ""
    post_limit = 0
    contract = contracts.VENDOR_KEYS
    build = staticmethod(lambda record, source_system: {})

    def process_record(self, record: dict, context: dict) -> None:
        result = record[PREPARED]
        self._target.deletions.saw(self.stream_name, result)
        summary = self.delivery.summary
        summary.received += 1
        if isinstance(result, Rejected):
            logger.warning("%s record %s not usable: %s", self.stream_name, result.key,
                           result.error)
            self._target.deletions.unsure.setdefault(
                self.stream_name, f"record {result.key} broke its contract: {result.error}")
            summary.add(self.stream_name, "not usable")
        else:
            summary.add(self.stream_name, "listed")


KEY_LIST_SINKS: dict[str, type[BaswareSink]] = {"vendor_keys": KeyListSink}

# Dependency order (BRIEF decision 5): reference data, then vendors, then orders, then lines.
SINKS: dict[str, type[BaswareSink]] = {
    "payment_terms": PaymentTermsSink,
    "tax_codes": TaxCodesSink,
    "accounts": AccountsSink,
    "cost_centers": CostCentersSink,
    "vendors": VendorsSink,
    "matching_orders": MatchingOrdersSink,
    "matching_order_lines": MatchingOrderLinesSink,
}
#: Streams sent as part of another stream's records: receipts go in their order lines.
PART_SINKS: dict[str, type[BaswareSink]] = {"goods_receipts": GoodsReceiptsSink}
