"""target-sage300: ap_invoices into Sage 300 AP invoice batches, exactly once.

The STATE this target emits is the tap's latest state (the part whose records are settled)
naming this run's ledger run as one whose outcomes are still to be answered
(``{"transfer_outcome_runs": {run_id: 0}}``). Every outcome is in the ledger, as its entry's
reply, so the source (tap-basware) can answer each invoice on its next run without this target
holding the source's credentials, and the STATE stays small whatever the size of the run
(``ml_connector_core.outcome_handover``). A checkpoint is emitted after every batch Sage
creates (singer-meltano.md §3.3).
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.sinks import RecordSink, Sink
from singer_sdk.target_base import Target

from ml_connector_core.outcome_handover import with_run
from ml_connector_core.redaction import install_log_redaction
from ml_connector_core.run_files import PrivateConfigFiles
from ml_connector_core.run_summary import RunCounts
from ml_connector_core.sage300_api import Sage300Error
from ml_connector_core.sage300_fields import Finding, install_report
from ml_connector_core.settings import (
    METADATA_CHECK_OFF,
    METADATA_CHECK_ONLY,
    cost_center_field,
    dry_run_properties,
    ledger_properties,
    metadata_check,
    sage300_client,
    sage300_connection_properties,
    sage300_field_names,
    sage300_install_properties,
    timeout_property,
    warn_if_sage300_tls_off,
)

from .contract import (
    DEFAULT_TYPE_CODES,
    STREAM,
    ContractSettings,
    settings_problems,
    source_fields_of,
)
from .mapping import guard
from .run import WRITE_TIMEOUT, InvoiceRun, check_install
from .sage_fields import field_uses
from .sinks import APInvoicesSink
from .tax import DEFAULT_TOLERANCE, MAPPING_OFF, MAPPING_SAGE


class UnknownStreamError(Exception):
    """A stream this target does not take: a mapping mistake must not lose records quietly."""


class DroppedStreamSink(RecordSink):
    """For a stream the stream maps drop (``name: __NULL__``): the SDK still wants a sink for
    its SCHEMA, but no record ever reaches it."""

    def process_record(self, record: dict, context: dict) -> None:
        return None


class TargetSage300(PrivateConfigFiles, Target):
    """Creates Sage 300 AP invoice batches (ready to post) from the ap_invoices stream."""

    name = "target-sage300"
    default_sink_class = APInvoicesSink

    config_jsonschema = th.PropertiesList(
        *sage300_connection_properties(),
        *sage300_install_properties(),
        timeout_property("write_timeout", WRITE_TIMEOUT,
                         "Seconds to wait for Sage 300's answer to a batch POST or a posting "
                         "run; a timeout there is an unknown outcome, reconciled by lookup"),
        th.Property("timeouts", th.ObjectType(
            th.Property("connect", th.NumberType),
            th.Property("read", th.NumberType),
            th.Property("write", th.NumberType),
        ), description="Deprecated: the old form of connect_timeout, read_timeout and "
                       "write_timeout ({connect, read, write}, seconds); a value given here "
                       "wins over those settings"),
        th.Property("account_map", th.ObjectType(additional_properties=th.StringType),
                    default={},
                    description="GL account of a line without PO -> Sage 300 account "
                                "(unformatted or formatted), e.g. {\"6300\": \"6300-100\"}. "
                                "Unlisted codes are used as they are."),
        th.Property("line_fields", th.ObjectType(additional_properties=th.StringType),
                    default={},
                    description="How the source's invoice lines name the contract's line "
                                "fields: {\"<contract line field>\": \"<the source's field>\"}, "
                                "e.g. for Basware coding rows {\"amount\": \"netTotal\", "
                                "\"gl_account\": \"accountCode\"}; the lines' other fields "
                                "are ignored. Empty: the lines carry the contract's names. "
                                "Lines are renamed here, not in stream maps: a list built in a "
                                "stream map stops the whole run on one bad row."),
        th.Property("document_type_codes", th.ObjectType(additional_properties=th.StringType),
                    default=dict(DEFAULT_TYPE_CODES),
                    description="The source's document type code (document_type_code) -> "
                                "invoice, credit_note or debit_note (UN/CEFACT by default: 380 "
                                "invoice, 381 credit note, 383 debit note). Negative amounts "
                                "are a credit note whatever the code; a code not listed, or "
                                "none, lets the amounts decide (invoice when positive)."),
        th.Property("batch_size", th.IntegerType, default=50,
                    description="Most invoices per AP invoice batch (batches are per company "
                                "and run)."),
        th.Property("tax_mapping", th.StringType(allowed_values=[MAPPING_SAGE, MAPPING_OFF]),
                    default=MAPPING_SAGE,
                    description="sage: a line's tax_code is one of tap-sage300's tax codes "
                                "(BCTAX-1.2); it becomes the entry's TaxGroup and the line's "
                                "TaxClass1..n, its tax is checked against Sage's rates for "
                                "the vendor and split per authority (TaxAmount1..n); an "
                                "unknown code or a tax off by more than tax_tolerance_cents "
                                "rejects the invoice. off: tax codes are ignored and the tax total "
                                "goes on the entry (TaxAmount1)."),
        th.Property("tax_tolerance_cents", th.IntegerType(minimum=0), default=5,
                    description="Most a line's tax may differ from Sage's for its tax code, in "
                                "hundredths of the document currency (rounding in the "
                                "source)."),
        th.Property("post_batches", th.BooleanType, default=False,
                    description="Post each batch (AP/APPostInvoices) after creating it; off: "
                                "batches stay ReadyToPost for the AP team."),
        th.Property("idempotency_field", th.StringType, default="BWINVID",
                    description="Invoice optional field that holds the source id in Sage 300 "
                                "(must be set up for AP invoices)."),
        *ledger_properties(),
        *dry_run_properties(),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secrets = [value for value in (self.config.get("password"),
                                             self.config.get("ledger_url")) if value]
        install_log_redaction(self._secrets)
        # One stream, and writes to Sage are serialized per company anyway (reference §7):
        # draining in the main thread keeps signals, logs and the run state simple.
        self.max_parallelism = 1
        self._invoice_run: InvoiceRun | None = None
        self._install_findings: list[Finding] | None = None  # the install's check, if made
        self._record_seq = 0  # records prepared so far (all ap_invoices sinks)
        self._states: list[tuple[int, dict[str, Any]]] = []  # (records before it, tap state)
        self._last_written: dict[str, Any] | None = None
        self.unfinished: set[int] = set()  # prepared records without an outcome yet
        warn_if_sage300_tls_off(self.config, self.logger)
        line_fields = self.config.get("line_fields") or {}
        type_codes = self.config.get("document_type_codes")
        type_codes = dict(DEFAULT_TYPE_CODES) if type_codes is None else type_codes
        problems = settings_problems(line_fields, type_codes)
        if problems:
            raise ConfigValidationError("target-sage300 settings: " + "; ".join(problems),
                                        errors=problems)
        self.contract = ContractSettings(
            line_fields=dict(line_fields),
            type_codes={str(code).strip(): kind for code, kind in type_codes.items()},
            source_fields=source_fields_of(self.config.get("stream_maps")))

    # -- settings ----------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return max(1, int(self.config.get("batch_size") or 50))

    @property
    def tax_mapping(self) -> str:
        return str(self.config.get("tax_mapping") or MAPPING_SAGE)

    @property
    def tax_tolerance(self) -> Decimal:
        cents = self.config.get("tax_tolerance_cents")
        return DEFAULT_TOLERANCE if cents is None else Decimal(int(cents)) / 100

    @property
    def account_map(self) -> dict[str, str]:
        return dict(self.config.get("account_map") or {})

    @property
    def invoice_run(self) -> InvoiceRun:
        """The run (ledger, Sage companies, outcomes), opened with the first record."""
        if self._invoice_run is None:
            self._invoice_run = InvoiceRun(dict(self.config), self.logger, self._secrets,
                                           self._install_findings)
        return self._invoice_run

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        if stream_name == STREAM:
            return APInvoicesSink
        maps = self.mapper.stream_maps.get(stream_name) or []
        if maps and all(isinstance(stream_map, RemoveRecordTransform) for stream_map in maps):
            return DroppedStreamSink
        if stream_name != STREAM:
            raise UnknownStreamError(
                f"target-sage300 takes only the {STREAM} stream, got '{stream_name}'. Map "
                f"the source stream to {STREAM} (stream_maps __alias__), or drop it "
                f"(stream_maps {stream_name}: __NULL__), or deselect it in the tap.")

    # -- records and state -------------------------------------------------------------------

    def _process_record_message(self, message_dict: dict) -> None:
        maps = self.mapper.stream_maps.get(message_dict.get("stream")) or []
        if maps and maps[0].stream_alias == STREAM:
            # A map expression that fails on this record rejects it alone (mapping.py); the
            # maps are rebuilt with every new SCHEMA, so they are checked at each record.
            guard(maps, self.config.get("stream_maps"))
        if not isinstance(message_dict.get("record"), dict) and maps \
                and maps[0].stream_alias == STREAM:
            # Not a JSON object: the stream maps cannot look inside it (the SDK would stop the
            # run with a TypeError); the contract check rejects it alone, like any bad record.
            sink = self.get_sink(STREAM)
            context = sink._get_context({})  # the pending batch, as the SDK's own path does
            sink.process_record(sink.preprocess_record(message_dict["record"], context), context)
            if sink.is_full:
                self.drain_one(sink)
            return
        super()._process_record_message(message_dict)

    def next_record_number(self) -> tuple[int, int]:
        self._record_seq += 1
        return self._record_seq, self._record_seq

    def _process_state_message(self, message_dict: dict) -> None:
        super()._process_state_message(message_dict)
        value = message_dict.get("value")
        if not isinstance(value, dict):
            return
        if self._states and self._states[-1][0] == self._record_seq:
            # No record between the two: the newer state supersedes the older one (a tap
            # answering a long backlog emits one per page before its first record).
            self._states[-1] = (self._record_seq, copy.deepcopy(value))
        else:
            self._states.append((self._record_seq, copy.deepcopy(value)))

    def _settled_tap_state(self) -> dict[str, Any] | None:
        """The newest tap state all of whose preceding records have an outcome."""
        limit = min(self.unfinished) if self.unfinished else math.inf
        index = None
        for position, (records_before, _state) in enumerate(self._states):
            if records_before < limit:
                index = position
        if index is None:
            return None
        del self._states[:index]  # older states are superseded
        return self._states[0][1]

    def checkpoint_state(self) -> dict[str, Any] | None:
        """The tap's settled state, naming this run once it has an outcome to answer (what
        the tap's state names and has not answered yet stays named)."""
        tap_state = self._settled_tap_state()
        run = self._invoice_run
        replies = run is not None and run.replies > 0
        if tap_state is None and not replies:
            return None
        state = copy.deepcopy(tap_state) if tap_state else {}
        return with_run(state, run.run_id, run.ledger) if replies and run is not None \
            else state

    def write_checkpoint(self) -> None:
        if self.config.get("dry_run"):
            return  # nothing was created: no bookmark moves, no outcome goes to Basware
        if self._invoice_run is not None:
            self._invoice_run.flush()  # the replies a STATE points at are in the ledger
        state = self.checkpoint_state()
        if state is None or state == self._last_written:
            return
        super()._write_state_message(state)
        self._last_written = state

    def _write_state_message(self, state: dict) -> None:
        # drain_all() hands over the tap's latest state; ours adds the outcomes to it.
        self.write_checkpoint()

    def process_endofpipe(self) -> None:
        super().process_endofpipe()
        self.write_checkpoint()  # also when the tap sent no STATE at all

    def listen(self, file_input: Any = None) -> None:
        mode = metadata_check(self.config)
        if mode == METADATA_CHECK_ONLY:
            self._report_install()
            return
        try:
            if mode != METADATA_CHECK_OFF:
                self._check_install_first()
            super().listen(file_input)
        except BaseException:
            self._finish("failed")
            raise
        self._finish("success")

    def _check_install_first(self) -> None:
        """Before reading any input, so that a missing field stops the run before the tap has
        handed over (and acknowledged) invoices: through the first mapped company."""
        companies = self._mapped_companies()
        if not companies:
            return  # checked with the first company an invoice names
        client = sage300_client(self.config, companies[0])
        try:
            self._install_findings = check_install(dict(self.config), client, self.logger)
        except Sage300Error as exc:
            if exc.status != 404:  # no such company: the first real one is checked instead
                raise

    def _mapped_companies(self) -> list[str]:
        mapped = (self.config.get("stream_map_config") or {}).get("companies")
        return [str(c) for c in mapped.values()] if isinstance(mapped, dict) else []

    def _report_install(self) -> None:
        """`metadata_check: only` (``ml-connector check``): the fields this target uses,
        checked against the install's $metadata, as one JSON line on stdout; no input is
        read, nothing is written."""
        companies = self._mapped_companies() or ["-"]
        uses = field_uses(self.config, cost_center_field(self.config))
        client = sage300_client(self.config, str(companies[0]))
        print(install_report(self.name, client, uses, sage300_field_names(self.config)),
              flush=True)

    def _finish(self, status: str) -> None:
        run = self._invoice_run
        if run is None:
            if status == "success":
                self.logger.info("target-sage300 success: no ap_invoices records")
            else:
                self.logger.error("target-sage300 failed before any ap_invoices record was "
                                  "settled")
            log = self.logger.info if status == "success" else self.logger.error
            log(RunCounts(self._record_seq, 0, 0, 0, 0).line(self.name, status, None))
            return
        try:
            self.write_checkpoint()
        finally:
            line = run.summary_line(status)
            counts = run.run_counts(self._record_seq)
            run.finish(status)
            log = self.logger.warning if status != "success" or counts.rejected \
                else self.logger.info
            log(line)
            log(counts.line(self.name, status, run.run_id))


if __name__ == "__main__":
    TargetSage300.cli()
