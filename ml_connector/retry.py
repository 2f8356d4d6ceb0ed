"""`ml-connector retry <business id>...`: send again what failed, once its cause is fixed.

A failed invoice (its GL account now exists in Sage 300) or a refused vendor or PO is named as
a person names it (invoice number INV-18825, Basware invoice id, vendor SAMLTD/1600, PO
SAMLTD/10161, any ledger source key) or all at once (`--open`). The command:

1. resolves each id through the audit ledger to the record and its latest outcome;
2. says so and runs nothing for a record whose latest outcome is a success ("already
   Transferred ... nothing to do", exit 0), and names what the AP user does for an invoice
   that is in Sage 300 but whose answer Basware refused (exit 1);
3. runs the record's job as `ml-connector run <job>` does (the same per-job lock: a retry
   never collides with a scheduled run), handing the plugins the records to read again
   (``ml_connector_core.retry_selection``): tap-basware reads the invoices fresh from Basware
   although they are TransferFailed, target-sage300 creates them (or finds them by BWINVID),
   and the job's second task answers Basware; tap-sage300 reads the vendors and POs fresh
   from Sage 300 and target-basware sends them even if Basware refused that very payload;
4. reads each record's new outcome from the ledger and prints one line per record. Exit 0
   only when every record is done: in Sage and answered Transferred, or delivered to Basware.

Lines of our own name records, outcomes and runs; never setting values.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ml_connector import run as job_runner
from ml_connector.project_config import MeltanoError, add_project_arguments, project_from_args
from ml_connector_core.ledger import FAILURE, Action, Entry, Ledger
from ml_connector_core.retry_selection import (
    INVOICE_STREAM,
    invoice_ids_env,
    retry_keys_env,
)

INVOICES, MASTER_DATA = "invoices", "master-data"
RESPONSES = "transfer_responses"
#: target-basware's streams (where master data outcomes are) -> tap-sage300's stream that
#: reads the record, and how a key of the first becomes a key of the second.
MASTER_STREAMS = {"vendors": "vendors", "matching_orders": "purchase_orders",
                  "matching_order_lines": "purchase_orders", "accounts": "gl_accounts",
                  "cost_centers": "cost_centers", "payment_terms": "payment_terms",
                  "tax_codes": "tax_codes", "goods_receipts": "po_receipts"}
#: Exit codes: 0 every record done (or nothing to do), 1 a record is not done (failed again,
#: or its answer is missing in Basware), 2 usage (an id the ledger does not know, no ledger).
DONE, NOT_DONE, USAGE = 0, 1, 2


@dataclass
class Target:
    """One record to retry, as the ledger knows it."""

    ref: str  # as the user typed it
    job: str
    stream: str  # the stream of its outcomes: ap_invoices, vendors, matching_orders, ...
    key: str  # its ledger source key there (an invoice: the Basware invoice id)
    name: str  # what a person calls it: INV-18825, vendor SAMLTD/1600
    latest: Entry | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def read_key(self) -> str:
        """The key its source reads it by: a PO line is read with its PO."""
        if self.stream == "matching_order_lines":
            return self.key.rsplit("/", 1)[0]
        return self.key


# --------------------------------------------------------------------------- resolving ids

#: tap-sage300's streams -> target-basware's, where the outcomes of the same records are.
SOURCE_TO_TARGET = {"purchase_orders": "matching_orders",
                    "purchase_order_lines": "matching_order_lines", "gl_accounts": "accounts",
                    "po_receipts": "goods_receipts"}
KINDS = {"vendors": "vendor", "matching_orders": "PO", "matching_order_lines": "PO line",
         "accounts": "account", "cost_centers": "cost center", "payment_terms": "payment term",
         "tax_codes": "tax code", "goods_receipts": "goods receipt"}


class Ambiguous(ValueError):
    """A business id naming records of more than one subject (a vendor number in two
    companies): the user names it with its company."""


def _target(ledger: Ledger, ref: str, stream: str, key: str, business_id: str) -> Target:
    latest = ledger.latest_outcome(stream, key)
    if stream == INVOICE_STREAM:
        return Target(ref, INVOICES, stream, key, business_id, latest)
    return Target(ref, MASTER_DATA, stream, key, f"{KINDS.get(stream, stream)} {key}", latest)


def resolve(ledger: Ledger, ref: str) -> list[Target]:
    """The records `ref` names (`Ledger.resolve`: invoice number, Basware invoice id, vendor,
    PO, Sage entry, any source or target key), as the streams their outcomes are in. []
    when the ledger knows none; Ambiguous when it names several subjects."""
    records = ledger.resolve(ref)
    if len({record.subject for record in records}) > 1:
        raise Ambiguous(", ".join(sorted({record.business_id for record in records})))
    found: dict[tuple[str, str], Target] = {}
    for record in records:
        if record.family == "invoice":
            stream = INVOICE_STREAM
        else:
            stream = SOURCE_TO_TARGET.get(record.stream, record.stream)
            if stream not in MASTER_STREAMS:
                continue  # nothing the connector sends (customers, AP batches read back)
        if (stream, record.source_key) not in found:
            found[(stream, record.source_key)] = _target(
                ledger, ref, stream, record.source_key,
                record.business_ids.get("invoice") or record.business_id)
    return list(found.values())


def open_failures(ledger: Ledger, job: str | None) -> list[Target]:
    """Every record of the job (or both) whose latest outcome is a failure."""
    streams = ({INVOICE_STREAM} if job == INVOICES else set(MASTER_STREAMS)
               if job == MASTER_DATA else {INVOICE_STREAM, *MASTER_STREAMS})
    return [_target(ledger, failure.business_id, failure.stream, failure.source_key,
                    failure.business_id)
            for failure in ledger.open_failures() if failure.stream in streams]


# --------------------------------------------------------------------------- outcomes


def _when(entry: Entry) -> str:
    moment = entry.created_at or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _where(entry: Entry) -> str:
    company = (entry.target_key or "").split("/")[0] or "?"
    return f"Sage 300 company {company} batch {entry.sage_batch} entry {entry.sage_entry}"


def _answer(ledger: Ledger, invoice_id: str) -> Entry | None:
    """The latest transfer response recorded for the invoice (responded, unchanged, failed)."""
    return ledger.latest_outcome(RESPONSES, invoice_id)


def _answered_success(answer: Entry | None) -> bool:
    if answer is None or answer.action not in (Action.RESPONDED, Action.UNCHANGED):
        return False
    payload = answer.payload if isinstance(answer.payload, dict) else {}
    if answer.action == Action.UNCHANGED:  # "already Transferred" (a crash re-answered it)
        return "Transferred" in str(answer.error or "") and "TransferFailed" not in str(
            answer.error or "")
    return payload.get("success") is True


def invoice_verdict(ledger: Ledger, target: Target) -> tuple[int, str] | None:
    """(exit code, what to say) when the invoice needs no run; None when it is to be retried."""
    latest = ledger.latest_outcome(INVOICE_STREAM, target.key)
    if latest is None:
        return DONE, (f"{target.name}: no outcome yet (read from Basware, not yet through "
                      "target-sage300): the next run (ml-connector run invoices) takes it; "
                      "nothing to retry")
    if latest.action in FAILURE:
        return None
    answer = _answer(ledger, target.key)
    if _answered_success(answer) and answer is not None:
        return DONE, (f"{target.name} already Transferred at {_when(answer)} ({_where(latest)}):"
                      " nothing to do")
    return NOT_DONE, _unanswered(target, latest, answer)


def _unanswered(target: Target, latest: Entry, answer: Entry | None) -> str:
    """What to do about an invoice in Sage 300 that Basware was not told of."""
    if answer is None or answer.action != Action.FAILED:
        # Recorded in Sage, its answer still owed (a run stopped between the two tasks).
        return (f"{target.name} is in {_where(latest)}; its answer to Basware is still owed: "
                "the next run (ml-connector run invoices) sends it")
    return (f"{target.name} is in {_where(latest)}, but Basware refused the answer (the "
            f"invoice is TransferFailed there and this tenant takes no answer then). In "
            f"Basware, send invoice {target.name} to transfer again; the next run "
            f"(ml-connector run invoices) finds it in Sage by BWINVID and answers it "
            f"Transferred from batch {latest.sage_batch} entry {latest.sage_entry}, without "
            "creating it twice")


def master_verdict(target: Target) -> tuple[int, str] | None:
    latest = target.latest
    if latest is None or latest.action in FAILURE:
        return None
    return DONE, (f"{target.name} already delivered to Basware ({latest.action} at "
                  f"{_when(latest)}): nothing to do")


def invoice_result(ledger: Ledger, target: Target, before: Entry | None) -> tuple[int, str]:
    """What became of a retried invoice in this run."""
    latest = ledger.latest_outcome(INVOICE_STREAM, target.key)
    if latest is None or (before is not None and latest.id == before.id):
        return NOT_DONE, (f"{target.name}: not read again (see the run's log: no longer "
                          "TransferFailed in Basware, or unknown there)")
    if latest.action in FAILURE:
        return NOT_DONE, f"{target.name}: failed again: {latest.error}"
    answer = _answer(ledger, target.key)
    if _answered_success(answer):
        return DONE, (f"{target.name}: created in {_where(latest)}; Basware told Transferred "
                      f"(voucher numbers {latest.sage_batch} and {latest.sage_entry})")
    return NOT_DONE, _unanswered(target, latest, answer)


def master_result(ledger: Ledger, target: Target, before: Entry | None) -> tuple[int, str]:
    latest = ledger.latest_outcome(target.stream, target.key)
    if latest is None or (before is not None and latest.id == before.id):
        return NOT_DONE, (f"{target.name}: not sent again (see the run's log: not found in "
                          "Sage 300?)")
    if latest.action in FAILURE:
        # The same payload as the refused one: target-basware did not send it, since
        # Basware answers an identical re-post NotProcessed and keeps its refusal.
        same = (before is not None and before.action in FAILURE
                and latest.payload_hash is not None
                and latest.payload_hash == before.payload_hash)
        hint = ("; Sage 300 holds it unchanged and Basware answers a re-send of exactly the "
                "payload it refused NotProcessed (its FAQ: modify the record to resend), so "
                "a fix made in Basware P2P alone needs the record changed in Sage 300, then "
                "retry again" if same else "")
        return NOT_DONE, f"{target.name}: refused again: {latest.error}{hint}"
    return DONE, f"{target.name}: {latest.action} in Basware"


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID",
                        help="invoice number (INV-18825), Basware invoice id, vendor "
                             "(SAMLTD/1600), PO (SAMLTD/10161) or any ledger source key")
    parser.add_argument("--open", action="store_true",
                        help="every record whose latest outcome is a failure")
    parser.add_argument("--job", choices=(INVOICES, MASTER_DATA),
                        help="only records of this job (with --open, or to pick among ids)")
    parser.add_argument("--ledger-url", default=os.environ.get("ML_CONNECTOR_LEDGER_URL"),
                        help="the audit ledger (default: $ML_CONNECTOR_LEDGER_URL, else the "
                             "project's .ml-connector/ledger.sqlite)")
    add_project_arguments(parser)
    parser.add_argument("--wait-timeout", type=float, default=job_runner.DEFAULT_WAIT_TIMEOUT,
                        metavar="SECONDS",
                        help="how long to wait for a run of the job in progress")
    parser.add_argument("--log-dir", type=Path,
                        help="append the run's output to DIR/<job>.log instead of printing it")


def main(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout

    def say(text: str) -> None:
        out.write(f"{text}\n")
        out.flush()

    if not args.ids and not args.open:
        say("ml-connector retry: name what to retry (INV-18825, SAMLTD/1600, ...) or --open")
        return USAGE
    try:
        root, environment = project_from_args(args)
    except (MeltanoError, OSError) as exc:
        say(f"ml-connector retry: {exc}")
        return USAGE
    if not args.ledger_url:  # the plugins' default: the project's own ledger file
        os.environ.setdefault("MELTANO_PROJECT_ROOT", str(root))
    try:
        ledger = Ledger.open(args.ledger_url)
    except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable database
        say(f"ml-connector retry: cannot open the ledger: {type(exc).__name__}")
        return USAGE

    targets: list[Target] = open_failures(ledger, args.job) if args.open else []
    for ref in args.ids:
        try:
            named = [t for t in resolve(ledger, ref) if args.job in (None, t.job)]
        except Ambiguous as exc:
            say(f"{ref} names more than one record ({exc}): name it with its company")
            return USAGE
        if not named:
            say(f"{ref}: the ledger knows no such record (ml-connector audit trace {ref})")
            return USAGE
        targets += named
    if not targets:
        say("Nothing to retry: no record's latest outcome is a failure")
        return DONE

    code = DONE
    by_job: dict[str, list[Target]] = {}
    for target in _unique(targets):
        verdict = (invoice_verdict(ledger, target) if target.job == INVOICES
                   else master_verdict(target))
        if verdict is None:
            by_job.setdefault(target.job, []).append(target)
            continue
        code = max(code, verdict[0])
        say(verdict[1])

    for job, chosen in by_job.items():
        before = {t.key: ledger.latest_outcome(t.stream, t.key) for t in chosen}
        names = ", ".join(t.name for t in chosen)
        say(f"Retrying {names}: ml-connector run {job}, reading "
            f"{'them' if len(chosen) > 1 else 'it'} again from "
            f"{'Basware' if job == INVOICES else 'Sage 300'}")
        env = (invoice_ids_env(t.key for t in chosen) if job == INVOICES
               else retry_keys_env(_keys_by_tap_stream(chosen)))
        run_code = _run_job(root, environment, job, env, args)
        for target in chosen:
            result = (invoice_result if job == INVOICES else master_result)(
                ledger, target, before[target.key])
            code = max(code, result[0])
            say(result[1])
        if run_code and code == DONE:
            say(f"The run of {job} ended with exit code {run_code}: see its log")
            code = NOT_DONE
    return code


def _unique(targets: Iterable[Target]) -> list[Target]:
    seen: dict[tuple[str, str], Target] = {}
    for target in targets:
        seen.setdefault((target.stream, target.key), target)
    return list(seen.values())


def _keys_by_tap_stream(targets: list[Target]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for target in targets:
        keys.setdefault(MASTER_STREAMS[target.stream], []).append(target.read_key)
    return keys


def _run_job(root: Path, environment: str | None, job: str, env: dict[str, str],
             args: argparse.Namespace) -> int:
    """`ml-connector run <job>` with the retry selection in the plugins' environment (the
    Meltano child inherits this process's environment), under the job's lock."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    log = job_runner.open_log(args.log_dir, job) if args.log_dir else None
    try:
        return job_runner.JobRun(root, environment, job, if_running="wait",
                                 wait_timeout=args.wait_timeout, out=log or sys.stderr,
                                 child_out=log).main()
    finally:
        if log:
            log.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
