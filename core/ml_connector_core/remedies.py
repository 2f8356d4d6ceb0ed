"""What to do about a failed record: one line per known cause, for the AP team.

`remedy(stream, error, business_id)` reads the error a plugin recorded (target-sage300's
rejections, Basware's refusals as target-basware records them, a technical failure) and says
where to fix it and the command that sends the record again once it is fixed
(`ml-connector retry <business id>...`). Used by `ml-connector audit failures`, `audit trace`,
the HTML report and `ml-connector status`, so the advice is the same everywhere.

The messages matched here are the plugins' own (`target-sage300/target_sage300/coding.py`,
`sinks.py`; Basware's texts as the reference and the simulator give them); anything else gets
the generic advice of its direction. A message joining several problems with `; ` gets the
remedy of each, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ml_connector_core.ledger._refs import family

_ID = r"(\S+?)"  # an id: vendor, account, PO, company (no spaces; trailing punctuation left out)


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    #: (the match, the record's company as `SAMLTD/` or "") -> the fix
    fix: Callable[[re.Match[str], str], str]
    retry: bool = True  # False: nothing to send again once fixed (a duplicate)


def _rule(pattern: str, fix: Callable[[re.Match[str], str], str], retry: bool = True
          ) -> _Rule:
    return _Rule(re.compile(pattern.replace("{ID}", _ID), re.IGNORECASE), fix, retry)


# Invoices: target-sage300 refused to create them in Sage 300 (Basware -> Sage 300).
_INVOICE_RULES: tuple[_Rule, ...] = (
    _rule(r"GL account {ID} of PO {ID} line {ID} does not exist in Sage 300 company {ID}\b",
          lambda m, _: f"Create GL account {m[1]} in Sage 300 company {m[4]} (it is PO {m[2]} "
                    f"line {m[3]}'s expense account), or correct that PO line in Sage 300"),
    _rule(r"GL account {ID} \(mapped to {ID}\) does not exist in Sage 300 company {ID}\b",
          lambda m, _: f"Create GL account {m[2]} in Sage 300 company {m[3]}, or correct the "
                    f"account_map entry for {m[1]} (target-sage300 setting)"),
    _rule(r"GL account {ID} does not exist in Sage 300 company {ID}\b",
          lambda m, _: f"Create GL account {m[1]} in Sage 300 company {m[2]} (or recode the "
                    f"invoice in Basware)"),
    _rule(r"GL account {ID} is inactive in Sage 300 company {ID}\b",
          lambda m, _: f"Activate GL account {m[1]} in Sage 300 company {m[2]} (or recode the "
                    f"invoice in Basware)"),
    _rule(r"Vendor {ID} does not exist in Sage 300 company {ID}\b",
          lambda m, _: f"Create vendor {m[1]} in Sage 300 company {m[2]} (or correct the "
                    f"invoice's supplier in Basware)"),
    _rule(r"Vendor {ID} is inactive in {ID}\b",
          lambda m, _: f"Activate vendor {m[1]} in Sage 300 company {m[2]} (or correct the "
                    f"invoice's supplier in Basware)"),
    _rule(r"Invoice currency {ID} differs from vendor {ID}'s currency {ID} in {ID}\b",
          lambda m, _: f"Correct the invoice's currency ({m[1]}) in Basware, or vendor {m[2]}'s "
                    f"currency ({m[3]}) in Sage 300 company {m[4]}"),
    _rule(r"PO {ID} not found in company {ID}\b",
          lambda m, _: f"Correct the PO number {m[1]} on the invoice in Basware (Sage 300 "
                    f"company {m[2]} has no such PO), or enter the PO in Sage 300"),
    _rule(r"PO {ID} belongs to vendor {ID}, not to vendor {ID}\b",
          lambda m, _: f"Correct the invoice's supplier ({m[3]}) or its PO ({m[1]}, vendor "
                    f"{m[2]}'s) in Basware"),
    _rule(r"PO {ID} line {ID} not found in company {ID}\b",
          lambda m, _: f"Correct the PO line ({m[1]} line {m[2]}) on the invoice in Basware, or "
                    f"add the line to the PO in Sage 300 company {m[3]}"),
    _rule(r"PO {ID} line {ID} has no expense account in company {ID}\b",
          lambda m, _: f"Give PO {m[1]} line {m[2]} an expense account in Sage 300 company "
                    f"{m[3]}"),
    _rule(r"cost center {ID} does not match GL account {ID}, whose cost center is {ID}\b",
          lambda m, _: f"Recode the line in Basware: GL account {m[2]} belongs to cost center "
                    f"{m[3]}, not {m[1]}"),
    _rule(r"Document number {ID} for vendor {ID} is already in Sage 300 company {ID}, batch "
          r"{ID} entry {ID}\b",
          lambda m, _: f"Basware holds vendor {m[2]}'s invoice {m[1]} twice and the other one is "
                    f"in Sage 300 already ({m[3]} batch {m[4]} entry {m[5]}): remove this "
                    f"duplicate in Basware P2P",
          retry=False),
    _rule(r"Sage 300 company {ID} does not exist",
          lambda m, _: f"Check the Sage 300 company {m[1]} the invoice is routed to (the "
                    f"companies setting of target-sage300, or the invoice's company in Basware)"),
)

#: Basware answers a re-send of exactly the record it refused NotProcessed and keeps the
#: refusal (its FAQ: "modify the record slightly"), so a fix made in P2P alone is not enough.
RESEND_NEEDS_A_CHANGE = ("either way the record must change in Sage 300 (Basware ignores a "
                         "re-send of exactly what it refused)")

# Master data: Basware P2P refused what target-basware sent (Sage 300 -> Basware).
_BASWARE_RULES: tuple[_Rule, ...] = (
    _rule(r"Currency {ID} is not active",
          lambda m, _: f"Activate currency {m[1]} in Basware P2P or change the currency in "
                    f"Sage 300"),
    _rule(r"Payment term {ID} does not exist for company {ID}\b",
          lambda m, _: f"Create payment term {m[1]} for company {m[2]} in Basware P2P or change "
                    f"the terms in Sage 300"),
    _rule(r"Supplier {ID} does not exist for company {ID}\b",
          lambda m, company: f"Get vendor {m[1]} into Basware company {m[2]} first (its own "
                             f"failure: ml-connector audit trace {company}{m[1]})"),
    _rule(r"Matching order with externalCode {ID} does not exist",
          lambda m, company: f"Get order {m[1]} into Basware first (its own failure: "
                             f"ml-connector audit trace {m[1]}); its lines go with it"),
)

_TECHNICAL = re.compile(
    r"HTTP (5\d\d|401|403|408|429)|timed? ?out|connection|unreachable|acknowledg", re.I)


def _fixes(rules: Sequence[_Rule], error: str, company: str) -> tuple[list[str], bool]:
    """The fix of every problem the error names (each once), and whether retrying helps.
    `company`: the record's Sage 300 company with a slash (`SAMLTD/`), or empty."""
    fixes: list[str] = []
    retry = True
    for problem in re.split(r";\s+", error):
        for rule in rules:
            match = rule.pattern.search(problem)
            if match:
                fix = rule.fix(match, company)
                fix = fix if not fixes else fix[:1].lower() + fix[1:]
                if fix not in fixes:
                    fixes.append(fix)
                retry = retry and rule.retry
                break
    return fixes, retry


