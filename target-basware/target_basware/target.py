"""target-basware: Sage 300 master data and purchase orders into Basware, by bulk upsert."""

from __future__ import annotations

import copy
import json
import logging
import sys
from collections.abc import Iterable
from types import FrameType
from typing import IO, Any, ClassVar

from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import (
    TARGET_BATCH_SIZE_ROWS_CONFIG,
    CapabilitiesEnum,
    PluginCapabilities,
)
from singer_sdk.plugin_base import PluginBase
from singer_sdk.sinks import Sink
from singer_sdk.target_base import Target

from ml_connector_core.basware_api import BaswareClient
from ml_connector_core.dryrun import ledger_class
from ml_connector_core.ledger import to_jsonable
from ml_connector_core.redaction import Redactor, install_log_redaction
from ml_connector_core.restore import (
    LEDGER_OLDER,
    OTHER_LEDGER,
    Mark,
    check_state,
    pipeline_state_id,
    stamped,
)
from ml_connector_core.run_files import PrivateConfigFiles
from ml_connector_core.settings import (
    BASWARE_IN_FLIGHT,
    basware_client,
    basware_connection_properties,
    configured_ledger_url,
    dry_run_properties,
    dry_run_report,
    ledger_properties,
    max_in_flight,
    max_in_flight_property,
    warn_if_basware_tls_off,
)
from ml_connector_core.systems import DELIVERED_TO_KEY, basware_system, delivered_to
from target_basware import stream_maps
from target_basware.deletions import Deletions
from target_basware.delivery import Delivery, Rejected
from target_basware.payments import PAYMENTS_STREAM, PaymentResponsesSink
from target_basware.receipts import Receipts
from target_basware.sinks import KEY_LIST_SINKS, PART_SINKS, SINKS, BaswareSink

stream_maps.install()  # plain renames skip simpleeval (see stream_maps.py)

#: Write scopes of the seven import endpoints, read scopes for look-ups, and requestStatus.read to
#: follow each import to its outcome.
#: accountingDocuments: the payments job's paymentResponses and the look-up of a lost answer.
DEFAULT_SCOPES = " ".join(
    f"{api}.{access}" for api in ("vendors", "accounts", "costCenters", "paymentTerms",
                                  "taxCodes", "matchingOrders", "matchingOrderLines")
    for access in ("write", "read")
) + " requestStatus.read accountingDocuments.write accountingDocuments.read"


#: STATE key: the ledger was found older than the state (or replaced); the run handed it
#: reads every record and sends it again (see TargetBasware._check_restore).
RESEND_KEY = "resend_after_restore"


class UnknownStreamError(Exception):
    """A stream target-basware has no contract for: never dropped silently."""


