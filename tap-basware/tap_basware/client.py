"""The base stream of tap-basware: a Basware list read through core's BaswareClient.

Why `Stream` and not the SDK's `RESTStream`: Basware's lists are not a plain REST feed. The
list GET answers 302 to a pre-signed URL that must be fetched *without* Authorization, the next
page token travels back as a request header with the same query, an empty result is a 404, and
the OAuth2 token is shared by all streams and renewed before expiry and once on a 401.
`ml_connector_core.basware_api.BaswareClient.get_pages` already does all of that (and target-
basware uses the same client), so `get_records` calls it instead of re-implementing it in
RESTStream's request loop hooks. Retries, Retry-After and timeouts come from core's policy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from singer_sdk import Stream
from singer_sdk.helpers.types import Context

from ml_connector_core.basware_api import BaswareClient
from ml_connector_core.ledger import BASWARE_TO_SAGE, Action, Entry

if TYPE_CHECKING:
    from tap_basware.tap import TapBasware


def bookmark_format(value: Any) -> Any:
    """A Basware timestamp as a fixed-width UTC ISO string (`...T12:00:00.000000+00:00`).

    The SDK compares bookmarks as strings and writes its signpost in this form, so every
    lastUpdated is normalised to it; a value that does not parse is left as it came.
    """
    if not isinstance(value, str) or not value:
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


class BaswareStream(Stream):
    """A Basware list endpoint, incremental on `lastUpdated`."""

    path: str
    envelope: str  # the list's wrapper key, e.g. "accountingDocuments", "vendorEntities"
    stream_schema: dict[str, Any]
    max_page_size = 500
    replication_key = "lastUpdated"
    # Basware lists have no sort parameter (reference §10): progress markers, not resumable
    # mid-stream; the bookmark moves when a partition completes.
    is_sorted = False
    # Store the stream schema with read entries so `ml-connector audit replay` can re-emit them.
    ledger_schema = False

    def __init__(self, tap: TapBasware) -> None:
        super().__init__(tap, schema=self.stream_schema)
        self.run_counts: Counter[str] = Counter()

    @property
    def tap(self) -> TapBasware:
        return cast("TapBasware", self._tap)

    @property
    def client(self) -> BaswareClient:
        return self.tap.basware

    @property
    def page_size(self) -> int:
        return min(int(self.config.get("page_size") or 100), self.max_page_size)

    def since(self, context: Context | None) -> str | None:
        """`lastUpdated` for the query: the bookmark, else start_date, else None.

        Basware returns records updated strictly *after* the value; the SDK's bookmarks are
        inclusive (the last record is sent again). One millisecond earlier keeps the SDK's
        semantics: records stamped at the bookmark instant are read again, none is skipped
        (one bulk write stamps all its records alike).
        """
        start = self.get_starting_timestamp(context)
        if start is None:
            return None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        start = start.astimezone(UTC) - timedelta(milliseconds=1)
        return start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z"

    def list_params(self, context: Context | None) -> dict[str, Any]:
        params: dict[str, Any] = {"pageSize": self.page_size}
        if since := self.since(context):
            params["lastUpdated"] = since
        return params

    def read_pages(self, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Each page of the list, recorded in the ledger as `read` before it is emitted.

        A record without its key cannot be emitted, acknowledged or answered: it is logged and
        recorded as `rejected` (with its payload) instead of stopping the others.
        """
        key = self.primary_keys[0]
        for page in self.client.get_pages(self.path, params, self.envelope):
            keyed = [r for r in page if isinstance(r, dict) and isinstance(r.get(key), str)
                     and r[key]]
            if len(keyed) < len(page):
                self.reject_unkeyed([r for r in page if not any(r is k for k in keyed)], key)
            self.record_reads(keyed)
            if keyed:
                yield keyed

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        for page in self.read_pages(self.list_params(context)):
            yield from page

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        if "lastUpdated" in row:
            row["lastUpdated"] = bookmark_format(row["lastUpdated"])
        return row

    # -- audit ledger ------------------------------------------------------------------------

    def reject_unkeyed(self, records: list[Any], key: str) -> None:
        for record in records:
            described = ({k: record.get(k) for k in ("companyCode", "invoiceNumber",
                                                      "vendorCode", "lastUpdated") if k in record}
                         if isinstance(record, dict) else type(record).__name__)
            message = (f"{self.name}: Basware returned a record without '{key}' ({described}); "
                       "it is skipped")
            self.logger.error(message)
            self.run_counts["rejected"] += 1
            self.tap.record(Entry(run_id=self.tap.ledger_run_id, stream=self.name,
                                  source_key=f"(no {key})", action=Action.REJECTED,
                                  direction=BASWARE_TO_SAGE, payload=record, error=message))

    def record_reads(self, records: list[dict[str, Any]]) -> None:
        key = self.primary_keys[0]
        self.run_counts["read"] += len(records)
        self.tap.record(*(
            Entry(run_id=self.tap.ledger_run_id, stream=self.name,
                  source_key=str(record.get(key)), action=Action.READ,
                  direction=BASWARE_TO_SAGE, payload=record,
                  key_properties=list(self.primary_keys) if self.ledger_schema else None,
                  schema=self.schema if self.ledger_schema else None)
            for record in records
        ))
