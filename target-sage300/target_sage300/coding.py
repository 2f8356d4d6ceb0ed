"""Coding: which Sage 300 GL account (and so cost center) each invoice line is booked to.

- A line matched to a PO takes the GL account of that PO line (``ExpenseAccount``, the
  unformatted account); its cost center is the account's department segment. The coding the
  source carries for such a line is ignored: the PO is the authority (BRIEF decision 5).
- A line without a PO uses the account the source carries: through ``account_map`` when the
  code is listed there, else the code itself (formatted ``6300-100`` or unformatted
  ``6300100`` both match). A cost center given with it must be the account's department.
- Every account must exist and be active in the company's GL, and the vendor must exist, be
  active and invoice in the invoice's currency. Otherwise the whole invoice is rejected, with
  every problem found, in words an AP clerk can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .client import SageCompany
from .contract import APInvoice, InvoiceLine

#: Basware shows at most 250 characters of a transfer response message.
MAX_REASON = 250


class Rejected(Exception):
    """The invoice cannot go to Sage as it is; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CodedLine:
    number: int
    gl_account: str  # unformatted, as Sage stores it on the distribution line
    gl_account_display: str  # formatted, as people read it
    cost_center: str | None
    amount: Decimal
    tax_amount: Decimal | None
    description: str | None
    po_number: str | None
    po_line: str | None
    tax_code: str | None = None


def _status(record: Mapping[str, Any]) -> str:
    return str(record.get("Status") or "").strip()


def check_vendor(invoice: APInvoice, sage: SageCompany) -> None:
    vendor = sage.vendor(invoice.vendor_number)
    company = sage.company
    if vendor is None:
        raise Rejected(f"Vendor {invoice.vendor_number} does not exist in Sage 300 company "
                       f"{company}")
    if _status(vendor) == "Inactive":
        raise Rejected(f"Vendor {invoice.vendor_number} is inactive in {company}")
    currency = str(vendor.get("CurrencyCode") or "").strip()
    if currency and currency != invoice.currency:
        raise Rejected(f"Invoice currency {invoice.currency} differs from vendor "
                       f"{invoice.vendor_number}'s currency {currency} in {company}")


def _po_account(line: InvoiceLine, invoice: APInvoice, sage: SageCompany) -> str:
    """The unformatted GL account of the PO line, or Rejected."""
    assert line.po_number is not None and line.po_line is not None
    company = sage.company
    order = sage.purchase_order(line.po_number)
    if order is None:
        raise Rejected(f"PO {line.po_number} not found in company {company}")
    owner = str(order.get("Vendor") or "").strip()
    if owner and owner != invoice.vendor_number:
        raise Rejected(f"PO {line.po_number} belongs to vendor {owner}, not to vendor "
                       f"{invoice.vendor_number}")
    po_line = next((candidate for candidate in order.get("PurchaseOrderLines") or []
                    if _same_line(candidate.get("LineNumber"), line.po_line)), None)
    if po_line is None:
        raise Rejected(f"PO {line.po_number} line {line.po_line} not found in company "
                       f"{company}")
    account = str(po_line.get("ExpenseAccount") or "").strip()
    if not account:
        raise Rejected(f"PO {line.po_number} line {line.po_line} has no expense account in "
                       f"company {company}")
    return account


def _same_line(sage_value: Any, wanted: str | None) -> bool:
    try:
        return wanted is not None and int(Decimal(str(sage_value))) == int(wanted)
    except ArithmeticError:
        return False


def code_line(line: InvoiceLine, invoice: APInvoice, sage: SageCompany,
              account_map: Mapping[str, str]) -> CodedLine:
    company = sage.company
    if line.po_number:
        wanted = _po_account(line, invoice, sage)
        account = sage.accounts.get(wanted)
        if account is None:
            raise Rejected(f"GL account {wanted} of PO {line.po_number} line {line.po_line} "
                           f"does not exist in Sage 300 company {company}")
    else:
        assert line.gl_account is not None
        wanted = str(account_map.get(line.gl_account, line.gl_account))
        account = sage.account(wanted)
        if account is None:
            mapped = f" (mapped to {wanted})" if wanted != line.gl_account else ""
            raise Rejected(f"GL account {line.gl_account}{mapped} does not exist in Sage 300 "
                           f"company {company}")
    unformatted = str(account["UnformattedAccount"]).strip()
    display = sage.display(unformatted)
    if _status(account) == "Inactive":
        raise Rejected(f"GL account {display} is inactive in Sage 300 company {company}")
    cost_center = sage.cost_center(account)
    if not line.po_number and line.cost_center and cost_center \
            and line.cost_center != cost_center:
        raise Rejected(f"cost center {line.cost_center} does not match GL account {display}, "
                       f"whose cost center is {cost_center}")
    return CodedLine(number=line.number, gl_account=unformatted, gl_account_display=display,
                     cost_center=cost_center, amount=line.amount, tax_amount=line.tax_amount,
                     description=line.description, po_number=line.po_number,
                     po_line=line.po_line, tax_code=line.tax_code)


def code_invoice(invoice: APInvoice, sage: SageCompany,
                 account_map: Mapping[str, str]) -> list[CodedLine]:
    """Every line coded, or Rejected listing every problem (vendor problems stop at once)."""
    check_vendor(invoice, sage)
    coded: list[CodedLine] = []
    problems: list[str] = []
    for line in invoice.lines:
        try:
            coded.append(code_line(line, invoice, sage, account_map))
        except Rejected as exc:
            prefix = f"line {line.number}: " if len(invoice.lines) > 1 else ""
            if prefix + exc.reason not in problems:
                problems.append(prefix + exc.reason)
    if problems:
        raise Rejected(shorten("; ".join(problems)))
    return coded


def shorten(text: str, limit: int = MAX_REASON) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
