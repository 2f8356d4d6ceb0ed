"""Sage 300's two-level purchase tax as Basware's flat tax codes (docs/decisions.md, "Tax codes").

Sage taxes a purchase per *authority* (up to five per tax group): the vendor's tax group names
the authorities, the vendor has a tax class per authority (its buyer class, ``TaxClassCode1..5``
on APVendors), each invoice line has an item tax class per authority (``TaxClass1..5``), and
``TX/TXTaxRates`` holds, per authority and buyer class, the rate of each item class
(``ItemRate1..10``). Basware codes each invoice line with one flat code and percentage.

One Basware code is one tax group with one item class per authority, written
``<group>-<class>.<class>...`` (``BCTAX-1.2``: BC's GST at item class 1, PST at item class 2).
Its percentage is the sum of the authorities' rates for buyer class 1, Sage's taxable vendor;
an invoice is checked against the vendor's own classes on its way back (target-sage300). The
code is parsed back where the invoice comes home, so this module is its one home.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from itertools import product
from typing import Any

from .sage300_api import Sage300Client, odata_literal
from .sage300_fields import FieldNames

#: Sage allows up to five authorities per tax group and ten item classes per authority.
MAX_AUTHORITIES = 5
MAX_CLASSES = 10
#: The buyer class a Basware code's percentage assumes: Sage's taxable vendor class.
DEFAULT_BUYER_CLASS = 1
PURCHASES = "Purchases"
GROUPS, AUTHORITIES, RATES = "TX/TXTaxGroups", "TX/TXTaxAuthorities", "TX/TXTaxRates"
GROUP_FIELDS = ("TaxGroupKey", "Description",
                *[f"TaxAuthority{n}" for n in range(1, MAX_AUTHORITIES + 1)])
_CODE = re.compile(r"^(?P<group>.+)-(?P<classes>\d{1,2}(?:\.\d{1,2}){0,4})$")
CENT = Decimal("0.01")


def flat_code(group: str, classes: Iterable[int]) -> str:
    """``BCTAX-1.2``: the Basware code of a tax group with these item classes per authority."""
    return f"{group}-" + ".".join(str(c) for c in classes)


def parse_code(code: str) -> tuple[str, tuple[int, ...]] | None:
    """(tax group, item class per authority) of a code :func:`flat_code` wrote, else None."""
    match = _CODE.match(code.strip())
    if not match:
        return None
    classes = tuple(int(c) for c in match["classes"].split("."))
    if not all(1 <= c <= MAX_CLASSES for c in classes):
        return None
    return match["group"], classes


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Authority:
    code: str
    description: str


@dataclass(frozen=True)
class TaxGroup:
    code: str
    description: str
    authorities: tuple[Authority, ...]


@dataclass(frozen=True)
class AuthorityTax:
    """One authority's share of a line's tax."""

    authority: Authority
    item_class: int
    rate: Decimal  # percent
    amount: Decimal


class TaxTables:
    """One company's purchase tax groups, authorities and rates, as Sage holds them.

    Built from records in the connector's names: groups (``TaxGroupKey``, ``Description``,
    ``TaxAuthority1..5``), authorities (``TaxAuthority``, ``Description``) and purchase rates
    (``TaxAuthority``, ``BuyerClass``, ``ItemRate1..10``).
    """

    def __init__(self, groups: Iterable[Mapping[str, Any]],
                 authorities: Iterable[Mapping[str, Any]],
                 rates: Iterable[Mapping[str, Any]]) -> None:
        names = {_text(a.get("TaxAuthority")): _text(a.get("Description")) for a in authorities}
        self.groups: dict[str, TaxGroup] = {}
        for group in groups:
            key = _text(group.get("TaxGroupKey"))
            if not key:
                continue
            members = tuple(
                Authority(code, names.get(code) or code)
                for code in (_text(group.get(f"TaxAuthority{n}"))
                             for n in range(1, MAX_AUTHORITIES + 1)) if code)
            self.groups[key] = TaxGroup(key, _text(group.get("Description")) or key, members)
        self.rates: dict[tuple[str, int], tuple[Decimal, ...]] = {}
        for rate in rates:
            try:
                buyer = int(rate.get("BuyerClass") or 0)
            except (TypeError, ValueError):
                continue
            self.rates[(_text(rate.get("TaxAuthority")), buyer)] = tuple(
                Decimal(str(rate.get(f"ItemRate{n}") or 0)) for n in range(1, MAX_CLASSES + 1))

    def rate(self, authority: str, buyer_class: int, item_class: int) -> Decimal | None:
        """Percent; None when Sage has no rate row for that authority and buyer class."""
        row = self.rates.get((authority, buyer_class))
        if row is None or not 1 <= item_class <= len(row):
            return None
        return row[item_class - 1]

    def codes(self, group: TaxGroup, item_classes: int) -> list[tuple[str, tuple[int, ...]]]:
        """Every Basware code of a group: each combination of item classes 1..item_classes."""
        if not group.authorities:
            return []
        return [(flat_code(group.code, classes), classes)
                for classes in product(range(1, item_classes + 1),
                                       repeat=len(group.authorities))]

    def split(self, group: TaxGroup, item_classes: tuple[int, ...],
              buyer_classes: tuple[int, ...], base: Decimal) -> list[AuthorityTax] | None:
        """The tax Sage computes on ``base`` per authority; None when a rate is missing."""
        shares = []
        for index, authority in enumerate(group.authorities):
            buyer = buyer_classes[index] if index < len(buyer_classes) else DEFAULT_BUYER_CLASS
            rate = self.rate(authority.code, buyer, item_classes[index])
            if rate is None:
                return None
            shares.append(AuthorityTax(authority, item_classes[index], rate,
                                       money(base * rate / 100)))
        return shares


def read_tax_tables(client: Sage300Client, names: FieldNames, *,
                    item_classes: int = MAX_CLASSES,
                    groups: Iterable[Mapping[str, Any]] | None = None) -> TaxTables:
    """One company's purchase tax tables, one GET each: its purchases tax groups (unless
    ``groups`` are given, read already), authority names and purchase rates for item
    classes 1..``item_classes``; in the install's names (``field_names``) on the wire."""
    def read(resource: str, fields: Iterable[str], purchases: bool) -> list[dict[str, Any]]:
        query = (f"{names.wire(resource, 'TransactionType')} eq {odata_literal(PURCHASES)}"
                 if purchases else None)
        return [names.from_wire(resource, record) for record in client.iter_records(
            resource, filter=query, select=[names.wire(resource, name) for name in fields])]

    return TaxTables(
        read(GROUPS, GROUP_FIELDS, True) if groups is None else groups,
        read(AUTHORITIES, ("TaxAuthority", "Description"), False),
        read(RATES, ("TaxAuthority", "BuyerClass",
                     *[f"ItemRate{n}" for n in range(1, item_classes + 1)]), True))


def describe(group: TaxGroup, shares: list[AuthorityTax]) -> str:
    """``BC tax: GST 5% (class 1), PST 0% (class 2)``, for people on both sides."""
    parts = [f"{share.authority.code} {format(share.rate.normalize(), 'f')}% "
             f"(class {share.item_class})" for share in shares]
    return f"{group.description}: " + ", ".join(parts)


def _text(value: Any) -> str:
    return str(value or "").strip()
