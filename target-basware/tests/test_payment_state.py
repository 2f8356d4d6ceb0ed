"""What target-basware makes of a posted Sage document for a paymentResponse
(target_basware.payments): the cumulative paid total, the response's fields, and an
externalCode that is new for each payment state and the same for a repeat of one.
Over HTTP end to end: tests/test_payments.py."""

from __future__ import annotations

from typing import Any

from target_basware.payments import payment_state, response_body


def document(balance: float, **extra: Any) -> dict[str, Any]:
    return {"company_id": "SAMINC", "BatchNumber": 7, "EntryNumber": 2,
            "OriginalDocumentAmount": 105.0, "CurrentBalance": balance,
            "LastPaymentDate": "2026-11-02T00:00:00Z", "LastPaymentNumber": 1,
            "LastCheckNumber": "CHK-1", "LastPaymentCode": "CHECK", **extra}


def test_nothing_paid_is_no_state() -> None:
    assert payment_state(document(105.0)) is None
    assert payment_state(document(105.0, OriginalDocumentAmount=None)) is None
    assert payment_state(document(110.0)) is None  # more owed than billed: nothing paid


def test_partial_then_full_are_cumulative_with_new_codes() -> None:
    part = payment_state(document(65.0))
    full = payment_state(document(0.0, LastPaymentNumber=2, LastCheckNumber="CHK-2"))
    assert part is not None and full is not None
    first, second = response_body("bw1", part, "SAGE300"), response_body("bw1", full, "SAGE300")
    assert (first["paidTotal"], second["paidTotal"]) == (40.0, 105.0)
    assert first["responseMessage"] == "Partly paid in Sage 300: 40.00 of 105.00"
    assert second["responseMessage"] == "Paid in full in Sage 300"
    assert (second["checkNumber"], second["paymentNumber"], second["paymentMethod"]) == (
        "CHK-2", "2", "CHECK")
    assert second["paymentDate"] == "2026-11-02T00:00:00Z"
    assert (second["success"], second["paymentBlock"], second["sourceSystem"]) == (
        True, False, "SAGE300")
    assert first["externalCode"] != second["externalCode"]
    assert len(first["externalCode"]) <= 36
    # The same state again (a repeat after a lost answer) has the same code; another
    # invoice with the same state has its own.
    assert response_body("bw1", dict(part), "SAGE300")["externalCode"] == first["externalCode"]
    assert response_body("bw2", part, "SAGE300")["externalCode"] != first["externalCode"]


def test_fields_sage_leaves_empty_are_not_sent() -> None:
    state = payment_state(document(0.0, LastCheckNumber="", LastPaymentCode=None,
                                   LastPaymentDate=None))
    assert state is not None
    body = response_body("bw1", state, "SAGE300")
    assert not {"checkNumber", "paymentMethod", "paymentDate"} & set(body)
