"""The AP lead's report (`ml-connector audit report`): what needs attention, what was created
in Sage 300, what master data reached Basware, and the totals, in plain text and as one
self-contained HTML page (inline CSS, no script, no external asset; readable on a phone).

What it covers: by default the latest run of each job (master-data, invoices); `--run` one job
run; `--since`/`--from`/`--to` every run started in a period. A *job run* is every plugin run
of one `meltano run <job>`: the plugin runs sharing a Meltano run id (`ml-connector run`
gives each job run one), else the runs of the job's plugins that follow each other with less
than `SAME_JOB_RUN_GAP` between them (a plain `meltano run` hands its plugins no shared id).

Everything shown comes from the ledger. target-sage300 creates AP invoice batches with status
Ready to post and records that; posting is the AP team's, in Sage 300 (the target posts only
with its `post_batches` setting on, off by default, and the ledger does not record posting),
so the report says "created ready to post", never "posted".
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector_core.ledger import FAILURE, SUCCESS, Action, Entry, Ledger, Run
from ml_connector_core.ledger import _refs as business
from ml_connector_core.remedies import remedy

#: The jobs of meltano.yml, by the plugins that run in them (a plugin belongs to one job).
JOB_OF_PLUGIN = {"tap-sage300": "master-data", "target-basware": "master-data",
                 "tap-basware": "invoices", "target-sage300": "invoices"}
JOB_ORDER = ("master-data", "invoices")
#: Plugin runs of one job without a Meltano run id belong to one job run when each starts
#: less than this after the previous ones ended: the tasks of one `meltano run` follow each
#: other within seconds, scheduled runs of a job are minutes apart.
SAME_JOB_RUN_GAP = timedelta(seconds=60)
#: Where the latest run of each job is looked for first (`select_job_runs`).
RECENT = timedelta(days=7)

#: target-sage300's invoices; tap-basware's reads of Basware's queue and its answers.
INVOICES = "ap_invoices"
BASWARE_INVOICES = "accounting_documents"
ANSWERS = "transfer_responses"
#: target-basware's streams, as an AP lead names them, in the order they are shown.
MASTER_DATA = {"vendors": "Vendors", "accounts": "GL accounts", "cost_centers": "Cost centers",
               "payment_terms": "Payment terms", "tax_codes": "Tax codes",
               "matching_orders": "Purchase orders",
               "matching_order_lines": "PO lines"}
MASTER_ACTIONS = (Action.CREATED, Action.UPDATED, Action.DEACTIVATED, Action.UNCHANGED,
                  Action.REJECTED, Action.FAILED)

#: An invoice target-sage300 created, as the ledger knows it (CREATED_MEANS).
CREATED = "created ready to post"
#: The one sentence that says what "created" means in Sage 300, in both renderings.
CREATED_MEANS = (
    "ml-connector creates each AP invoice batch with status Ready to post. It does not post "
    "it (unless target-sage300's post_batches setting is on; it is off by default) and does "
    "not record posting: post the batches in Sage 300 (AP > Post Batches); whether a batch "
    "is posted by now, Sage 300 says.")


# -- which runs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class JobRun:
    """The plugin runs of one run of a job."""

    job: str
    runs: tuple[Run, ...]

    @property
    def meltano_run_id(self) -> str | None:
        return self.runs[0].job_id

    @property
    def started_at(self) -> datetime:
        return min(run.started_at for run in self.runs)

    @property
    def finished_at(self) -> datetime | None:
        ends = [run.finished_at for run in self.runs]
        return None if any(end is None for end in ends) else max(e for e in ends if e)

    @property
    def status(self) -> str:
        """failed when a plugin run failed (or ended incomplete), running while one has not
        ended (or was killed: the ledger cannot tell), else success."""
        statuses = {run.status for run in self.runs}
        if statuses - {"success", "running"}:
            return "failed"
        return "running" if "running" in statuses else "success"


def job_of(plugin: str) -> str:
    return JOB_OF_PLUGIN.get(plugin, plugin)


def job_runs(runs: Iterable[Run]) -> list[JobRun]:
    """Plugin runs grouped into job runs (module docstring), oldest first."""
    by_id: dict[tuple[str, str], list[Run]] = {}
    loose: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.started_at):
        if run.job_id:
            by_id.setdefault((job_of(run.plugin), run.job_id), []).append(run)
        else:
            loose.setdefault(job_of(run.plugin), []).append(run)
    found = [JobRun(job, tuple(group)) for (job, _), group in by_id.items()]
    for job, group_runs in loose.items():
        current: list[Run] = []
        end = datetime.min.replace(tzinfo=UTC)
        for run in group_runs:
            if current and run.started_at - end > SAME_JOB_RUN_GAP:
                found.append(JobRun(job, tuple(current)))
                current = []
            current.append(run)
            end = max(end, run.finished_at or run.started_at)
        if current:
            found.append(JobRun(job, tuple(current)))
    return sorted(found, key=lambda job_run: job_run.started_at)


def _job_rank(job: str) -> tuple[int, str]:
    return (JOB_ORDER.index(job) if job in JOB_ORDER else len(JOB_ORDER), job)


def select_job_runs(ledger: Ledger, run: str | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> list[JobRun]:
    """The job runs a report covers: the one holding ledger or Meltano run id `run`; every
    one started in [since, until); by default the latest of each job."""
    if since is not None or until is not None:
        return job_runs(ledger.runs_between(since, until))
    if run is not None:
        return [job_run for job_run in job_runs(ledger.runs_between())
                if any(run in (r.run_id, r.job_id) for r in job_run.runs)]
    # A ledger keeps years of runs (some 180 a day): the latest of each job is looked for in
    # the last week first, and in all of them only when a job did not run in that week or its
    # latest run may have begun before it.
    window = datetime.now(UTC) - RECENT
    latest = _latest_of_each_job(ledger.runs_between(since=window))
    if set(JOB_ORDER) - set(latest) or any(
            job_run.started_at - window <= SAME_JOB_RUN_GAP for job_run in latest.values()):
        latest = _latest_of_each_job(ledger.runs_between())
    return sorted(latest.values(), key=lambda job_run: _job_rank(job_run.job))


def _latest_of_each_job(runs: Iterable[Run]) -> dict[str, JobRun]:
    latest: dict[str, JobRun] = {}
    for job_run in job_runs(runs):  # oldest first: the last one of each job stays
        latest[job_run.job] = job_run
    return latest


# -- what the report says ------------------------------------------------------------------

@dataclass(frozen=True)
class InvoiceLine:
    """One invoice as the report shows it."""

    key: str  # Basware invoice id (the ledger's source key)
    number: str
    vendor: str
    amount: Decimal | None
    currency: str
    company: str
    action: Action
    when: datetime
    batch: str | None = None
    entry: str | None = None
    reason: str | None = None
    to_do: str | None = None
    times: int = 1  # failures of this invoice in the report's runs
    now: str | None = None  # what became of it since, when a later run settled it
    already_posted: bool = False  # found among Sage's posted documents

    @property
    def amount_text(self) -> str:
        return money(self.amount, self.currency)

    @property
    def status(self) -> str:
        """Where it is in Sage 300, worded exactly (CREATED_MEANS)."""
        where = f"batch {self.batch or '?'}, entry {self.entry or '?'}"
        if self.action == Action.CREATED:
            return f"in Sage batch {self.batch or '?'}, entry {self.entry or '?'}: {CREATED}"
        if self.already_posted:
            return f"already in Sage, posted ({where}); not created again"
        return f"already in Sage ({where}); not created again"


@dataclass(frozen=True)
class RecordLine:
    """A master-data record Basware refused (or that failed)."""

    kind: str
    key: str
    name: str
    action: Action
    reason: str
    to_do: str
    when: datetime
    times: int = 1
    now: str | None = None


@dataclass
class ApReport:
    scope: str
    job_runs: list[JobRun]
    failed_runs: list[tuple[str, Run]] = field(default_factory=list)  # (job, plugin run)
    invoice_failures: list[InvoiceLine] = field(default_factory=list)
    record_failures: list[RecordLine] = field(default_factory=list)
    created: list[InvoiceLine] = field(default_factory=list)
    already: list[InvoiceLine] = field(default_factory=list)
    master: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> action -> n
    received: int = 0  # invoices tap-basware read from Basware's queue
    answered: int = 0  # outcomes tap-basware answered to Basware

    @property
    def needs_attention(self) -> int:
        return len(self.failed_runs) + len(self.invoice_failures) + len(self.record_failures)

    def created_totals(self) -> dict[str, Decimal]:
        """Created amounts per currency."""
        totals: dict[str, Decimal] = {}
        for line in self.created:
            if line.amount is not None:
                totals[line.currency] = totals.get(line.currency, Decimal(0)) + line.amount
        return dict(sorted(totals.items()))

    def totals(self) -> list[tuple[str, str]]:
        """(what, how many) rows, the same in text and HTML."""
        amounts = ", ".join(money(v, c) for c, v in self.created_totals().items())
        rows = [
            ("Invoices received from Basware", str(self.received)),
            ("Invoices created in Sage 300, ready to post",
             f"{len(self.created)}" + (f" ({amounts})" if amounts else "")),
            ("Invoices already in Sage 300 (not created again)", str(len(self.already))),
            ("Invoices that need attention", str(len(self.invoice_failures))),
            ("Outcomes answered to Basware", str(self.answered)),
        ]
        for action in MASTER_ACTIONS:
            count = sum(per.get(action.value, 0) for per in self.master.values())
            if count or action in (Action.CREATED, Action.REJECTED):
                rows.append((f"Master-data records {action.value}", str(count)))
        if self.failed_runs:
            rows.append(("Plugin runs that failed", str(len(self.failed_runs))))
        return rows


def money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return "amount unknown"
    return f"{amount:,.2f} {currency}".strip()


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _what_to_do(stream: str, error: str | None, business_id: str) -> str:
    """The remedy a person can act on (ml_connector_core.remedies)."""
    return remedy(stream, error, business_id)


def _vendor(number: str, name: str) -> str:
    if name and number:
        return f"{name} ({number})"
    return name or (f"vendor {number}" if number else "vendor unknown")


def _later(outcome_action: Action | None, target_key: str | None) -> str | None:
    """What a later run made of a failed record, if it succeeded since."""
    if outcome_action is None or outcome_action not in SUCCESS:
        return None
    return f"since {outcome_action.value}" + (f" as {target_key}" if target_key else "")


def build(ledger: Ledger, run: str | None = None, since: datetime | None = None,
          until: datetime | None = None) -> ApReport:
    """The report of the selected job runs (`select_job_runs`)."""
    selected = select_job_runs(ledger, run, since, until)
    if since is not None or until is not None:
        scope = "Runs started " + " ".join(part for part in (
            f"from {when(since)}" if since else "", f"until {when(until)}" if until else "")
            if part)
    elif run is not None:
        scope = f"Run {run}"
    else:
        scope = "Latest run of each job"
    report = ApReport(scope, selected)
    run_ids = [r.run_id for job_run in selected for r in job_run.runs]
    if not run_ids:
        return report
    report.failed_runs = [(job_run.job, r) for job_run in selected for r in job_run.runs
                          if r.status not in ("success", "running")]
    counts = ledger.run_counts(run_ids)
    report.received = ledger_count(counts, BASWARE_INVOICES, Action.READ)
    report.answered = ledger_count(counts, ANSWERS, Action.RESPONDED)
    report.master = {kind: counts[stream] for stream, kind in MASTER_DATA.items()
                     if stream in counts}
    _invoices(ledger, run_ids, report)
    _records(ledger, run_ids, report)
    return report


def ledger_count(counts: Mapping[str, Mapping[str, int]], stream: str, action: Action) -> int:
    return counts.get(stream, {}).get(action.value, 0)


def _invoices(ledger: Ledger, run_ids: list[str], report: ApReport) -> None:
    outcomes = ledger.run_entries(run_ids, streams=[INVOICES],
                                  actions=[a.value for a in Action if a != Action.READ])
    if not outcomes:
        return
    keys = list(dict.fromkeys(entry.source_key for entry in outcomes))
    # Basware's own record of each invoice: its number and the vendor's name, also for an
    # invoice that failed before target-sage300 kept a payload.
    read = _latest_reads(ledger, keys)
    latest = ledger.outcomes(INVOICES, keys)
    failures: dict[str, list[Entry]] = {}
    for entry in outcomes:
        if entry.action in FAILURE:
            failures.setdefault(entry.source_key, []).append(entry)
            continue
        line = _invoice_line(entry, read.get(entry.source_key))
        (report.created if entry.action == Action.CREATED else report.already).append(line)
    for key, failed in failures.items():
        entry = failed[-1]
        line = _invoice_line(entry, read.get(key))
        now = latest.get(key)
        report.invoice_failures.append(replace(
            line, reason=entry.error or "(no reason recorded)",
            to_do=_what_to_do(INVOICES, entry.error, line.number), times=len(failed),
            now=_later(now.action, now.target_key) if now else None))
    report.created.sort(key=_in_sage_order)
    report.already.sort(key=_in_sage_order)


def _in_sage_order(line: InvoiceLine) -> tuple[Any, ...]:
    return (line.company, _number(line.batch), _number(line.entry), line.number)


def _number(value: str | None) -> tuple[int, str]:
    text = value or ""
    return (int(text), "") if text.isdigit() else (0, text)


def _latest_reads(ledger: Ledger, keys: Sequence[str]) -> dict[str, Entry]:
    """Per invoice, tap-basware's newest read of it (Basware's record: its number, the
    vendor's name), also for an invoice that failed before target-sage300 kept a payload."""
    found: dict[str, Entry] = {}
    for entry in ledger.history([(BASWARE_INVOICES, key) for key in keys]):
        if entry.action == Action.READ and entry.payload is not None:
            found[entry.source_key] = entry  # oldest first: the newest stays
    return found


