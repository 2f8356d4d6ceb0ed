"""``tax_codes``: Sage 300's purchase tax as the flat codes Basware's invoice lines carry.

Read from ``TX/TXTaxGroups`` (purchases groups), with the company's ``TX/TXTaxAuthorities``
(names) and ``TX/TXTaxRates`` (purchase rates) read once alongside: three small GETs per
company, the whole tables every run (no maintenance date to go by; ACTIVATE_VERSION after).
One record per tax group and combination of item classes 1..``tax_item_classes`` per
authority, ``BCTAX-1.2`` (ml_connector_core.tax_codes, docs/decisions.md "Tax codes"), with
its percentage for a taxable vendor and each authority's share. The master-data job sends
them to Basware's taxCodes; usable on its own (e.g. into a warehouse).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

from singer_sdk import typing as th
from singer_sdk.helpers.types import Context

from ml_connector_core.sage300_api import odata_literal
from ml_connector_core.sage300_fields import FieldUse
from ml_connector_core.tax_codes import (
    AUTHORITIES,
    DEFAULT_BUYER_CLASS,
    MAX_AUTHORITIES,
    PURCHASES,
    RATES,
    TaxGroup,
    TaxTables,
    describe,
    parse_code,
    read_tax_tables,
)
from tap_sage300.client import Problem, Sage300Stream
from tap_sage300.fields import PLUGIN, stream_off_fix
from tap_sage300.streams import COMPANY, amount, text, whole

#: Item classes per authority the codes are made for, unless ``tax_item_classes`` says.
DEFAULT_ITEM_CLASSES = 2


class TaxCodesStream(Sage300Stream):
    activate_version = True  # read whole every run: ACTIVATE_VERSION after it

    name = "tax_codes"
    resource = "TX/TXTaxGroups"
    primary_keys: ClassVar[list[str]] = ["company_id", "tax_code"]
    derived_fields = frozenset({"company_id", "tax_code", "item_classes", "tax_percentage",
                                "tax_description", "authorities"})
    filter_fields = ("TransactionType",)
    schema = th.PropertiesList(
        COMPANY,
        text("tax_code", required=True,
             description="The flat code: tax group, then the item class per authority "
                         "(BCTAX-1.2)"),
        text("TaxGroupKey", description="The Sage tax group"),
        text("TransactionType", description="Always Purchases"),
        text("Description", description="The tax group's description"),
        *[text(f"TaxAuthority{n}") for n in range(1, MAX_AUTHORITIES + 1)],
        th.Property("item_classes", th.ArrayType(th.IntegerType),
                    description="The item tax class per authority, in the group's order"),
        amount("tax_percentage",
               description="Sum of the authorities' purchase rates for a taxable vendor "
                           "(buyer class 1)"),
        text("tax_description", description="Group and each authority's rate and class"),
        th.Property("authorities", th.ArrayType(th.ObjectType(
            text("TaxAuthority"), text("Description"), whole("item_class"), amount("rate"),
        )), description="Each authority's share"),
    ).to_dict()

    @property
    def static_filter(self) -> str:  # type: ignore[override]
        return f"{self.wire_name('TransactionType')} eq {odata_literal(PURCHASES)}"

    @property
    def item_classes(self) -> int:
        return int(self.config.get("tax_item_classes") or DEFAULT_ITEM_CLASSES)

    def _key_term(self, values: list[str]) -> str:
        """Retry mode names codes; Sage is asked for their tax group."""
        parsed = parse_code(values[0])
        group = parsed[0] if parsed else values[0]
        return f"{self.wire_name('TaxGroupKey')} eq {odata_literal(group)}"

    def field_uses(self) -> list[FieldUse]:
        role = f"stream {self.name} (its rates and authority names)"
        fix = stream_off_fix(self.name)
        lookups = [(AUTHORITIES, ("TaxAuthority", "Description")),
                   (RATES, ("TaxAuthority", "TransactionType", "BuyerClass",
                            *[f"ItemRate{n}" for n in range(1, self.item_classes + 1)]))]
        uses = super().field_uses()
        for resource, names in lookups:
            uses.append(FieldUse(PLUGIN, role, resource, fix=fix))
            uses += [FieldUse(PLUGIN, role, resource, (name,),
                              "number" if name.startswith(("ItemRate", "Buyer")) else "text",
                              fix=fix) for name in names]
        return uses

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        return row  # get_records shapes, expands and accepts each code already

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        company = str((context or {}).get("company_id"))
        groups = []
        for row in super().get_records(context):
            problems: list[Problem] = []
            group = self.shape.apply(row, problems, trim=self.page_padded)
            group["company_id"] = company
            groups.append((group, problems))
        if not groups:
            return
        tables = self._tables(company, [group for group, _ in groups])
        wanted = self._retried_codes(context)
        for raw, problems in groups:
            group = tables.groups.get(str(raw.get("TaxGroupKey") or "").strip())
            if group is None:
                continue  # a blank key: nothing to code to
            for code, classes in tables.codes(group, self.item_classes):
                if wanted is None or code in wanted:
                    record = self._code_record(raw, problems, tables, group, code, classes)
                    if record is not None:
                        yield record

    def _code_record(self, raw: dict[str, Any], problems: list[Problem], tables: TaxTables,
                     group: TaxGroup, code: str, classes: tuple[int, ...]
                     ) -> dict[str, Any] | None:
        shares = tables.split(group, classes, (DEFAULT_BUYER_CLASS,) * len(classes),
                              Decimal(0))
        record = {**raw, "tax_code": code, "item_classes": list(classes),
                  "tax_percentage": None, "tax_description": None, "authorities": None}
        found = list(problems)
        if shares is None:
            found.append(Problem("authorities", group.code,
                                 "a purchase rate for buyer class 1 of each authority in "
                                 "TX/TXTaxRates", "tax_percentage emitted as null"))
        else:
            record["tax_percentage"] = sum((share.rate for share in shares), Decimal(0))
            record["tax_description"] = describe(group, shares)
            record["authorities"] = [
                {"TaxAuthority": share.authority.code, "Description": share.authority.description,
                 "item_class": share.item_class, "rate": share.rate} for share in shares]
        return self.accept(record, found)

    def _retried_codes(self, context: Context | None) -> set[str] | None:
        retry = self.retry_values(context)
        return None if retry is None else {values[0] for values in retry}

    def _tables(self, company: str, groups: list[dict[str, Any]]) -> TaxTables:
        """The company's authority names and purchase rates (one GET each)."""
        return read_tax_tables(self._tap.company_client(company), self._tap.field_names,
                               item_classes=self.item_classes, groups=groups)
