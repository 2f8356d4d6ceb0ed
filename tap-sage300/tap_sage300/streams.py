"""The streams: one small class per Sage 300 entity set.

Field names are Sage's own (reference §4); every record adds ``company_id``. Names in lower
case (``gl_account``, ``cost_center``, ``completed``) are derived by the tap. Enums list the
members the reference documents; a value outside them is nulled and reported, never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from decimal import Decimal
from functools import cached_property
from typing import Any, ClassVar

from singer_sdk import metrics
from singer_sdk import typing as th
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.types import Context

from ml_connector_core.sage300_api import odata_literal
from ml_connector_core.sage300_fields import FieldUse
from tap_sage300.client import Problem, RecordCounter, RecordShape, Sage300Stream
from tap_sage300.deletions import STATE_KEY
from tap_sage300.fields import (
    PLUGIN,
    deselect_fix,
    gl_lookup_uses,
    schema_kind,
    stream_off_fix,
)

STATUS = ["Active", "Inactive"]
YES_NO = ["No", "Yes"]


def text(name: str, **kwargs: Any) -> th.Property:
    return th.Property(name, th.StringType, **kwargs)


def day(name: str, **kwargs: Any) -> th.Property:
    """A Sage date (date-only), emitted as ``YYYY-MM-DDT00:00:00Z``."""
    return th.Property(name, th.DateTimeType, **kwargs)


def amount(name: str, **kwargs: Any) -> th.Property:
    """Edm.Decimal amounts and quantities: exact Decimal in, JSON number out."""
    return th.Property(name, th.NumberType, **kwargs)


def whole(name: str, **kwargs: Any) -> th.Property:
    return th.Property(name, th.IntegerType, **kwargs)


def choice(name: str, members: list[str], **kwargs: Any) -> th.Property:
    return th.Property(name, th.StringType(allowed_values=members), **kwargs)


COMPANY = th.Property("company_id", th.StringType, required=True,
                      description="Sage 300 company (org) id the record was read from")


def address() -> list[th.Property]:
    return [text(f"AddressLine{n}") for n in range(1, 5)] + [
        text("City"), text("StateProvince"), text("ZipPostalCode"), text("Country")]


class VendorsStream(Sage300Stream):
    name = "vendors"
    resource = "AP/APVendors"
    primary_keys: ClassVar[list[str]] = ["company_id", "VendorNumber"]
    replication_key = "DateLastMaintained"
    schema = th.PropertiesList(
        COMPANY,
        text("VendorNumber", required=True),
        text("ShortName"), text("VendorName"), text("GroupCode"),
        choice("Status", STATUS), day("InactiveDate"),
        choice("OnHold", ["NotOnHold", "OnHold"]),
        day("DateLastMaintained"), day("StartDate"),
        *address(),
        text("ContactName"), text("PhoneNumber"), text("FaxNumber"), text("Email"),
        text("WebSite"), text("CurrencyCode"), text("AccountSet"), text("RateType"),
        text("Terms", description="Payment terms code (APTerms.TermsCode)"),
        text("TaxGroup"),
        *[text(f"TaxRegistrationCode{n}") for n in range(1, 6)],
        *[whole(f"TaxClassCode{n}") for n in range(1, 6)],
        text("BankCode"), text("PaymentCode"), text("DistributionSet"),
        text("DistributionCode"), text("DuplicateAmountCode"), text("DuplicateDateCode"),
    ).to_dict()

    #: Vendor numbers of a company read whole in this run (no date filter), for vendor_keys.
    _whole: bytearray | None = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # A read without a date filter (the first run, --full-refresh) is every vendor: the
        # vendor_keys list of the company comes from it at no cost (tap_sage300.deletions).
        keys = self._tap.streams.get(VendorKeysStream.name)
        whole = (context is not None and keys is not None and keys.selected
                 and not self.retry_mode and self.get_starting_timestamp(context) is None)
        self._whole = bytearray() if whole else None
        try:
            yield from super().get_records(context)
            if self._whole is not None and context is not None:
                self._tap.vendor_key_plan.read_whole(context["company_id"], bytes(self._whole))
        finally:
            self._whole = None

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        record = super().post_process(row, context)
        if record is not None and self._whole is not None:
            self._whole += record["VendorNumber"].encode() + b"\n"
        return record


class VendorKeysStream(Sage300Stream):
    """Every vendor number in Sage, when a vendor may have been deleted since the last run.

    `vendors` is incremental, so a deleted vendor is simply never read again. This list is
    the whole set (ACTIVATE_VERSION follows it): what a target delivered and is not listed
    was deleted. It is sent only when the vendor counts say a deletion may have happened
    (tap_sage300.deletions: one keys-only request per company otherwise), and then for every
    company. Not in the ledger: `vendors` records what was read.
    """

    name = "vendor_keys"
    resource = "AP/APVendors"
    primary_keys: ClassVar[list[str]] = ["company_id", "VendorNumber"]
    activate_version = True
    audited = False
    schema = th.PropertiesList(COMPANY, text("VendorNumber", required=True)).to_dict()

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if self.retry_mode:
            return  # a retry reads a few vendors: no vendor list, no counts
        plan = self._tap.vendor_key_plan
        plan.decide()
        if plan.send and context is not None:
            self._extracted_at = utc_now()
            for number in plan.numbers(context["company_id"]):
                yield {"VendorNumber": number}

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        return self.accept({"company_id": context["company_id"],
                            "VendorNumber": row["VendorNumber"]}, [])

    def version_complete(self) -> bool:
        return self._tap.vendor_key_plan.send

    def _sync_records(self, context: Context | None = None, *, write_messages: bool = True
                      ) -> Iterator[dict[str, Any]]:
        yield from super()._sync_records(context, write_messages=write_messages)
        if context is None and write_messages and not self.retry_mode:
            # The counts of this run, for the next run's check; in a STATE after the list
            # and its ACTIVATE_VERSION, so the target confirms those first.
            self._tap.state[STATE_KEY] = self._tap.vendor_key_plan.state()
            self.state_manager.is_flushed = False
            self._write_state_message()


class CustomersStream(Sage300Stream):
    name = "customers"
    resource = "AR/ARCustomers"
    primary_keys: ClassVar[list[str]] = ["company_id", "CustomerNumber"]
    replication_key = "DateLastMaintained"
    schema = th.PropertiesList(
        COMPANY,
        text("CustomerNumber", required=True),
        text("ShortName"), text("CustomerName"), text("GroupCode"),
        choice("Status", STATUS), day("InactiveDate"), choice("OnHold", YES_NO),
        day("DateLastMaintained"), day("StartDate"),
        *address(),
        text("ContactName"), text("PhoneNumber"), text("Email"), text("CurrencyCode"),
        text("AccountSet"), text("Terms"), text("TaxGroup"),
    ).to_dict()


class PaymentTermsStream(Sage300Stream):
    """APTerms has no maintenance date: full table (downstream detects change by hash)."""

    activate_version = True  # read whole every run: ACTIVATE_VERSION after it

    name = "payment_terms"
    resource = "AP/APTerms"
    primary_keys: ClassVar[list[str]] = ["company_id", "TermsCode"]
    schema = th.PropertiesList(
        COMPANY,
        text("TermsCode", required=True),
        text("Description"), choice("UsePaymentSchedule", YES_NO),
        text("CalculationBaseForDiscountwithTax"), text("MethodOfCalcForDiscountDate"),
        text("MethodOfCalcForDueDate"), whole("NumberOfPayments"),
        amount("TotalPercentageDue"),
        th.Property("TermsPaymentSchedule", th.ArrayType(th.ObjectType(
            whole("PaymentNumber"), amount("PercentageDue"), whole("DueNumberOfDays"),
            amount("DiscountPercent"), whole("DiscountNumberOfDays"),
        ))),
    ).to_dict()


class GLAccountsStream(Sage300Stream):
    """The chart of accounts; GLAccounts has no maintenance date, so full table."""

    activate_version = True  # read whole every run: ACTIVATE_VERSION after it

    name = "gl_accounts"
    resource = "GL/GLAccounts"
    primary_keys: ClassVar[list[str]] = ["company_id", "UnformattedAccount"]
    derived_fields = frozenset({"company_id", "cost_center"})
    schema = th.PropertiesList(
        COMPANY,
        text("UnformattedAccount", required=True,
             description="Account id without delimiters (what PO lines and AP details use)"),
        text("AccountNumber", description="Formatted account, with segment delimiters"),
        text("Description"), day("DateCreated"),
        choice("AccountType", ["IncomeStatement", "BalanceSheet", "RetainedEarnings"]),
        choice("NormalBalanceDRCR", ["Debit", "Credit"]), choice("Status", STATUS),
        text("PostToAccount"), text("StructureCode"),
        *[text(f"AccountSegmentCode{n}") for n in range(1, 11)],
        text("AccountGroupCode"), choice("Multicurrency", YES_NO), text("DefaultCurrencyCode"),
        choice("ControlAccount", YES_NO), choice("QuantitiesAllowed", YES_NO),
        text("UnitOfMeasure"), choice("AllocationsAllowed", YES_NO),
        text("cost_center", description="The account's cost-center segment code "
                                         "(AccountSegmentCode<cost_center_segment>)"),
    ).to_dict()

    _index: dict[str, tuple[str | None, str | None]] | None = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # The chart read here is the one the PO lines look their cost centers up in: when it
        # carries the fields the look-up needs, it is handed over once the company is read
        # completely, and the look-up makes no request of its own.
        if self.retry_values(context) == []:
            return  # retry mode: the chart is not read (the PO lines look it up themselves)
        segment = self._tap.cost_center_field
        wanted = (self.is_selected("AccountNumber") and self.is_selected(segment)
                  and not self.retry_mode)
        self._index = index = {} if wanted else None
        yield from super().get_records(context)
        self._index = None
        if index is not None and context is not None:
            self._tap.remember_gl_accounts(context["company_id"], index)

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        problems: list[Problem] = []
        record = self.shape.apply(row, problems, trim=self.page_padded)
        record["company_id"] = context["company_id"]
        record["cost_center"] = record.get(self._tap.cost_center_field) or None
        if self._index is not None and record["UnformattedAccount"]:
            self._index[record["UnformattedAccount"]] = (record["AccountNumber"] or None,
                                                         record["cost_center"])
        return self.accept(record, problems)


class CostCentersStream(Sage300Stream):
    """Codes of the GL segment that is the cost center (``cost_center_segment``)."""

    activate_version = True  # read whole every run: ACTIVATE_VERSION after it

    name = "cost_centers"
    resource = "GL/GLSegmentCodes"
    primary_keys: ClassVar[list[str]] = ["company_id", "SegmentNumber", "SegmentCodeKey"]
    schema = th.PropertiesList(
        COMPANY,
        text("SegmentNumber", required=True, description="Zero-padded, e.g. 000002"),
        text("SegmentCodeKey", required=True, description="The cost center code"),
        text("SegmentCodeDescription"),
    ).to_dict()

    filter_fields = ("SegmentNumber",)

    @property
    def static_filter(self) -> str:  # type: ignore[override]
        return (f"{self.wire_name('SegmentNumber')} eq "
                f"{odata_literal(self._tap.cost_center_segment_number)}")


class PurchaseOrdersStream(Sage300Stream):
    """PO headers. Lines come inline in the same response and feed purchase_order_lines."""

    name = "purchase_orders"
    resource = "PO/POPurchaseOrders"
    primary_keys: ClassVar[list[str]] = ["company_id", "PurchaseOrderSequenceKey"]
    replication_key = "DateLastMaintained"
    schema = th.PropertiesList(
        COMPANY,
        whole("PurchaseOrderSequenceKey", required=True,
              description="The PO's key (Edm.Decimal in Sage, always integral)"),
        text("PurchaseOrderNumber"),
        text("Vendor", description="Vendor number (APVendors.VendorNumber)"),
        text("VendorName"), day("PurchaseOrderDate"), day("DateLastMaintained"),
        text("Description"), text("Reference"), text("Comment"), text("CurrencyCode"),
        text("TermsCode"), choice("Completed", YES_NO), amount("ExtendedCostTotal"),
        th.Property("line_keys", th.ArrayType(th.StringType), description=(
            "The keys of every line the PO has now, as purchase_order_lines keys them "
            "(company_id/PurchaseOrderSequenceKey/LineNumber): a line on an earlier version "
            "of the PO and not listed here was removed in Sage")),
    ).to_dict()
    derived_fields = frozenset({"company_id", "line_keys"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lines of the PO being processed, handed to the child stream without a new request.
        self.pending_lines: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def parse_response(self, response: Any) -> Iterable[dict[str, Any]]:
        # Lines of a header a stream map filtered out were never taken: drop them per page.
        self.pending_lines.clear()
        return super().parse_response(response)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        try:
            yield from super().get_records(context)
        finally:
            for child in self.child_streams:
                if isinstance(child, PurchaseOrderLinesStream):
                    child.finish_company()

    def _sync_children(self, child_context: Context | None) -> None:
        # The SDK runs a full child sync() per purchase order: logging, meters, signposts and
        # state finalizing that cost more than the lines themselves at 20,000 POs. The first
        # PO of each company goes through it (SCHEMA, the company's state partition); the
        # others' lines are written directly, as that sync would write them.
        lines = next((child for child in self.child_streams
                      if isinstance(child, PurchaseOrderLinesStream)), None)
        if (child_context is None or lines is None or len(self.child_streams) > 1
                or not lines.selected or lines.synced_company != child_context["company_id"]):
            super()._sync_children(child_context)
            if child_context is not None and lines is not None:
                lines.synced_company = child_context["company_id"]
            return
        lines.write_lines(child_context)

    def _lines_wanted(self) -> bool:
        return any(child.selected for child in self.child_streams)

    @cached_property
    def _lines_listed(self) -> bool:
        return self.is_selected("line_keys")

    def select_fields(self) -> list[str]:
        fields = super().select_fields()
        if self._lines_wanted() or self._lines_listed:
            return [*fields, "PurchaseOrderLines"]
        return fields

    def field_uses(self) -> list[FieldUse]:
        uses = super().field_uses()
        if self._lines_listed:  # line_keys: the number of every line in the response
            fix = deselect_fix(self.name, "line_keys")
            uses += [FieldUse(PLUGIN, f"stream {self.name} (line_keys)", self.resource, path,
                              kind, fix=fix)
                     for path, kind in ((("PurchaseOrderLines",), "details"),
                                        (("PurchaseOrderLines", "LineNumber"), "integer"))]
        return uses

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        lines = row.pop("PurchaseOrderLines", None)
        problems: list[Problem] = []
        record = self.shape.apply(row, problems, trim=self.page_padded)
        record["company_id"] = context["company_id"]
        record["line_keys"] = self._line_keys(record, lines) if self._lines_listed else None
        record = self.accept(record, problems)
        if record is not None and self._lines_wanted():
            key = (record["company_id"], record["PurchaseOrderSequenceKey"])
            self.pending_lines[key] = lines or []
        return record

    @staticmethod
    def _line_keys(record: dict[str, Any], lines: list[dict[str, Any]] | None) -> list[str]:
        """Each line's key as purchase_order_lines gives it (Sage300Stream.source_key); a
        line without a usable number is left out (that stream rejects it)."""
        head = f"{record['company_id']}/{record['PurchaseOrderSequenceKey']}/"
        keys = []
        for line in lines or ():
            number = line.get("LineNumber")
            if isinstance(number, Decimal | float) and number == int(number):
                number = int(number)
            if isinstance(number, int) and not isinstance(number, bool):
                keys.append(f"{head}{number}")
        return keys

    def get_child_context(self, record: dict[str, Any], context: Context | None
                          ) -> dict[str, Any]:
        # Header fields the lines repeat ride along; only company_id partitions the state.
        return {"company_id": record["company_id"],
                "PurchaseOrderSequenceKey": record["PurchaseOrderSequenceKey"],
                "PurchaseOrderNumber": record["PurchaseOrderNumber"],
                "Vendor": record["Vendor"]}

    def take_lines(self, context: Context) -> list[dict[str, Any]]:
        return self.pending_lines.pop(
            (context["company_id"], context["PurchaseOrderSequenceKey"]), [])


class _CompanyLineCounter(RecordCounter):
    """One record counter for all the per-PO syncs of purchase_order_lines.

    The SDK syncs the child once per purchase order and would log a record count and a sync
    timer for each: 40,000 METRIC lines for 20,000 POs, each built, redacted and dropped at a
    cost higher than the records'. This counter spans the syncs, is tagged with the company
    only, and logs at the SDK's interval and once when the company's POs are done.
    """

    def __enter__(self) -> _CompanyLineCounter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None  # a PO's sync ends; the company's count goes on

    def with_context(self, value: Context | None) -> None:
        company = (value or {}).get("company_id")
        if self.value and company != (self.context or {}).get("company_id"):
            self._pop()
        super().with_context(None if company is None else {"company_id": company})

    def finish(self) -> None:
        if self.value:
            self._pop()


class _NoTimer(metrics.Timer):
    """The per-PO sync timer, silent: purchase_orders' own timer covers the time."""

    def __exit__(self, *exc_info: object) -> None:
        return None


