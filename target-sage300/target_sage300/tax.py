"""Tax: each invoice line's Basware tax code and amount as Sage 300's tax fields.

The code is the connector's flat tax code (``BCTAX-1.2``: the tax group, then the item class
per authority; ml_connector_core.tax_codes, docs/decisions.md "Tax codes"). It becomes the
entry's ``TaxGroup`` and each detail's ``TaxClass1..n``. Sage's tax is computed from its own
tables for the vendor's classes (``TaxClassCode1..5``), and Basware's amount must agree within
``tax_tolerance_cents`` per line; the entry then carries the tax per authority
(``TaxAmount1..n``, Basware's line amount split as Sage computes it, the rounding difference on
the largest share) so its total is what Basware approved. Everything is checked before anything is created; a
line that does not fit rejects its invoice alone, with the reason.

An invoice whose lines carry no tax code keeps the tax total on the entry (``TaxAmount1``).
With ``tax_mapping: off`` every invoice does (the codes are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ml_connector_core.tax_codes import (
    DEFAULT_BUYER_CLASS,
    MAX_AUTHORITIES,
    AuthorityTax,
    TaxTables,
    describe,
    parse_code,
)

from .client import SageCompany
from .coding import CodedLine, Rejected, shorten
from .contract import APInvoice

#: How far Basware's line tax may be from Sage's, per line, in the document currency.
DEFAULT_TOLERANCE = Decimal("0.05")
MAPPING_SAGE, MAPPING_OFF = "sage", "off"


@dataclass(frozen=True)
class LineTax:
    classes: tuple[int, ...]  # item class per authority
    amounts: tuple[Decimal, ...]  # tax per authority, adding up to the line's tax


@dataclass(frozen=True)
class InvoiceTax:
    group: str
    lines: tuple[LineTax, ...]  # in the order of the coded lines

    @property
    def totals(self) -> tuple[Decimal, ...]:
        """The entry's tax per authority."""
        return tuple(sum((line.amounts[n] for line in self.lines), Decimal(0))
                     for n in range(len(self.lines[0].amounts)))


def invoice_tax(invoice: APInvoice, lines: Sequence[CodedLine], sage: SageCompany,
                tolerance: Decimal) -> InvoiceTax | None:
    """The entry's tax fields, None when no line has a tax code, or Rejected with every
    line's problem."""
    codes = [line.tax_code for line in lines]
    if not any(codes):
        return None
    company = sage.company
    vendor = sage.vendor(invoice.vendor_number) or {}
    vendor_group = str(vendor.get("TaxGroup") or "").strip()
    buyer_classes = tuple(_int(vendor.get(f"TaxClassCode{n}"), DEFAULT_BUYER_CLASS)
                          for n in range(1, MAX_AUTHORITIES + 1))
    tables = sage.tax_tables
    problems: list[str] = []
    taxed: list[LineTax] = []
    groups: set[str] = set()
    for line in lines:
        prefix = f"line {line.number}: " if len(lines) > 1 else ""
        try:
            group, line_tax = _line_tax(line, tables, vendor_group, buyer_classes, invoice,
                                        company, tolerance)
        except Rejected as exc:
            if prefix + exc.reason not in problems:
                problems.append(prefix + exc.reason)
            continue
        groups.add(group)
        taxed.append(line_tax)
    if problems:
        raise Rejected(shorten("; ".join(problems)))
    group = groups.pop()  # one: every line's group is the vendor's
    return InvoiceTax(group, tuple(taxed))


def _line_tax(line: CodedLine, tables: TaxTables, vendor_group: str,
              buyer_classes: tuple[int, ...], invoice: APInvoice, company: str,
              tolerance: Decimal) -> tuple[str, LineTax]:
    if not line.tax_code:
        raise Rejected("no tax code, while other lines of the invoice have one")
    parsed = parse_code(line.tax_code)
    group = tables.groups.get(parsed[0]) if parsed else None
    if parsed is None or group is None:
        known = ", ".join(sorted(tables.groups)) or "none"
        raise Rejected(f"tax code {line.tax_code} is not a tax code of Sage 300 company "
                       f"{company} (its purchase tax groups: {known})")
    classes = parsed[1]
    if len(classes) != len(group.authorities):
        raise Rejected(f"tax code {line.tax_code} names {len(classes)} tax classes, but tax "
                       f"group {group.code} has {len(group.authorities)} authorities")
    if vendor_group and group.code != vendor_group:
        raise Rejected(f"tax code {line.tax_code} is for tax group {group.code}, but vendor "
                       f"{invoice.vendor_number} is in tax group {vendor_group}")
    shares = tables.split(group, classes, buyer_classes, line.amount)
    if shares is None:
        raise Rejected(f"tax code {line.tax_code}: Sage 300 company {company} has no purchase "
                       f"rate for one of its classes (TX tax rates)")
    expected = sum((share.amount for share in shares), Decimal(0))
    given = line.tax_amount if line.tax_amount is not None else Decimal(0)
    if abs(given - expected) > tolerance:
        raise Rejected(f"tax {given:.2f} on {line.amount:.2f} differs from Sage's "
                       f"{expected:.2f} for tax code {line.tax_code} "
                       f"({describe(group, shares)}) by more than {tolerance}")
    return group.code, LineTax(classes, _split(given, shares))


def _split(given: Decimal, shares: list[AuthorityTax]) -> tuple[Decimal, ...]:
    """Basware's line tax per authority as Sage computes it; the rounding difference goes to
    the largest share, so the amounts add up to what Basware approved."""
    amounts = [share.amount for share in shares]
    difference = given - sum(amounts, Decimal(0))
    if difference:
        largest = max(range(len(amounts)), key=lambda n: abs(amounts[n]))
        amounts[largest] += difference
    return tuple(amounts)


def _int(value: object, default: int) -> int:
    try:
        return int(str(value)) if value not in (None, "") else default
    except ValueError:
        return default
