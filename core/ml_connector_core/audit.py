"""Operator commands on the audit ledger: `ml-connector audit trace|failures|replay|report`.

Also runs as `python -m ml_connector_core.audit`. Exit codes: 0 ok, 1 nothing found (trace,
or an id naming more than one record), 2 usage or ledger errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from ml_connector_core import ap_report
from ml_connector_core.ledger import Entry, Ledger, default_ledger_url

_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`2d`, `12h`, `30m` (ago) or an ISO date/datetime (naive means UTC)."""
    match = _SINCE.match(value)
    if match:
        ago = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or datetime.now(UTC)) - ago
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a duration like 2d/12h/30m nor an ISO date-time"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()
           ) -> str:
    """Aligned plain-text table; columns in `right` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right = set(right)
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%fZ")


def _first_line(text: str | None, limit: int = 120) -> str:
    line = (text or "").strip().split("\n")[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


_REMOTE_IDS = ("basware_request_id", "bw_request_id", "sage_batch", "sage_entry",
               "sage_document")
# Business ids shown after a record's main id, in this order (labels of `_refs.business_ids`).
_SHOWN_IDS = ("name", "vendor", "po", "line", "company", "sage entry", "invoice id")
# Ids listed per cause, and in its retry command, before "and N more".
_IDS_LISTED = 50


def _describe_ids(main: str, ids: dict[str, str]) -> str:
    """`INV-18825 (vendor 1400 Polaris Office Group, USD 433.12, company SAMINC)`."""
    parts = []
    if ids.get("vendor") and ids.get("name") and ids.get("invoice"):
        parts.append(f"vendor {ids['vendor']} {ids['name']}")
    elif ids.get("name"):
        parts.append(ids["name"])
    for label in _SHOWN_IDS:
        value = ids.get(label)
        if not value or value in main or label == "name" or (
                label == "vendor" and ids.get("invoice") and ids.get("name")):
            continue
        parts.append(f"{label} {value}")
    if ids.get("amount"):
        parts.append(" ".join(filter(None, (ids.get("currency"), ids["amount"]))))
    return main + (f" ({', '.join(parts)})" if parts else "")


def _entry_details(entry: Entry) -> str:
    """What an entry says beyond its action: the error, where it landed, what Basware was
    told; the request ids last (they are for support tickets)."""
    if entry.error:
        return " ".join(entry.error.split())
    details = []
    if entry.sage_batch and entry.sage_entry:
        company = (entry.payload or {}).get("company") if isinstance(entry.payload, dict) else None
        details.append(f"Sage 300 {company + ' ' if company else ''}batch {entry.sage_batch} "
                       f"entry {entry.sage_entry}")
    payload = entry.payload if isinstance(entry.payload, dict) else {}
    if payload.get("responseMessage"):
        details.append(f"told Basware: {payload['responseMessage']}")
    if entry.target_key and not details and entry.target_key != entry.source_key:
        details.append(f"as {entry.target_key}")
    if entry.basware_request_id:
        details.append(f"Basware request {entry.basware_request_id}")
    return "; ".join(details)


def _trace_table(found: Sequence[Entry], label: dict[tuple[str, str], str]) -> str:
    several = len(set(label.values())) > 1
    rows = [
        (_when(e.created_at), e.plugin, *((label.get((e.stream, e.source_key), e.source_key),)
                                          if several else ()),
         e.stream, e.action.value, _entry_details(e))
        for e in found
    ]
    headers = ("time (UTC)", "plugin", *(("record",) if several else ()), "stream", "action",
               "details")
    return _table(headers, rows)


def cmd_trace(ledger: Ledger, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The whole history of the record(s) a business id names (`Ledger.resolve`); an id
    naming records in more than one place (a vendor number used in two companies) lists them
    and exits 1. Ids no record is named by (a request id) fall back to every entry that
    mentions them."""
    from ml_connector_core.ledger import Action
    from ml_connector_core.remedies import remedy

    args.key = " ".join(args.key)  # `batch 5 entry 14` unquoted
    wanted = _business_ref(args.key)
    records = ledger.resolve(wanted)
    if not records:
        # A request id, a Sage document...: the records of the entries that mention it.
        found = ledger.trace(args.key)
        keys = dict.fromkeys(e.source_key for e in found if e.stream != "state_marks")
        records = list({(r.stream, r.source_key): r for key in keys
                        for r in ledger.resolve(key)}.values())
        if not records:
            if not found:
                print(f"nothing in the ledger is named {args.key!r}", file=err)
                return 1
            print(_trace_table(found, {}), file=out)
            return 0
    subjects: dict[str, list[Any]] = {}
    for record in records:
        subjects.setdefault(record.subject, []).append(record)
    if len(subjects) > 1:
        print(f"{args.key!r} names {len(subjects)} different records; trace one of them:",
              file=err)
        for group in subjects.values():
            main = min(group, key=lambda r: (not r.matched, len(r.business_id)))
            print(f"  ml-connector audit trace {main.business_id}    # "
                  f"{_describe_ids(main.family + ' ' + main.business_id, main.business_ids)}",
                  file=err)
        return 1
    # One record per family and key (a vendor read in Sage and delivered to Basware is one).
    label = {(r.stream, r.source_key): r.business_id for r in records}
    by_record: dict[str, list[Any]] = {}
    for record in records:
        by_record.setdefault(record.business_id, []).append(record)
    for business_id, group in by_record.items():
        outcome = next((r for r in reversed(group) if r.latest_action != Action.READ), group[-1])
        print(f"{outcome.family} {_describe_ids(business_id, outcome.business_ids)}", file=out)
    found = ledger.history(label)
    print(file=out)
    print(_trace_table(found, label), file=out)
    open_ = {(f.stream, f.source_key): f for f in ledger.open_failures()
             if (f.stream, f.source_key) in label}
    if open_:
        print(file=out)
        for failure in open_.values():
            print(f"Open failure ({failure.stream}): {' '.join(failure.error.split())}",
                  file=out)
            print(f"What to do: {remedy(failure.stream, failure.error, failure.business_id)}",
                  file=out)
    return 0