def _ids(entry: Entry, *more: Entry | None) -> dict[str, str]:
    """The record's business ids (ledger/_refs.py, their one home), from `entry` first, then
    from the same record's entries in other streams."""
    ids: dict[str, str] = {}
    for source in (entry, *more):
        if source is None:
            continue
        for label, value in business.business_ids(
                source.stream, source.source_key, source.payload, target_key=source.target_key,
                sage_batch=source.sage_batch, sage_entry=source.sage_entry).items():
            ids.setdefault(label, value)
    return ids


def _invoice_line(entry: Entry, basware: Entry | None) -> InvoiceLine:
    ids = _ids(entry, basware)
    reply = entry.reply if isinstance(entry.reply, Mapping) else {}
    return InvoiceLine(
        key=entry.source_key, number=business.primary_id(entry.stream, entry.source_key, ids),
        vendor=_vendor(ids.get("vendor", ""), ids.get("name", "")),
        amount=_decimal(ids.get("amount")), currency=ids.get("currency", ""),
        company=ids.get("company") or _text(reply.get("company")),
        action=entry.action, when=entry.created_at or datetime.now(UTC),
        batch=entry.sage_batch, entry=entry.sage_entry,
        already_posted="posted document" in _text(reply.get("message")))


def _records(ledger: Ledger, run_ids: list[str], report: ApReport) -> None:
    failed = ledger.run_entries(run_ids, streams=list(MASTER_DATA),
                                actions=[a.value for a in FAILURE])
    by_key: dict[tuple[str, str], list[Entry]] = {}
    for entry in failed:
        by_key.setdefault((entry.stream, entry.source_key), []).append(entry)
    latest: dict[str, Any] = {}
    for stream in {stream for stream, _ in by_key}:
        latest[stream] = ledger.outcomes(stream, [key for s, key in by_key if s == stream])
    for (stream, key), entries in sorted(by_key.items(), key=lambda item: (
            list(MASTER_DATA).index(item[0][0]), item[0][1])):
        entry = entries[-1]
        ids = _ids(entry)
        record = business.primary_id(stream, key, ids)
        now = latest[stream].get(key)
        report.record_failures.append(RecordLine(
            kind=MASTER_DATA[stream], key=record, name=_record_name(entry.payload, ids),
            action=entry.action, reason=entry.error or "(no reason recorded)",
            to_do=_what_to_do(stream, entry.error, record),
            when=entry.created_at or datetime.now(UTC), times=len(entries),
            now=_later(now.action, now.target_key) if now else None))