class TargetBasware(PrivateConfigFiles, Target):
    """Upserts vendors, GL accounts, cost centers, payment terms and matching orders."""

    name = "target-basware"
    # No flattening (the contract is flat already), no validate-records (the contract replaces
    # the SDK's SCHEMA check, see BaswareSink.get_validator).
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT, PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    config_jsonschema = th.PropertiesList(
        *basware_connection_properties(default_scopes=DEFAULT_SCOPES),
        th.Property("request_status_timeout", th.NumberType, default=300,
                    description="Seconds to wait for Basware to finish processing an import "
                                "(requestStatus) before the run fails"),
        max_in_flight_property(
            default=BASWARE_IN_FLIGHT, maximum=32,
            description="Most requests to Basware at once: a stream's POSTs and its "
                        "requestStatus polls go out this many at a time (streams still "
                        "one after the other, in dependency order; outcomes recorded in "
                        "the order sent). A 429 or 503 makes the whole target wait "
                        "(Retry-After) and halves it until answers come back normally. "
                        "1: one at a time."),
        th.Property("receipt_line_fields", th.ObjectType(additional_properties=th.StringType),
                    description="Where the goods_receipts stream's lines have the contract's "
                                "fields, {contract name: incoming name} (stream maps cannot "
                                "rename inside a list); default tap-sage300's po_receipts: "
                                "{\"lineNumber\": \"LineNumber\", \"orderLineNumber\": "
                                "\"PurchaseOrderLineNumber\", \"quantity\": "
                                "\"QuantityReceived\"}"),
        *ledger_properties(),
        *dry_run_properties(),
    ).to_dict()

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        # Of the SDK's target built-ins only batch_size_rows means something here (smaller
        # POSTs than Basware's maximum); add_record_metadata would break every contract and
        # load_method is always "upsert" for Basware.
        properties = config_jsonschema["properties"]
        for name, schema in TARGET_BATCH_SIZE_ROWS_CONFIG["properties"].items():
            properties.setdefault(name, schema)
        PluginBase.append_builtin_config.__func__(cls, config_jsonschema)  # type: ignore[attr-defined]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Dependencies are drained in order by Delivery; never in parallel threads.
        self.max_parallelism = 1
        config = self.config
        redactor = Redactor.from_config(config)
        install_log_redaction(redactor.secrets)  # the same secrets never reach the logs
        warn_if_basware_tls_off(config, self.logger)
        self.dry_run = dry_run_report(config, self.name, self.logger)
        self.ledger = ledger_class(bool(self.dry_run)).open(configured_ledger_url(config),
                                                            secrets=redactor)
        # The tenant every delivery is about; entries from before the ledger knew systems
        # belong to the tenant configured at the upgrade.
        self.system = basware_system(config)
        self.ledger.claim_unassigned(self.name, self.system)
        self.ledger_run = self.ledger.start_run(self.name)
        self.delivery = Delivery(
            client=None, client_factory=self._make_client, ledger=self.ledger,
            run=self.ledger_run, streams=[cls.spec(name) for name, cls in SINKS.items()],
            system=self.system,
            request_status_timeout=float(config.get("request_status_timeout") or 300),
            batch_size_rows=config.get("batch_size_rows"), dry_run=self.dry_run,
            max_in_flight=max_in_flight(config, BASWARE_IN_FLIGHT),
        )
        # Records the source deleted, sent inactive or closed (target_basware.deletions).
        self.deletions = Deletions(
            delivery=self.delivery, ledger=self.ledger, system=self.system,
            builders={name: cls.build for name, cls in SINKS.items()},
            source_system=config.get("source_system") or "SAGE300")
        # Goods receipts travel inside their order lines (target_basware.receipts); every
        # line on its way keeps the receipts it was sent with before.
        self.receipts = Receipts(
            delivery=self.delivery, ledger=self.ledger, system=self.system,
            build=SINKS["matching_order_lines"].build,
            source_system=config.get("source_system") or "SAGE300")
        self.delivery.on_intake = self._on_intake
        # Known to the delivery for its ledger entries (a rejected receipt, with its contract
        # for replay), never posted: not in the delivery order.
        self.delivery.specs.update({name: cls.spec(name) for name, cls in PART_SINKS.items()})
        # Tap STATEs not written yet, each with the number of records received before it.
        self._received_states: list[tuple[int, dict]] = []
        self._emitted_state: dict | None = None  # latest STATE written (all before confirmed)
        self._input_ended = False
        self._finished = False
        # Set when the saved state's bookmarks describe deliveries to another tenant.
        self.switched_from: str | None = None
        self._state_seen = False
        # Restores (ml_connector_core.restore): the mark this run's states carry, and what
        # they say about re-sending after the ledger was restored older or replaced.
        self._mark: Mark | None = None
        self._drop_bookmarks = False  # the next run reads everything again
        self._resend_next = False  # ... and sends every record it reads (RESEND_KEY)
        self._resend_handed = False  # this run is that next run

    def _on_intake(self, intake: list[Any]) -> None:
        self.deletions.check_orders(intake)
        self.receipts.merge_earlier(intake)

    def _make_client(self) -> BaswareClient:
        return basware_client(self.config, default_scopes=DEFAULT_SCOPES,
                              max_in_flight=max_in_flight(self.config, BASWARE_IN_FLIGHT))

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        if stream_name == PAYMENTS_STREAM:  # the payments job: answers, not imports
            return PaymentResponsesSink
        sink_class: type[BaswareSink] | None = SINKS.get(stream_name) \
            or KEY_LIST_SINKS.get(stream_name) or PART_SINKS.get(stream_name)
        if sink_class is None:
            raise UnknownStreamError(
                f"target-basware has no stream {stream_name!r}; it accepts "
                f"{', '.join([*SINKS, *KEY_LIST_SINKS])}. Rename the stream with a stream map "
                "(__alias__) or deselect it in the tap.")
        return sink_class

    def _process_activate_version_message(self, message_dict: dict) -> None:
        """ACTIVATE_VERSION: the stream's records (a key list's keys) in this run are all the
        source has: what this target delivered and is not among them was deleted there
        (target_basware.deletions). Not the SDK's handling, which is for SQL tables."""
        self._assert_line_requires(message_dict, requires={"stream", "version"})
        if self.switched_from is not None:
            return  # nothing of this run is delivered (see _tenant_changed)
        for stream_map in self.mapper.stream_maps.get(message_dict["stream"]) or []:
            self.deletions.complete(stream_map.stream_alias)

    def _process_record_message(self, message_dict: dict) -> None:
        if self.switched_from is not None:
            # Counted, not delivered (see _tenant_changed).
            self.delivery.summary.received += 1
            self.delivery.summary.add(str(message_dict.get("stream")), "not delivered")
            return
        record = message_dict.get("record")
        maps = self.mapper.stream_maps.get(message_dict.get("stream")) or []
        alias = maps[0].stream_alias if maps else None
        if not isinstance(record, dict) and (alias in SINKS or alias in PART_SINKS):
            # Not a JSON object: no stream map, key or contract can look inside it, and the
            # SDK would stop the run with a TypeError. Rejected alone, like any bad record.
            shown = json.dumps(record, default=str)[:200]
            self.delivery.reject(Rejected(
                alias, f"(not an object) {shown}", {"record": to_jsonable(record)},
                f"field '(record)': must be an object, got {type(record).__name__} {shown}"))
            return
        super()._process_record_message(message_dict)

    # -- checkpoints -------------------------------------------------------------------------
    # The SDK emits STATE only from drain_all() (singer-meltano.md §3.3). Here a tap STATE
    # that arrives when some stream has a full batch ready triggers delivery, and a STATE is
    # written as soon as every record received before it is confirmed by Basware's
    # requestStatus and in the ledger. A crash therefore re-reads at most about one batch per
    # stream, and the ledger's payload hashes keep the re-read records from being re-posted.

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        if not self._state_seen:
            self._state_seen = True
            self._tenant_changed(message_dict["value"])
            self._check_restore(message_dict["value"])
        if self.switched_from is not None:
            return
        received = self.delivery.received
        if self._received_states and self._received_states[-1][0] == received:
            self._received_states.pop()  # no record between the two: the newer one says all
        self._received_states.append((received, message_dict["value"]))
        if self.delivery.full_batch_ready():
            self.delivery.deliver(final=False)
        self._confirm_state()

    def _drain_all(self, sink_list: Iterable[Sink], parallelism: int) -> None:
        # drain_all() calls this at end of input, after 5 minutes of buffering and on SIGTERM.
        # All streams are delivered together, in dependency order, one at a time; before the
        # end of input, records whose references have not arrived yet wait.
        self.delivery.deliver(final=self._input_ended)
        self._confirm_state()

    def _confirm_state(self) -> None:
        # The latest STATE all of whose records are confirmed (a batch still filling up
        # holds back the STATEs received after its first record).
        if not self._received_states:
            return
        through = self.delivery.confirmed_through()
        covered = [state for received, state in self._received_states if received <= through]
        if not covered:
            return
        self._received_states = [(received, state) for received, state
                                 in self._received_states if received > through]
        self.delivery.flush_ledger()  # skips and rejections are on record before the STATE
        # A dry run delivered nothing: its STATE must not advance the tap's bookmarks.
        if covered[-1] != self._emitted_state and not self.dry_run:
            self._emitted_state = copy.deepcopy(covered[-1])
            self._write_state_message({**copy.deepcopy(self._emitted_state),
                                       DELIVERED_TO_KEY: self.system})
        # drain_all() writes _latest_state after draining; keep it None so only
        # _confirm_state() writes STATE (and never one with unconfirmed records before it).
        self._latest_state = None

    def _tenant_changed(self, state: Any) -> None:
        """The tap's first STATE is the state saved by the last run. If that run delivered to
        another Basware tenant, its bookmarks say what that tenant has: a run reading only
        what changed since would leave this one without everything else. So this run sends
        nothing, and ends with a STATE without bookmarks: the next run reads everything and
        sends it here. (A tenant switched back finds its deliveries in the ledger again.)"""
        previous = delivered_to(state) if isinstance(state, dict) else None
        if previous is None or previous == self.system:
            return
        self.switched_from = previous
        self.logger.warning(
            "The saved state was written by runs that delivered to %s; this run delivers to "
            "%s. Nothing is sent in this run: the state is reset so that the next run reads "
            "everything from Sage 300 and sends it to %s.", previous, self.system, self.system)
        if not self.dry_run:
            kept = {k: v for k, v in state.items() if k not in ("bookmarks", DELIVERED_TO_KEY)}
            self._write_state_message({**kept, DELIVERED_TO_KEY: self.system})

    def _check_restore(self, state: Any) -> None:
        """The tap's first STATE is the state saved by the last run: compared with the
        ledger (ml_connector_core.restore). When the ledger is older than that state, or
        another ledger, it may say Basware has a record with a payload Basware no longer
        has (a record changed after the backup and changed back since): records would be
        skipped that must be sent. So this run sends every record it reads, and its states
        drop the bookmarks and ask the next run to do the same: that run reads everything
        from Sage 300 and sends it (Basware answers an identical record NotProcessed), and
        its last state, once it ends well, no longer asks. A state older than the ledger
        only makes records be read again, which the ledger skips: said, nothing else."""
        state = state if isinstance(state, dict) else {}
        self._mark, finding = check_state(self.ledger, self.ledger_run.run_id, state)
        if state.get(RESEND_KEY) is True:
            self._resend_handed = self._resend_next = self.delivery.resend = True
            self.logger.warning("The ledger was restored older than the state or replaced "
                                "(see the run before this one): this run reads every record "
                                "from Sage 300 and sends each one to Basware, even those the "
                                "ledger says Basware has")
        if finding is None:
            return
        what = finding.describe(self.ledger.redactor.redact(configured_ledger_url(self.config)
                                                            or "(default)"),
                                pipeline_state_id("tap-sage300", self.name))
        if finding.kind in (LEDGER_OLDER, OTHER_LEDGER):
            self.delivery.resend = self._drop_bookmarks = self._resend_next = True
            self.logger.warning(
                "%s. What the ledger says Basware has may not be what it has, so this run "
                "sends every record it reads, and the next run reads every record from Sage "
                "300 and sends it too (Basware answers an identical record NotProcessed); "
                "then Basware holds what Sage 300 holds and the ledger knows it again. "
                "Nothing to do.", what)
        else:
            self.logger.warning("%s. Nothing to do: this run reads again what changed since "
                                "the older bookmarks, and the ledger skips what Basware has "
                                "already.", what)

    def _write_state_message(self, state: dict) -> None:
        """Every STATE this run writes carries its mark and, after a restore, what the next
        run is to do (see _check_restore)."""
        state = stamped(state, self._mark)
        if self._drop_bookmarks:
            state.pop("bookmarks", None)
        if self._resend_next:
            state[RESEND_KEY] = True
        else:
            state.pop(RESEND_KEY, None)
        super()._write_state_message(state)

    # -- run boundaries ----------------------------------------------------------------------

    def listen(self, file_input: IO[str] | None = None) -> None:  # type: ignore[misc]
        # Wraps the SDK's read loop (final there only for type checkers) so a failed run
        # still leaves its ledger entries, run status and summary.
        try:
            super().listen(file_input)
        except BaseException as exc:
            self._finish(exc)
            raise
        self._finish(None)

    def process_endofpipe(self) -> None:
        self._input_ended = True
        super().process_endofpipe()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:  # pragma: no cover
        self.logger.warning("Terminated by signal %d: delivering what is ready; the rest is "
                            "sent again next run", signum)
        try:
            self.delivery.deliver(final=False)
            self._confirm_state()
        finally:
            self._finish(KeyboardInterrupt(f"signal {signum}"))
        sys.exit(128 + signum)

    def _finish(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        status = "success"
        try:
            if error is not None:
                status = "failed"
                self.delivery.fail_pending(error)
            self.delivery.flush_ledger()
            if error is None and self._resend_handed and not self._drop_bookmarks \
                    and self._emitted_state is not None and not self.dry_run:
                # Everything was read and sent again: the next run is an ordinary one.
                self._resend_next = False
                self._write_state_message({**copy.deepcopy(self._emitted_state),
                                           DELIVERED_TO_KEY: self.system})
        finally:
            summary = self.delivery.summary
            log = self.logger.error if error is not None else self.logger.info
            log("Run summary (%s):", status)
            for line in summary.lines():
                log("  %s", line)
            if error is not None:
                log("  run FAILED: %s: %s", type(error).__name__, error)
            if self.switched_from is not None:
                self.logger.warning(
                    "  NOT DELIVERED: %d record(s) received and not sent, because the saved "
                    "state describes deliveries to %s, not to %s; the state is reset, so the "
                    "next run reads everything and sends it to %s", summary.received,
                    self.switched_from, self.system, self.system)
            log("%s", summary.run_counts().line(self.name, status, self.ledger_run.run_id))
            if self.dry_run:
                log("  %s", self.dry_run.summary_line())
                self.dry_run.close()
            try:
                self.ledger.finish_run(self.ledger_run.run_id, status, {
                    **summary.as_dict(), "system": self.system,
                    **({"not_delivered_state_of": self.switched_from}
                       if self.switched_from else {})})
            except Exception:  # the original error matters more than the bookkeeping one
                logging.getLogger(self.name).exception("could not close the ledger run")
            self.ledger.close()
            self.delivery.close()
            self.deletions.close()


if __name__ == "__main__":
    TargetBasware.cli()
