"""Three-way matching in the simulated P2P: each PO-matched invoice row against the goods
received on its matching order line.

A row names its order line (``orderNumber``, ``orderLineNumber``; the line's externalCode is
``<Sage company>-<PO>-<line>``) and the quantity invoiced (``matchedQuantity``). A line whose
matching needs receipts (``isReceiptBasedMatching`` or ``isReceiptRequired``) compares that
with what its ``goodsReceipts[]`` say was received: each entry adds its quantity, and an entry
cancelling another (``referenceGRExternalCode``) takes the other's away. Other lines match two
ways (order against invoice) and never raise a receipt exception. Guesses: P2P's exception
names are not in the reference; these say what a P2P user sees in words.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .basware_state import Tenant
from .data import COMPANIES

MATCHED = "Matched"
NOT_RECEIVED = "NotReceived"  # nothing received yet
OVER_INVOICED = "QuantityExceedsReceived"  # the invoice asks for more than was received
UNDER_INVOICED = "QuantityBelowReceived"  # less invoiced than received (a partial invoice)
NO_ORDER_LINE = "OrderLineNotFound"
_SAGE_IDS = {company.basware_code: company.sage_id for company in COMPANIES}


def _quantity(value: Any) -> Decimal | None:
    """A quantity as P2P reads it; None when it is not a number (bad input stays in state)."""
    if isinstance(value, bool):
        return None
    try:
        quantity = Decimal(str(value if value is not None else 0))
    except ArithmeticError:
        return None
    return quantity if quantity.is_finite() else None


def received_quantity(line: dict[str, Any]) -> Decimal:
    receipts = [r for r in line.get("goodsReceipts") or [] if isinstance(r, dict)]
    by_code = {r.get("externalCode"): _quantity(r.get("quantity")) or Decimal(0)
               for r in receipts}
    total = Decimal(0)
    for receipt in receipts:
        cancelled = receipt.get("referenceGRExternalCode")
        total += -by_code.get(cancelled, Decimal(0)) if cancelled else \
            by_code.get(receipt.get("externalCode"), Decimal(0))
    return total


def matching(tenant: Tenant) -> list[dict[str, Any]]:
    """One result per PO-matched invoice row whose line matches on receipts (or is missing)."""
    lines = tenant.records.get("matchingOrderLines", {})
    results = []
    for invoice in tenant.invoices.values():
        company = _SAGE_IDS.get(str(invoice.get("companyCode")), invoice.get("companyCode"))
        rows = invoice.get("codingRows")
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict):
                continue
            order, number = row.get("orderNumber"), row.get("orderLineNumber")
            if not order or not number or isinstance(order, dict | list) \
                    or isinstance(number, dict | list):
                continue
            code = f"{company}-{order}-{number}"
            line = lines.get(code)
            result = {"invoiceId": invoice["invoiceId"],
                      "invoiceNumber": invoice.get("invoiceNumber"),
                      "rowIndex": row.get("rowIndex"), "orderLineExternalCode": code}
            if line is None:
                results.append({**result, "status": NO_ORDER_LINE})
                continue
            if not (line.get("isReceiptBasedMatching") or line.get("isReceiptRequired")):
                continue
            invoiced = _quantity(row.get("matchedQuantity"))
            if invoiced is None:
                continue  # not a quantity: P2P would not match it at all
            received = received_quantity(line)
            status = (MATCHED if invoiced == received else
                      NOT_RECEIVED if received == 0 else
                      OVER_INVOICED if invoiced > received else UNDER_INVOICED)
            results.append({**result, "status": status, "invoicedQuantity": float(invoiced),
                            "receivedQuantity": float(received)})
    return results