class PurchaseOrderLinesStream(Sage300Stream):
    """One record per PO line, with its GL account and cost center, for three-way matching.

    A child of purchase_orders fed from the header's own response (Sage returns the lines
    inline), so it makes no request of its own and follows the headers' incremental filter.
    The cost center is the configured segment of the line's expense account, looked up once
    per company and run in GLAccounts rather than cut out of the account string, because
    segment lengths and order differ per account structure.
    """

    name = "purchase_order_lines"
    resource = "PO/POPurchaseOrders"
    parent_stream_type = PurchaseOrdersStream
    primary_keys: ClassVar[list[str]] = ["company_id", "PurchaseOrderSequenceKey", "LineNumber"]
    # One state entry per company, not one per purchase order (the child context).
    state_partitioning_keys: ClassVar[list[str]] = ["company_id"]
    derived_fields = frozenset({"company_id", "PurchaseOrderNumber", "Vendor", "gl_account",
                                "gl_account_formatted", "cost_center", "completed"})
    schema = th.PropertiesList(
        COMPANY,
        whole("PurchaseOrderSequenceKey", required=True),
        text("PurchaseOrderNumber"), text("Vendor"),
        whole("LineNumber", required=True),
        text("ItemNumber"), text("ItemDescription"), text("Location"), text("UnitOfMeasure"),
        amount("QuantityOrdered"), amount("QuantityReceived"), amount("UnitCost"),
        amount("ExtendedCost"),
        text("gl_account", description="Expense GL account, unformatted (ExpenseAccount)"),
        text("gl_account_formatted", description="The same account as GLAccounts formats it"),
        text("cost_center", description="Cost-center segment code of gl_account"),
        th.Property("completed", th.BooleanType, description="Line is complete (Completed=Yes)"),
        choice("StockItem", YES_NO, description="Yes: an inventory item, received into a "
                                                "location (its invoices match a receipt)"),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_sent = False
        # The SDK syncs this child once per purchase order and logs "Beginning sync" each
        # time: 20,000 lines for 20,000 POs. Warnings still show. Metrics: see below.
        self.logger.setLevel(logging.WARNING)
        self._counter = _CompanyLineCounter(metrics.Metric.RECORD_COUNT,
                                            {metrics.Tag.STREAM: self.name})

    def get_record_counter(self, **kwargs: Any) -> metrics.Counter:
        return self._counter

    def get_sync_timer(self) -> metrics.Timer:
        return _NoTimer(metrics.Metric.SYNC_DURATION, {metrics.Tag.STREAM: self.name})

    #: The company whose lines went through one SDK sync() already in this run.
    synced_company: str | None = None

    def write_lines(self, context: Context) -> None:
        """One PO's lines, written as sync() would write them (see the parent's
        _sync_children): post_process, RECORD messages, the record count."""
        for row in self.get_records(context):
            record = self.post_process(row, context)
            if record is not None:
                self._write_record_message(record)
                self._counter.increment()

    def finish_company(self) -> None:
        """Called by the parent when a company's purchase orders are done."""
        self._counter.finish()
        self.synced_company = None

    @cached_property
    def _needs_account(self) -> bool:
        return self._needs_gl_lookup or self.is_selected("gl_account")

    @cached_property
    def _needs_gl_lookup(self) -> bool:
        return self.is_selected("cost_center") or self.is_selected("gl_account_formatted")

    def field_uses(self) -> list[FieldUse]:
        """The lines come inside their PO (``PurchaseOrderLines``); the derived fields need
        the line's expense account and completion, and the GL account it is coded to."""
        role = f"stream {self.name}"
        off = stream_off_fix(self.name)
        lines = ("PurchaseOrderLines",)
        uses = [FieldUse(PLUGIN, role, self.resource, lines, "details", fix=off)]
        properties = self.line_shape.fields
        header = {"PurchaseOrderSequenceKey", "PurchaseOrderNumber", "Vendor", "company_id"}
        for name in properties:
            if name in header:
                continue
            kind = schema_kind(self.schema["properties"].get(name)
                               or {"type": "string"})
            why, derived = {"ExpenseAccount": (
                                " (the line's GL account: it codes every invoice matched to "
                                "the PO)", ("gl_account", "gl_account_formatted",
                                            "cost_center")),
                            "Completed": ("", ("completed",))}.get(name, ("", (name,)))
            fix = deselect_fix(self.name, *derived)
            uses.append(FieldUse(PLUGIN, role + why, self.resource, (*lines, name), kind,
                                 fix=fix))
        if self.line_shape.fields and "ExpenseAccount" in self.line_shape.fields \
                and self._needs_gl_lookup:
            uses += gl_lookup_uses(self._tap.cost_center_field, role)
        return uses

    @cached_property
    def line_shape(self) -> RecordShape:
        """The Sage line fields to copy, plus the two the derived fields come from (when a
        field derived from them is selected)."""
        sources = th.PropertiesList(
            *([text("ExpenseAccount")] if self._needs_account else []),
            *([choice("Completed", YES_NO)] if self.is_selected("completed") else []))
        schema = {"properties": {**self.schema["properties"], **sources.to_dict()["properties"]}}
        return RecordShape.from_schema(schema, skip=self.derived_fields,
                                       selected=self.is_selected)

    def _write_schema_message(self) -> None:
        # The SDK syncs a child once per parent record, and each sync() would repeat the
        # SCHEMA: one per purchase order. Once per run says the same.
        if not self._schema_sent:
            self._schema_sent = True
            super()._write_schema_message()

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        parent = self._tap.streams[PurchaseOrdersStream.name]
        assert isinstance(parent, PurchaseOrdersStream)
        self._extracted_at = parent._extracted_at  # the lines came in the header's page
        return parent.take_lines(context or {})

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        company = context["company_id"]
        problems: list[Problem] = []
        parent = self._tap.streams[PurchaseOrdersStream.name]
        line = self.line_shape.apply(row, problems, trim=parent.page_padded)
        account = line.pop("ExpenseAccount", None) or None
        completed = line.pop("Completed", None)
        record = {"company_id": company, **line,
                  "PurchaseOrderSequenceKey": context["PurchaseOrderSequenceKey"],
                  "PurchaseOrderNumber": context["PurchaseOrderNumber"],
                  "Vendor": context["Vendor"],
                  "gl_account": account, "gl_account_formatted": None, "cost_center": None,
                  "completed": None if completed is None else completed == "Yes"}
        if account and self._needs_gl_lookup:
            known = self._tap.gl_account_index(company).get(account)
            if known is None:
                problems.append(Problem("gl_account", account, "an account in GLAccounts",
                                        "cost_center emitted as null"))
            else:
                record["gl_account_formatted"], record["cost_center"] = known
        return self.accept(record, problems)


class POReceiptsStream(Sage300Stream):
    """PO receipts (goods received against purchase orders), with their lines inline.

    Read through ``PO/POGetReceipts``, the read side of receipts since the 2022.2 SDK
    (``PO/POReceipts`` takes POSTs only); an older install has no such entity set and the
    field check says so before the first read (turn the stream off there). Incremental on
    ``DateLastMaintained``. Each line names the PO line it received
    (``PurchaseOrderLineNumber``); a receipt undone in Sage stays, with ``Cancelled`` Yes.
    Usable on its own (e.g. into a warehouse); the master-data job sends it to Basware as
    the goods receipts of the matching order lines (target-basware ``goods_receipts``).
    """

    name = "po_receipts"
    resource = "PO/POGetReceipts"
    primary_keys: ClassVar[list[str]] = ["company_id", "ReceiptSequenceKey"]
    replication_key = "DateLastMaintained"
    schema = th.PropertiesList(
        COMPANY,
        whole("ReceiptSequenceKey", required=True,
              description="The receipt's key (Edm.Decimal in Sage, always integral)"),
        text("ReceiptNumber"), day("ReceiptDate"),
        text("Vendor", description="Vendor number (APVendors.VendorNumber)"),
        text("PurchaseOrderNumber"),
        whole("PurchaseOrderSequenceKey", description="The PO received against"),
        text("Description"), text("Reference"),
        choice("Cancelled", YES_NO, description="Yes: the receipt was undone in Sage"),
        day("DateLastMaintained"),
        th.Property("ReceiptLine2s", th.ArrayType(th.ObjectType(
            whole("LineNumber"),
            whole("PurchaseOrderLineNumber", description="The PO line received"),
            text("ItemNumber"), text("Location"), text("UnitOfMeasure"),
            amount("QuantityReceived"), amount("UnitCost"),
        )), description="The receipt's lines (Sage's own name for the collection)"),
    ).to_dict()


class APInvoiceBatchesStream(Sage300Stream):
    """AP invoice batches with their entries: which Basware invoice became which Sage entry
    (the BWINVID optional field), and whether the batch is open, ready or posted.

    Incremental on ``DateLastEdited`` (date-only like DateLastMaintained; a status change
    such as posting edits it), so the feedback to Basware sees every batch that moved.
    """

    name = "ap_invoice_batches"
    resource = "AP/APInvoiceBatches"
    primary_keys: ClassVar[list[str]] = ["company_id", "BatchNumber"]
    replication_key = "DateLastEdited"
    schema = th.PropertiesList(
        COMPANY,
        whole("BatchNumber", required=True, description="Edm.Decimal in Sage, always integral"),
        day("BatchDate"), text("Description"), text("BatchType"),
        choice("BatchStatus", ["Open", "ReadyToPost", "Posted", "Deleted", "PostInProgress"]),
        whole("NumberOfEntries"), amount("BatchTotal"), whole("LastEntryNumber"),
        whole("PostingSequenceNumber"), whole("NumberOfErrors"), day("DateLastEdited"),
        text("SourceApplication"),
        th.Property("Invoices", th.ArrayType(th.ObjectType(
            whole("EntryNumber"), text("VendorNumber"), text("DocumentNumber"),
            choice("DocumentType", ["Invoice", "DebitNote", "CreditNote"]),
            text("InvoiceDescription"), day("DocumentDate"), day("DueDate"),
            day("PostingDate"), text("CurrencyCode"), text("PONumber"), text("OrderNumber"),
            text("Terms"), text("TaxGroup"), amount("TaxAmount1"), amount("TaxTotal"),
            amount("DocumentTotalBeforeTaxes"), amount("DocumentTotalIncludingTax"),
            whole("NumberOfDetails"),
            th.Property("InvoiceDetails", th.ArrayType(th.ObjectType(
                whole("LineNumber"), text("DistributionCode"), text("GLAccount"),
                amount("DistributedAmount"), amount("DistributedAmountBeforeTaxes"),
                text("DistributionDescription"), amount("TaxAmount1"), text("Comment"),
            ))),
            th.Property("InvoiceOptionalFields", th.ArrayType(th.ObjectType(
                text("OptionalField"), text("Value"),
            ))),
        ))),
    ).to_dict()
