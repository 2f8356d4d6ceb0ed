"""tap-sage300: vendors, purchase orders (+ lines), GL accounts, cost centers, terms, customers
and AP invoice batches from the Sage 300 Web API, for every configured company."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from ml_connector_core.httppolicy import HttpSession, RetryPolicy, Throttle
from ml_connector_core.redaction import Redactor, install_log_redaction
from ml_connector_core.retry_selection import keys_by_stream
from ml_connector_core.run_files import PrivateConfigFiles
from ml_connector_core.sage300_api import Sage300Auth, Sage300Client
from ml_connector_core.sage300_fields import (
    FieldNames,
    FieldUse,
    Finding,
    InstallMismatch,
    install_report,
    verify_install,
)
from ml_connector_core.settings import (
    LEDGER_DEFAULT_FILE,
    METADATA_CHECK_OFF,
    METADATA_CHECK_ONLY,
    SAGE300_IN_FLIGHT,
    configured_ledger_url,
    cost_center_field,
    cost_center_segment,
    ledger_off,
    ledger_properties,
    max_in_flight_property,
    metadata_check,
    sage300_auth,
    sage300_client,
    sage300_connection_properties,
    sage300_field_names,
    sage300_install_properties,
    sage300_retry_policy,
    warn_if_sage300_tls_off,
)
from ml_connector_core.settings import (
    max_in_flight as configured_in_flight,
)
from ml_connector_core.systems import READ_FROM_KEY, read_from, sage300_base
from tap_sage300 import streams
from tap_sage300.audit import ReadAudit
from tap_sage300.deletions import STATE_KEY as VENDOR_COUNTS
from tap_sage300.deletions import VendorKeyPlan
from tap_sage300.output import BufferedSingerWriter
from tap_sage300.payments import APPaymentsStream
from tap_sage300.tax import DEFAULT_ITEM_CLASSES, TaxCodesStream

STREAM_TYPES: list[type[streams.Sage300Stream]] = [
    # Reference data first (BRIEF decision 5), then the documents that point at it.
    streams.GLAccountsStream,
    streams.CostCentersStream,
    streams.PaymentTermsStream,
    TaxCodesStream,
    streams.VendorsStream,
    streams.VendorKeysStream,  # after vendors: a whole read there gives its list for free
    streams.PurchaseOrdersStream,
    streams.PurchaseOrderLinesStream,
    streams.POReceiptsStream,  # after the PO lines its receipts belong to
    streams.CustomersStream,
    streams.APInvoiceBatchesStream,
    APPaymentsStream,  # the payments job (docs/decisions.md, "Payment status")
]


class TapSage300(PrivateConfigFiles, Tap):
    """Sage 300 Web API (on-premises, OData v4) for every configured company: vendors,
    purchase orders and their lines (with GL account and cost center), GL accounts, cost
    centers, payment terms, customers and AP invoice batches."""

    name = "tap-sage300"
    message_writer_class = BufferedSingerWriter

    config_jsonschema = th.PropertiesList(
        *sage300_connection_properties(),
        *sage300_install_properties(),
        th.Property("company_ids", th.ArrayType(th.StringType), required=True,
                    description="Sage 300 company (org) ids, e.g. [\"SAMINC\", \"SAMLTD\"]; "
                                "each is a partition with its own bookmarks"),
        th.Property("start_date", th.DateTimeType,
                    description="Earliest DateLastMaintained to read when a stream has no "
                                "bookmark yet (date part used)"),
        th.Property("page_size", th.IntegerType(minimum=1), default=1000,
                    description="Records per request ($top). Sage caps it at the PageSize of "
                                "its web.config (default 100; Sage recommends 1000)"),
        max_in_flight_property(
            default=SAGE300_IN_FLIGHT, maximum=16,
            description="Most requests to Sage 300 at once. A read's first page "
                        "counts the records ($count); the rest is then asked as "
                        "$skip windows this many at a time, and records, bookmarks "
                        "and STATE come out in the same order as with 1. Sage's "
                        "guidance is 2 to 4 concurrent reads per Web API server; a "
                        "429 or 503 makes the whole tap wait (Retry-After) and "
                        "halves it until answers come back normally. 1: one "
                        "request at a time"),
        th.Property("tax_item_classes", th.IntegerType(minimum=1, maximum=10),
                    default=DEFAULT_ITEM_CLASSES,
                    description="Item tax classes per authority the tax_codes stream makes "
                                "codes for (classes 1..n; Sage's usual set-up: 1 taxable, "
                                "2 exempt). A group with k authorities gets n^k codes"),
        th.Property("retry_keys", th.ObjectType(additional_properties=th.ArrayType(
            th.StringType)),
            description="Retry mode (`ml-connector retry`, TAP_SAGE300_RETRY_KEYS), not set by "
                        "hand: {stream: [ledger source keys]}, e.g. {\"vendors\": "
                        "[\"SAMLTD/1600\"], \"purchase_orders\": [\"SAMLTD/10161\"]}. Only "
                        "these records are read (an OData $filter on their key, whatever the "
                        "bookmarks say; a PO with its lines); other streams are not read, "
                        "bookmarks do not move and no deletion signal is sent (the read is "
                        "not whole)."),
        # The trail is complete by default (every record read, in the project's ledger, as
        # for the other plugins); a warehouse load that wants none says `off`.
        *ledger_properties(unset=f"{LEDGER_DEFAULT_FILE}. Every record read is recorded as a "
                                 "`read` entry, committed per ~1,000 records; `off`: no "
                                 "ledger (e.g. a warehouse load)"),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Password and ledger URL credentials: never in logs, ledger rows or error text.
        self.redactor = Redactor.from_config(self.config)
        if self.config.get("password"):
            install_log_redaction([self.config["password"], *url_passwords(self.config)])
        self.audit = ReadAudit()  # the real one is opened by sync_all
        self._gl_accounts: dict[str, dict[str, tuple[str | None, str | None]]] = {}

    def discover_streams(self) -> list[Stream]:
        return [stream_type(tap=self) for stream_type in STREAM_TYPES]

    def load_streams(self) -> list[Stream]:
        # The SDK sorts streams by name; keep STREAM_TYPES order so a target sees accounts,
        # cost centers, terms and vendors before the purchase orders that refer to them.
        order = {stream_type.name: index for index, stream_type in enumerate(STREAM_TYPES)}
        return sorted(super().load_streams(), key=lambda stream: order[stream.name])

    # -- state ---------------------------------------------------------------------------------

    def load_state(self, state: dict[str, Any]) -> None:
        """The SDK keeps only ``bookmarks``; the rest of the state is carried forward as it
        came (a target may keep its own keys there, e.g. target-basware's ``delivered_to``).
        Bookmarks read from another Sage 300 Web API (``read_from``) say nothing about this
        one: they are dropped, and every stream is read from its start."""
        source = sage300_base(self.config)
        earlier = read_from(state)
        if earlier is not None and earlier != source:
            self.logger.warning("The saved state's bookmarks were read from %s, not from %s: "
                                "reading every stream from its start", earlier, source)
            state = {key: value for key, value in state.items()
                     if key not in ("bookmarks", VENDOR_COUNTS)}
        super().load_state(state)
        for key, value in state.items():
            if key != "bookmarks":
                self.state[key] = copy.deepcopy(value)
        self.state[READ_FROM_KEY] = source

    # -- what the streams share ------------------------------------------------------------------

    @cached_property
    def retry_keys(self) -> dict[str, dict[str, list[list[str]]]] | None:
        """Retry mode: {stream: {company: [key values]}} from `retry_keys` (source keys are
        `company/key[/key]`); None in a normal run."""
        chosen = keys_by_stream(self.config.get("retry_keys"))
        if not chosen:
            return None
        found: dict[str, dict[str, list[list[str]]]] = {}
        for stream, keys in chosen.items():
            for key in keys:
                company, *values = key.split("/")
                found.setdefault(stream, {}).setdefault(company, []).append(values)
        self.logger.info("Retry mode: only %s are read again (bookmarks unchanged, no "
                         "deletion signals)", "; ".join(
                             f"{stream} {', '.join(keys)}" for stream, keys in chosen.items()))
        return found

    @cached_property
    def vendor_key_plan(self) -> VendorKeyPlan:
        """This run's decision on the vendor_keys list (tap_sage300.deletions)."""
        return VendorKeyPlan(self)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        # One throttle for every Sage request of the run, whichever thread sends it: a 429
        # or 503 slows them all, and an outage fails the run after max_tries answers in all.
        return dataclasses.replace(sage300_retry_policy(self.config),
                                   throttle=Throttle(self.max_in_flight))

    @property
    def max_in_flight(self) -> int:
        """`max_requests_in_flight`: how many Sage requests run at once (1: no threads)."""
        return configured_in_flight(self.config, SAGE300_IN_FLIGHT)

    @cached_property
    def pool(self) -> ThreadPoolExecutor | None:
        """The worker threads a read's windows are sent from (Sage300Stream.request_records);
        none with one request in flight. Shut down by sync_all."""
        if self.max_in_flight == 1:
            return None
        return ThreadPoolExecutor(max_workers=self.max_in_flight,
                                  thread_name_prefix="tap-sage300")

    @cached_property
    def sage_auth(self) -> Sage300Auth:
        return sage300_auth(self.config)

    @cached_property
    def http_session(self) -> requests.Session:
        session = HttpSession()
        session.auth = self.sage_auth
        if not warn_if_sage300_tls_off(self.config, self.logger):
            session.verify = False
        if self.max_in_flight > DEFAULT_POOLSIZE:  # a keep-alive connection per request
            adapter = HTTPAdapter(pool_maxsize=self.max_in_flight)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        return session

    @property
    def cost_center_segment_number(self) -> str:
        """``SegmentNumber`` as GLSegmentCodes writes it: six digits, zero-padded."""
        return f"{cost_center_segment(self.config):06d}"

    @property
    def cost_center_field(self) -> str:
        return cost_center_field(self.config)

    @cached_property
    def field_names(self) -> FieldNames:
        return sage300_field_names(self.config)

    # -- what the install must offer -------------------------------------------------------------

    def field_uses(self) -> list[FieldUse]:
        """What the selected streams read (a deselected parent read for its children too)."""
        uses: list[FieldUse] = []
        for stream in self.streams.values():
            assert isinstance(stream, streams.Sage300Stream)
            if stream.selected or any(child.selected for child in stream.child_streams):
                uses += stream.field_uses()
        return uses

    def check_install(self) -> list[Finding]:
        """This run's fields against the install's $metadata (one GET per module, from the
        first company; the modules are the same for every company of one install)."""
        client = sage300_client(self.config, self.config["company_ids"][0],
                                policy=self.retry_policy, session=self.http_session)
        return verify_install(client, self.field_uses(), self.field_names)

    def remember_gl_accounts(self, company: str,
                             index: dict[str, tuple[str | None, str | None]]) -> None:
        """The gl_accounts stream read the company's whole chart: the look-up reuses it."""
        self._gl_accounts[company] = index

    def company_client(self, company: str) -> Sage300Client:
        """A client for look-ups beside the streams' own reads (same policy and session)."""
        return sage300_client(self.config, company, policy=self.retry_policy,
                              session=self.http_session)

    def gl_account_index(self, company: str) -> dict[str, tuple[str | None, str | None]]:
        """UnformattedAccount -> (formatted AccountNumber, cost-center segment code) for one
        company, read once per run: taken from the gl_accounts stream when it ran, else one
        small $select request per page of the chart."""
        index = self._gl_accounts.get(company)
        if index is None:
            client = self.company_client(company)
            segment = self.cost_center_field
            names = self.field_names
            index = {}
            fields = ["UnformattedAccount", "AccountNumber", segment]
            for account in client.iter_records(
                    "GL/GLAccounts", select=[names.wire("GL/GLAccounts", f) for f in fields]):
                account = names.from_wire("GL/GLAccounts", account)
                key = str(account.get("UnformattedAccount") or "").rstrip()
                index[key] = ((account.get("AccountNumber") or "").rstrip() or None,
                              (account.get(segment) or "").rstrip() or None)
            self._gl_accounts[company] = index
            self.logger.info("Loaded %d GL accounts of %s for cost centers (%s)",
                             len(index), company, segment)
        return index

    # -- the run ---------------------------------------------------------------------------------

    def sync_all(self) -> None:
        mode = metadata_check(self.config)
        if mode == METADATA_CHECK_ONLY:
            self._report_install()
            return
        if not ledger_off(self.config):
            self.audit = ReadAudit.open(configured_ledger_url(self.config), self.redactor,
                                        self.config)
        try:
            if mode != METADATA_CHECK_OFF:
                self._verify_install()
            self.logger.info("Up to %d Sage 300 request(s) in flight (max_requests_in_flight)",
                             self.max_in_flight)
            super().sync_all()
        except BaseException as exc:
            self.audit.finish("failed", error=self.redactor.redact(f"{type(exc).__name__}: "
                                                                   f"{exc}"))
            raise
        finally:
            if self.pool is not None:  # a failed read has settled its requests already
                self.pool.shutdown(cancel_futures=True)
        self.audit.finish("success")


    def _verify_install(self) -> None:
        """Before the first read: a field the install lacks fails the run here, not as a 400
        halfway through (or as a value silently missing)."""
        findings = self.check_install()
        for finding in findings:
            log = self.logger.error if finding.severity == "error" else self.logger.warning
            log("%s", finding.message())
        if any(finding.severity == "error" for finding in findings):
            raise InstallMismatch(self.name, findings, str(self.config["base_url"]))

    def _report_install(self) -> None:
        """`metadata_check: only` (``ml-connector check``): the findings as one JSON line on
        stdout instead of Singer messages; nothing is read."""
        client = sage300_client(self.config, self.config["company_ids"][0],
                                policy=self.retry_policy, session=self.http_session)
        print(install_report(self.name, client, self.field_uses(), self.field_names),
              flush=True)


def url_passwords(config: dict[str, Any] | Any) -> list[str]:
    """Passwords embedded in URL settings (a PostgreSQL ledger URL)."""
    passwords = []
    for name in ("ledger_url", "base_url"):
        value = config.get(name)
        if value and "://" in value:
            with contextlib.suppress(ValueError):
                if password := urlsplit(value).password:
                    passwords.append(password)
    return passwords


if __name__ == "__main__":
    TapSage300.cli()