_BATCH_ENTRY = re.compile(r"^\s*(?:([A-Za-z0-9]+)[\s/]+)?batch\s+(\d+)\s*,?\s*entry\s+(\d+)\s*$",
                          re.IGNORECASE)


def _business_ref(text: str) -> str:
    """A Sage batch and entry in words (`batch 5 entry 14`, `SAMINC batch 5 entry 14`) as the
    ledger names it (`5/14`, `SAMINC/5/14`); anything else as typed."""
    match = _BATCH_ENTRY.match(text)
    if not match:
        return text
    company, batch, entry = match.groups()
    return f"{company}/{batch}/{entry}" if company else f"{batch}/{entry}"


def cmd_failures(ledger: Ledger, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Open failures (`--all`: every record that ever failed, resolved ones marked), grouped
    by cause: the real message, how many records, their business ids, first and last seen,
    and what to do (`remedies.remedy`)."""
    from ml_connector_core.remedies import remedy

    found = ledger.failed_records(since=args.since, include_resolved=args.all)
    since = f" since {_when(args.since)}" if args.since else ""
    if not found:
        print(("no failures" if args.all else "no open failures") + since, file=out)
        return 0
    groups: dict[tuple[str, str], list[Any]] = {}
    for failure in found:
        cause = " ".join(failure.error.split()) or "(no error text)"
        groups.setdefault((failure.stream, cause), []).append(failure)
    ordered = sorted(groups.items(), key=lambda item: (-sum(f.open for f in item[1]),
                                                       -len(item[1]), item[0]))
    still_open = sum(f.open for f in found)
    what = "failed record(s)" if args.all else "open failure(s)"
    print(f"{len(found)} {what}" + (f", {still_open} still open" if args.all else "")
          + f" in {len(groups)} cause(s){since}", file=out)
    for (stream, cause), failures in ordered:
        first = min(f.first_failed_at for f in failures)
        last = max(f.last_failed_at for f in failures)
        plugins = ", ".join(sorted({f.plugin for f in failures}))
        print(f"\n{cause}", file=out)
        print(f"  {len(failures)} record(s) of {stream} ({plugins}), first seen {_when(first)}, "
              f"last seen {_when(last)}", file=out)
        for failure in failures[:_IDS_LISTED]:
            state = "" if not args.all else (
                "  open" if failure.open
                else f"  resolved: {failure.resolved_by.value} {_when(failure.resolved_at)}")
            times = f", failed {failure.failures} times" if failure.failures > 1 else ""
            print(f"  - {_describe_ids(failure.business_id, failure.business_ids)}{times}"
                  f"{state}", file=out)
        pending = [f for f in failures if f.open]
        if len(failures) > _IDS_LISTED:
            print(f"  ... and {len(failures) - _IDS_LISTED} more", file=out)
        if pending:
            ids = " ".join(f.business_id for f in pending[:_IDS_LISTED])
            print(f"  What to do: {remedy(stream, cause, ids)}", file=out)
    return 0


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (dict, "object"), (list, "array"), (type(None), "null"))


def infer_schema(payloads: Sequence[Any]) -> dict[str, Any]:
    """A permissive SCHEMA for stored payloads: each top-level field typed as seen, `null`
    added where a field was null or missing; a bare object schema if payloads are not dicts."""
    if not payloads or not all(isinstance(p, dict) for p in payloads):
        return {"type": "object"}
    types: dict[str, set[str]] = {}
    for payload in payloads:
        for key, value in payload.items():
            types.setdefault(key, set()).add(
                next(name for kind, name in _JSON_TYPES if isinstance(value, kind))
            )
    properties = {}
    for key, seen in types.items():
        if any(key not in payload for payload in payloads):
            seen.add("null")
        if "number" in seen:
            seen.discard("integer")  # integer is a number; listing both says nothing more
        properties[key] = {"type": sorted(seen)}
    return {"type": "object", "properties": properties}


def singer_messages(replayed: Sequence[Entry]) -> list[dict[str, Any]]:
    """SCHEMA then RECORDs per stream, streams in order of first appearance."""
    by_stream: dict[str, list[Entry]] = {}
    for entry in replayed:
        by_stream.setdefault(entry.stream, []).append(entry)
    messages: list[dict[str, Any]] = []
    for stream, group in by_stream.items():
        # The newest stored SCHEMA/key properties describe the stream as the target last saw it.
        schema = next((e.schema for e in reversed(group) if e.schema), None)
        keys = next((e.key_properties for e in reversed(group) if e.key_properties), None)
        messages.append({
            "type": "SCHEMA", "stream": stream,
            "schema": schema or infer_schema([e.payload for e in group]),
            "key_properties": list(keys or []),
        })
        messages += [{"type": "RECORD", "stream": stream, "record": e.payload} for e in group]
    return messages


def cmd_replay(ledger: Ledger, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    selection = ledger.replayable(stream=args.stream, failed_only=args.failed, keys=args.key,
                                  since=args.since)
    for message in singer_messages(selection.entries):
        out.write(json.dumps(message, ensure_ascii=False) + "\n")
    out.flush()
    for entry, why in selection.skipped:
        print(f"skipped {entry.stream} {entry.source_key}: {why} ({_when(entry.created_at)})",
              file=err)
    print(f"replayed {len(selection.entries)} record(s), skipped {len(selection.skipped)}",
          file=err)
    return 0


def cmd_report(ledger: Ledger, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The AP lead's report (ml_connector_core.ap_report), as text and optionally HTML."""
    since = args.since or args.start
    report = ap_report.build(ledger, run=args.run, since=since, until=args.end)
    if args.run and not report.job_runs:
        print(f"no run found with id {args.run!r}", file=err)
        return 1
    out.write(ap_report.render_text(report))
    if args.html:
        Path(args.html).write_text(ap_report.render_html(report), encoding="utf-8")
        print(f"HTML report written to {args.html}", file=err)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-connector audit",
                                     description="Inspect and replay the audit ledger.")
    parser.add_argument(
        "--ledger-url", default=os.environ.get("ML_CONNECTOR_LEDGER_URL"),
        help="SQLAlchemy URL (default: $ML_CONNECTOR_LEDGER_URL, else "
             "sqlite:///$MELTANO_PROJECT_ROOT/.ml-connector/ledger.sqlite)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    trace = commands.add_parser(
        "trace", help="a record's whole history, found by any of its business ids")
    trace.add_argument(
        "key", nargs="+",
        help="invoice number (INV-18825) or Basware invoice id; vendor (SAMLTD/1600, or 1600 "
             "when only one company has it); PO number (PO200161, SAMLTD/PO200161); Sage "
             "entry (SAMINC/5/14, 5/14, SAMINC batch 5 entry 14); externalCode; a source or "
             "target key, or a Basware request id")
    trace.set_defaults(handler=cmd_trace)

    failures = commands.add_parser(
        "failures", help="open failures grouped by cause, with what to do about each")
    failures.add_argument("--since", type=parse_since,
                          help="only records whose last failure is this recent: 2d, 12h, 30m "
                               "or ISO date-time")
    failures.add_argument("--all", action="store_true",
                          help="every record that ever failed, resolved ones too (history)")
    failures.set_defaults(handler=cmd_failures)

    replay = commands.add_parser(
        "replay", help="write not-yet-delivered records as a Singer stream to stdout")
    replay.add_argument("--failed", action="store_true",
                        help="only keys that failed (default: also keys read but never delivered)")
    replay.add_argument("--stream")
    replay.add_argument("--key", nargs="+", action="extend", help="only these source keys")
    replay.add_argument("--since", type=parse_since, help="2d, 12h, 30m or ISO date-time")
    replay.set_defaults(handler=cmd_replay)

    report = commands.add_parser(
        "report", help="what needs attention, what was created, master data, totals")
    report.add_argument("--run", help="a ledger or Meltano run id: its job run (default: the "
                                      "latest run of each job)")
    period = report.add_mutually_exclusive_group()
    period.add_argument("--since", type=parse_since,
                        help="every run started since: 1d, 12h, 30m or ISO date-time")
    period.add_argument("--from", dest="start", type=parse_since, metavar="FROM",
                        help="every run started from this ISO date-time (or 1d...)")
    report.add_argument("--to", dest="end", type=parse_since, metavar="TO",
                        help="...and before this one")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    url = args.ledger_url or default_ledger_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(
        parsed.database
    ).exists():
        # Opening would create an empty ledger and report "nothing": say where we looked.
        print(f"no ledger at {parsed.database}: run from the Meltano project directory or set "
              "--ledger-url / ML_CONNECTOR_LEDGER_URL", file=err)
        return 2
    try:
        ledger = Ledger.open(url)
    except Exception as exc:  # a bad URL or unreachable server: one clear line, no traceback
        safe = parsed.render_as_string(hide_password=True)
        print(f"cannot open ledger {safe}: {type(exc).__name__}: {exc}", file=err)
        return 2
    with ledger:
        return args.handler(ledger, args, out, err)


if __name__ == "__main__":
    raise SystemExit(main())