def remedy(stream: str, error: str | None, business_id: str) -> str:
    """One line: what to fix, where, and the command that sends the record again.

    `business_id` is what `ml-connector retry` takes (an invoice number, COMPANY/VENDOR,
    COMPANY/PO...); several, separated by spaces, for a group of records with one cause.
    """
    text = " ".join((error or "").split())
    retry = f"ml-connector retry {business_id}"
    invoice = family(stream) == "invoice"
    basware = text.lower().startswith("basware:")
    # Master data ids start with their Sage 300 company (SAMLTD/PO200161): a vendor the
    # record points at is named in the same company.
    first = business_id.split()[0] if business_id.split() else ""
    company = first.split("/", 1)[0] + "/" if not invoice and "/" in first else ""
    fixes, retrying_helps = _fixes(_INVOICE_RULES if invoice else _BASWARE_RULES, text, company)
    if not fixes and invoice:
        fixes, retrying_helps = _fixes(_BASWARE_RULES, text, company)
    if fixes and not invoice and any("in Basware P2P" in fix for fix in fixes):
        fixes.append(RESEND_NEEDS_A_CHANGE)
    if fixes:
        return "; ".join(fixes) + (f", then: {retry}" if retrying_helps else "")
    if _TECHNICAL.search(text):
        return ("A technical failure (connection, timeout, server or login): the next run "
                f"tries again; if it persists, run `ml-connector check`, or now: {retry}")
    if basware:
        return f"Fix what Basware names in Basware P2P (or the record in Sage 300), then: {retry}"
    if invoice:
        return ("Correct the invoice in Basware (or the data it names in Sage 300), then: "
                f"{retry}")
    return f"Correct the record in Sage 300 as the message says, then: {retry}"