def _record_name(payload: Any, ids: Mapping[str, str]) -> str:
    """What a person calls the record besides its id: a vendor's name, a PO's description,
    a PO line's product."""
    data: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    return (ids.get("name") or _text(data.get("productName"))
            or _text(data.get("description")))


# -- plain text ------------------------------------------------------------------------------

def when(value: datetime | None) -> str:
    return "…" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
           ) -> list[str]:
    cells = [list(headers)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    aligned = set(right)
    lines = ["  ".join(cell.rjust(widths[i]) if i in aligned else cell.ljust(widths[i])
                       for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return ["  " + line for line in lines]


def _run_line(job_run: JobRun) -> str:
    plugins = ", ".join(dict.fromkeys(run.plugin for run in job_run.runs))
    meltano = f", Meltano run {job_run.meltano_run_id}" if job_run.meltano_run_id else ""
    return (f"{job_run.job}: {job_run.status}, {when(job_run.started_at)} to "
            f"{when(job_run.finished_at)} ({plugins}{meltano})")


def _failed_run_text(job: str, run: Run) -> str:
    return (f"the {job} job's {run.plugin} run {run.status} ({when(run.started_at)}, ledger "
            f"run {run.run_id}): see the job's log; the next run picks up what this one did "
            "not finish")


def render_text(report: ApReport) -> str:
    out = [f"ml-connector report: {report.scope}"]
    out += [f"  {_run_line(job_run)}" for job_run in report.job_runs] or ["  no runs"]
    out += ["", f"NEEDS ATTENTION ({report.needs_attention})"]
    if not report.needs_attention:
        out.append("  nothing: every invoice and record went through")
    out += [f"  Run failed: {_failed_run_text(job, run)}" for job, run in report.failed_runs]
    for line in report.invoice_failures:
        out.append(f"  Invoice {line.number}  {line.vendor}  {line.amount_text}  "
                   f"Sage company {line.company or '?'}"
                   + (f"  ({line.times} times)" if line.times > 1 else ""))
        out.append(f"    Reason:     {line.reason}")
        out.append(f"    What to do: {line.to_do}")
        if line.now:
            out.append(f"    Now:        {line.now}")
    for record in report.record_failures:
        out.append(f"  {record.kind} {record.key}  {record.name}".rstrip()
                   + (f"  ({record.times} times)" if record.times > 1 else ""))
        out.append(f"    Reason:     {record.reason}")
        out.append(f"    What to do: {record.to_do}")
        if record.now:
            out.append(f"    Now:        {record.now}")
    out += ["", f"CREATED IN SAGE 300 ({len(report.created)} invoices, ready to post)",
            f"  {CREATED_MEANS}"]
    if report.created:
        out += _table(("invoice", "vendor", "amount", "company", "batch", "entry", "status"),
                      [(line.number, line.vendor, line.amount_text, line.company,
                        line.batch or "", line.entry or "", CREATED)
                       for line in report.created], right=(2, 4, 5))
    if report.already:
        out += ["", f"  Already in Sage 300, not created again ({len(report.already)}):"]
        out += _table(("invoice", "vendor", "amount", "company", "where"),
                      [(line.number, line.vendor, line.amount_text, line.company, line.status)
                       for line in report.already], right=(2,))
    out += ["", "MASTER DATA SENT TO BASWARE"]
    if report.master:
        out += _table(("type", *(a.value for a in MASTER_ACTIONS)),
                      [(kind, *(str(per.get(a.value, 0)) for a in MASTER_ACTIONS))
                       for kind, per in report.master.items()],
                      right=range(1, len(MASTER_ACTIONS) + 1))
        for record in report.record_failures:
            out.append(f"  {record.action.value}: {record.kind} {record.key} {record.name}"
                       .rstrip())
    else:
        out.append("  none in these runs")
    out += ["", "TOTALS"]
    out += _table(("", "count"), report.totals(), right=(1,))[2:]
    return "\n".join(out) + "\n"


# -- HTML -----------------------------------------------------------------------------------

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1rem;
color:#1f2328;background:#fff;line-height:1.4;max-width:72rem}
h1{font-size:1.4rem;margin:.2rem 0 .6rem}
h2{font-size:1.15rem;margin:1.6rem 0 .5rem;padding-bottom:.2rem;border-bottom:2px solid #d0d7de}
.scope{color:#57606a;margin:.2rem 0}
.runs{margin:.4rem 0;padding-left:1.2rem}
.summary{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0;padding:0;list-style:none}
.summary li{border:1px solid #d0d7de;border-radius:.4rem;padding:.4rem .7rem}
.summary .bad{border-color:#cf222e;color:#a40e26;background:#ffebe9}
.summary .good{border-color:#1a7f37;color:#116329;background:#dafbe1}
.note{background:#f6f8fa;border-left:4px solid #0969da;padding:.5rem .8rem;margin:.5rem 0}
.ok{color:#116329}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;white-space:nowrap}
td:first-child,code{white-space:nowrap}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;background:#f6f8fa;
padding:0 .2em;border-radius:.2em}
.attention td{background:#fff8f8}
.reason{color:#a40e26}
@media (max-width:40rem){
 body{padding:.6rem}
 table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
 table.cards thead{display:none}
 table.cards tr{border:1px solid #d0d7de;border-radius:.4rem;margin:.6rem 0;padding:.3rem 0}
 table.cards td{border:none;padding:.2rem .6rem}
 table.cards td:first-child{white-space:normal}
 code{white-space:normal;overflow-wrap:anywhere}
 table.cards td.num{text-align:left}
 table.cards td::before{content:attr(data-label) ": ";font-weight:600;color:#57606a}
}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


#: A command in a remedy, shown as code and kept on one line on a wide screen (not broken at
#: a hyphen, where it reads as two words).
_COMMAND = re.compile(r"ml-connector (?:retry|audit trace) [^\s;()&]+")


def _cell(value: Any) -> str:
    """A cell's HTML: the value escaped, then the commands in it (escaped text already)
    marked as code."""
    return _COMMAND.sub(lambda match: f"<code>{match.group(0)}</code>", _esc(value))


def _cards(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = (),
           row_class: str = "") -> str:
    """A table that becomes one card per row on a narrow screen (each cell labelled)."""
    right = set(numeric)
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    numeric_class = ' class="num"'
    tr = f'<tr class="{row_class}">' if row_class else "<tr>"
    for row in rows:
        cells = "".join(
            f'<td data-label="{_esc(headers[i])}"{numeric_class if i in right else ""}>'
            f"{_cell(value)}</td>" for i, value in enumerate(row))
        body.append(f"{tr}{cells}</tr>")
    return (f'<table class="cards"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def render_html(report: ApReport) -> str:
    runs = "".join(f"<li>{_esc(_run_line(job_run))}</li>" for job_run in report.job_runs)
    attention = report.needs_attention
    summary = [
        (f"{attention} need attention", "bad" if attention else "good"),
        (f"{len(report.created)} created in Sage 300, ready to post", ""),
        (f"{len(report.already)} already in Sage 300", ""),
        (f"{sum(sum(per.values()) for per in report.master.values())} master-data records", ""),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ml-connector report: {_esc(report.scope)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>ml-connector report</h1>",
        f'<p class="scope">{_esc(report.scope)}</p>',
        f'<ul class="runs">{runs or "<li>no runs</li>"}</ul>',
        '<ul class="summary">' + "".join(
            f'<li class="{cls}">{_esc(text)}</li>' if cls else f"<li>{_esc(text)}</li>"
            for text, cls in summary) + "</ul>",
        f'<section id="attention"><h2>Needs attention ({attention})</h2>',
    ]
    if not attention:
        parts.append('<p class="ok">Nothing: every invoice and record went through.</p>')
    if report.failed_runs:
        parts.append("<h3>Runs that failed</h3>" + "".join(
            f'<p class="reason">{_esc(_failed_run_text(job, run))}</p>'
            for job, run in report.failed_runs))
    if report.invoice_failures:
        parts.append(f"<h3>Invoices ({len(report.invoice_failures)})</h3>")
        parts.append(_cards(
            ("Invoice", "Vendor", "Amount", "Sage company", "Reason", "What to do", "Now"),
            [(line.number + (f" ({line.times} times)" if line.times > 1 else ""), line.vendor,
              line.amount_text, line.company, line.reason, line.to_do,
              line.now or "still to fix") for line in report.invoice_failures],
            numeric=(2,), row_class="attention"))
    if report.record_failures:
        parts.append(f"<h3>Master data Basware refused ({len(report.record_failures)})</h3>")
        parts.append(_cards(
            ("Type", "Record", "Name", "Reason", "What to do", "Now"),
            [(record.kind, record.key + (f" ({record.times} times)" if record.times > 1
                                         else ""),
              record.name, record.reason, record.to_do, record.now or "still to fix")
             for record in report.record_failures], row_class="attention"))
    parts.append("</section>")
    parts.append(f'<section id="created"><h2>Created in Sage 300 ({len(report.created)} '
                 "invoices, ready to post)</h2>")
    parts.append(f'<p class="note">{_esc(CREATED_MEANS)}</p>')
    if report.created:
        parts.append(_cards(
            ("Invoice", "Vendor", "Amount", "Sage company", "Batch / entry", "Status"),
            [(line.number, line.vendor, line.amount_text, line.company,
              f"batch {line.batch}, entry {line.entry}", CREATED)
             for line in report.created], numeric=(2,)))
    else:
        parts.append("<p>No invoice created in these runs.</p>")
    if report.already:
        parts.append(f"<h3>Already in Sage 300, not created again ({len(report.already)})</h3>")
        parts.append(_cards(("Invoice", "Vendor", "Amount", "Sage company", "Where"),
                            [(line.number, line.vendor, line.amount_text, line.company,
                              line.status) for line in report.already], numeric=(2,)))
    parts.append("</section>")
    parts.append('<section id="master-data"><h2>Master data sent to Basware</h2>')
    if report.master:
        parts.append(_cards(("Type", *(a.value for a in MASTER_ACTIONS)),
                            [(kind, *(per.get(a.value, 0) for a in MASTER_ACTIONS))
                             for kind, per in report.master.items()],
                            numeric=range(1, len(MASTER_ACTIONS) + 1)))
        if report.record_failures:
            parts.append("<p>Rejected: " + "; ".join(
                _esc(f"{r.kind} {r.key} {r.name}".rstrip()) for r in report.record_failures)
                + "</p>")
    else:
        parts.append("<p>None in these runs.</p>")
    parts.append("</section>")
    parts.append('<section id="totals"><h2>Totals</h2>')
    parts.append(_cards(("What", "Count"), report.totals(), numeric=(1,)))
    parts.append("</section></body></html>\n")
    return "\n".join(parts)
