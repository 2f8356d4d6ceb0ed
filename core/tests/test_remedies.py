"""What to do about a failed record: one line per known cause, ending with the retry command.

The messages are the plugins' own (target-sage300's coding.py and sinks.py, Basware's
refusals as target-basware records them), so a reworded message shows up here.
"""

from __future__ import annotations

import pytest

from ml_connector_core.remedies import remedy

RETRY = ", then: ml-connector retry "
P2P_FIX = ("; either way the record must change in Sage 300 (Basware ignores a re-send of "
           "exactly what it refused)")


@pytest.mark.parametrize(("stream", "error", "business_id", "expected"), [
    ("ap_invoices", "GL account 6999-200 does not exist in Sage 300 company SAMINC", "INV-18825",
     "Create GL account 6999-200 in Sage 300 company SAMINC (or recode the invoice in Basware)"
     + RETRY + "INV-18825"),
    ("ap_invoices", "GL account 6100 (mapped to 6100-200) does not exist in Sage 300 company "
     "SAMINC", "INV-1", "Create GL account 6100-200 in Sage 300 company SAMINC, or correct the "
     "account_map entry for 6100 (target-sage300 setting)" + RETRY + "INV-1"),
    ("ap_invoices", "GL account 6300-100 is inactive in Sage 300 company SAMLTD", "INV-2",
     "Activate GL account 6300-100 in Sage 300 company SAMLTD (or recode the invoice in "
     "Basware)" + RETRY + "INV-2"),
    ("ap_invoices", "Vendor 1400 does not exist in Sage 300 company SAMINC; GL account 6999-200 "
     "does not exist in Sage 300 company SAMINC", "INV-3",
     "Create vendor 1400 in Sage 300 company SAMINC (or correct the invoice's supplier in "
     "Basware); create GL account 6999-200 in Sage 300 company SAMINC (or recode the invoice "
     "in Basware)" + RETRY + "INV-3"),
    ("ap_invoices", "PO PO100001 belongs to vendor 1200, not to vendor 1400", "INV-4",
     "Correct the invoice's supplier (1400) or its PO (PO100001, vendor 1200's) in Basware"
     + RETRY + "INV-4"),
    ("vendors", "Basware: Currency EUR is not active in P2P", "SAMLTD/1600",
     "Activate currency EUR in Basware P2P or change the currency in Sage 300" + P2P_FIX
     + RETRY + "SAMLTD/1600"),
    ("vendors", "Basware: Payment term N90 does not exist for company CA01", "SAMLTD/1610",
     "Create payment term N90 for company CA01 in Basware P2P or change the terms in Sage "
     "300" + P2P_FIX + RETRY + "SAMLTD/1610"),
    ("matching_orders", "Basware: Supplier 1600 does not exist for company CA01; Currency EUR "
     "is not active in P2P", "SAMLTD/PO200161",
     "Get vendor 1600 into Basware company CA01 first (its own failure: ml-connector audit "
     "trace SAMLTD/1600); activate currency EUR in Basware P2P or change the currency in Sage "
     "300" + P2P_FIX + RETRY + "SAMLTD/PO200161"),
    ("matching_order_lines", "Basware: Matching order with externalCode SAMLTD-PO200161 does "
     "not exist", "SAMLTD/PO200161/1000 SAMLTD/PO200161/2000",
     "Get order SAMLTD-PO200161 into Basware first (its own failure: ml-connector audit trace "
     "SAMLTD-PO200161); its lines go with it" + RETRY
     + "SAMLTD/PO200161/1000 SAMLTD/PO200161/2000"),
])
def test_known_causes(stream: str, error: str, business_id: str, expected: str) -> None:
    assert remedy(stream, error, business_id) == expected


def test_a_duplicate_is_removed_in_basware_not_retried() -> None:
    found = remedy("ap_invoices", "Document number INV-7 for vendor 1200 is already in Sage 300 "
                   "company SAMINC, batch 5 entry 3, as invoice abc", "INV-7")
    assert "remove this duplicate in Basware P2P" in found and "retry" not in found


@pytest.mark.parametrize(("stream", "error", "start"), [
    ("ap_invoices", "field net_total (netSum): must be number, got '125.00'",
     "Correct the invoice in Basware"),
    ("vendors", "Basware: The field 'name' is required.", "Fix what Basware names in Basware"),
    ("vendors", "tax registration missing", "Correct the record in Sage 300"),
    ("accounting_documents", "Acknowledging invoice x failed with HTTP 503: busy",
     "A technical failure"),
    ("ap_invoices", None, "Correct the invoice in Basware"),
])
def test_other_causes_get_the_advice_of_their_side(stream: str, error: str | None,
                                                  start: str) -> None:
    found = remedy(stream, error, "ID-1")
    assert found.startswith(start) and found.endswith("ml-connector retry ID-1")
