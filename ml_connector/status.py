"""`ml-connector status`: is anything stuck, and what fixes it.

One look for an AP lead or a monitoring probe, read from two places:

- Meltano's run records (its system database, as `ml-connector run` reads them): per job, the
  last run and the last successful one, and the runs failing in a row. Meltano writes a
  record when a task starts, so a run that failed before any plugin opened the ledger counts;
- the ledger: invoices tap-basware acknowledged that Basware has not heard the outcome of,
  invoices answered TransferFailed and not answered since, and master data Basware (or the
  tap) refused and that has not gone through since.

Each is shown with the business's names (invoice number, vendor, company, amount), its age,
the reason and the command that fixes it (`ml_connector_core.remedies`). A problem is one of
these past its threshold; the exit status is 1 when there is any (0 otherwise, 2 when the
project or the ledger cannot be read), so cron or a monitoring probe can alert on it, and
`--notify` sends each new problem once (ml_connector/notify.py).

Thresholds come from flags, else ML_CONNECTOR_* variables of the environment, else the
project's `.env` (where Meltano projects keep their settings already: ml-connector is not a
Meltano plugin, so `meltano config` cannot hold them), else the defaults below.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ml_connector.project_config import MeltanoError, add_project_arguments, project_from_args
from ml_connector_core.redaction import Redactor

#: The defaults, and why. Every one is configurable (flag or ML_CONNECTOR_* variable).
#: The invoices job runs every 15 minutes in business hours: 2 h without a success is 8
#: missed runs. Master data runs hourly: 3 h is 3 missed runs. Payments run at 05:30 and
#: 12:30 on weekdays (payments-daily): 26 h is both runs of a day missed, so a paid invoice
#: Basware still shows unpaid a day later is a problem, and one failed run is not. All are
#: checked by `status` only (not after each run), so schedule `status --notify` in the
#: jobs' hours.
DEFAULT_STALE_AFTER = {"invoices": timedelta(hours=2), "master-data": timedelta(hours=3),
                       "payments": timedelta(hours=26)}
#: A run acknowledges and answers within minutes; 30 minutes unanswered is a stopped run.
DEFAULT_UNANSWERED_AFTER = timedelta(minutes=30)
#: Basware shows TransferFailed to its own users; half a working day gives them time to act
#: before monitoring does.
DEFAULT_TRANSFER_FAILED_AFTER = timedelta(hours=4)
#: A refused vendor or PO blocks invoices against it; a day lets the ERP team fix it first.
DEFAULT_REJECTED_AFTER = timedelta(hours=24)
#: One failed run is usually a blip the next run recovers from (state checkpoints resume);
#: two in a row is not.
DEFAULT_FAILED_RUNS = 2

ENV_PREFIX = "ML_CONNECTOR_"
INVOICE_STREAM, ANSWER_STREAM, SAGE_STREAM = "accounting_documents", "transfer_responses", \
    "ap_invoices"
#: Master data as target-basware writes it, and as tap-sage300 reads it (its own refusals).
MASTER_DATA_STREAMS = {
    "vendors": "vendor", "accounts": "GL account", "cost_centers": "cost center",
    "payment_terms": "payment term", "tax_codes": "tax code",
    "matching_orders": "purchase order",
    "matching_order_lines": "PO line", "gl_accounts": "GL account",
    "purchase_orders": "purchase order", "purchase_order_lines": "PO line",
}
EXIT_OK, EXIT_PROBLEMS, EXIT_UNREADABLE = 0, 1, 2

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d`, `45s` or plain seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def describe_duration(delta: timedelta | float) -> str:
    """`45 s`, `12 min`, `2 h 05 min`, `3 d 4 h`: as an AP lead reads an age."""
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


# --------------------------------------------------------------------------- settings


def connector_settings(project_root: Path) -> dict[str, str]:
    """ML_CONNECTOR_* settings: the project's `.env`, overridden by the environment (as
    Meltano itself treats `.env`)."""
    found: dict[str, str] = {}
    dotenv = project_root / ".env"
    if dotenv.is_file():
        from dotenv import dotenv_values  # Meltano's own .env reader

        found.update({k: v for k, v in dotenv_values(dotenv).items()
                      if k.startswith(ENV_PREFIX) and v is not None})
    found.update({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)})
    return found


@dataclass
class Thresholds:
    stale_after: dict[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_STALE_AFTER))
    unanswered_after: timedelta = DEFAULT_UNANSWERED_AFTER
    transfer_failed_after: timedelta = DEFAULT_TRANSFER_FAILED_AFTER
    rejected_after: timedelta = DEFAULT_REJECTED_AFTER
    failed_runs: int = DEFAULT_FAILED_RUNS

    @classmethod
    def from_settings(cls, settings: Mapping[str, str],
                      args: argparse.Namespace | None = None) -> Thresholds:
        """Flags first, then ML_CONNECTOR_* settings, then the defaults."""
        result = cls()

        def pick(name: str) -> Any:
            flag = getattr(args, name, None) if args is not None else None
            if flag is not None:
                return flag
            value = settings.get(ENV_PREFIX + name.upper())
            if value is None or value.strip() == "":
                return None
            return int(value) if name == "failed_runs" else parse_duration(value)

        for name in ("unanswered_after", "transfer_failed_after", "rejected_after",
                     "failed_runs"):
            value = pick(name)
            if value is not None:
                setattr(result, name, value)
        stale = settings.get(ENV_PREFIX + "STALE_AFTER", "")
        pairs = [p for p in re.split(r"[,\s]+", stale) if p]
        pairs += list(getattr(args, "stale_after", None) or [])
        for pair in pairs:  # JOB=DURATION; later (the flags) wins
            job, _, duration = pair.partition("=")
            if not duration:
                raise ValueError(f"stale-after {pair!r}: expected JOB=DURATION, e.g. "
                                 "invoices=2h")
            result.stale_after[job.strip()] = parse_duration(duration)
        return result

    def as_json(self) -> dict[str, Any]:
        return {"stale_after_seconds": {job: d.total_seconds()
                                        for job, d in self.stale_after.items()},
                "unanswered_after_seconds": self.unanswered_after.total_seconds(),
                "transfer_failed_after_seconds": self.transfer_failed_after.total_seconds(),
                "rejected_after_seconds": self.rejected_after.total_seconds(),
                "failed_runs": self.failed_runs}


# --------------------------------------------------------------------------- what is found


@dataclass
class JobStatus:
    job: str
    last_run: dict[str, Any] | None  # {run_id, status, started_at, ended_at, error}
    last_success: dict[str, Any] | None
    failing_in_a_row: int
    failing_since: datetime | None
    last_error: str | None


@dataclass
class Item:
    """One thing that waits: an invoice, a refused record, a failing or stale job."""

    id: str  # stable across runs: what notifications remember (never a secret)
    kind: str  # unanswered | transfer_failed | rejected | failing_runs | stale
    title: str  # the business's words: invoice number, vendor, amount
    since: datetime
    age_seconds: float
    threshold_seconds: float
    problem: bool  # past its threshold
    reason: str | None = None
    fix: list[str] = field(default_factory=list)  # what to do, the last line the command
    business_id: str | None = None


@dataclass
class Status:
    checked_at: datetime
    environment: str | None
    jobs: list[JobStatus]
    items: list[Item]
    thresholds: Thresholds
    ledger_error: str | None = None

    @property
    def problems(self) -> list[Item]:
        return [item for item in self.items if item.problem]

    def exit_code(self) -> int:
        return EXIT_PROBLEMS if self.problems else EXIT_OK

    def as_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.astimezone(UTC).isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return {
            "checked_at": plain(self.checked_at),
            "environment": self.environment,
            "verdict": "PROBLEMS" if self.problems else "OK",
            "problems": len(self.problems),
            "thresholds": self.thresholds.as_json(),
            "jobs": [plain(asdict(job)) for job in self.jobs],
            "items": [plain(asdict(item)) for item in self.items],
            "ledger_error": self.ledger_error,
        }


# --------------------------------------------------------------------------- collecting


def job_status(job: str, records: list[dict[str, Any]], redactor: Redactor) -> JobStatus:
    """A job's runs from its Meltano records: the tasks of one `meltano run` share a run id;
    a run failed when any task failed (Meltano stops at the first failed task)."""
    runs: dict[str, dict[str, Any]] = {}
    for record in records:
        run = runs.setdefault(record["run_id"], {"run_id": record["run_id"], "states": [],
                                                 "started_at": record["started_at"],
                                                 "ended_at": None, "error": None,
                                                 "meltano": False})
        run["states"].append(record["state"])
        run["meltano"] = run["meltano"] or record.get("state_id") is not None
        run["started_at"] = min(_utc(run["started_at"]), _utc(record["started_at"]))
        if record["ended_at"] is not None:
            run["ended_at"] = max(filter(None, (_utc(run["ended_at"]),
                                                _utc(record["ended_at"]))))
        if record.get("error"):
            run["error"] = redactor.redact(str(record["error"]))[:500]
    ordered = sorted(runs.values(), key=lambda run: run["started_at"], reverse=True)
    for run in ordered:
        states = set(run.pop("states"))
        run["status"] = ("failed" if states & {"FAIL", "DEAD"} else
                         "running" if "RUNNING" in states else "success")
        if run["status"] == "failed" and not run.pop("meltano") and not run["error"]:
            run["error"] = ("meltano run failed before its first task started (Meltano kept "
                            "no record: a setting it could not read?)")
        run.pop("meltano", None)
    successes = [run for run in ordered if run["status"] == "success"]
    finished = [run for run in ordered if run["status"] != "running"]
    failing = 0
    for run in finished:
        if run["status"] != "failed":
            break
        failing += 1
    return JobStatus(
        job=job, last_run=ordered[0] if ordered else None,
        last_success=successes[0] if successes else None, failing_in_a_row=failing,
        failing_since=finished[failing - 1]["started_at"] if failing else None,
        last_error=finished[0]["error"] if failing else None)


#: ml-connector run's own records (JSON lines), next to the notifications' state.
RUNS_FILE = "runs.jsonl"
_RUNS_FILE_MAX = 1_000_000  # bytes; then only the newest _RUNS_KEPT lines are kept
_RUNS_KEPT = 2_000


def runs_file(project_root: Path) -> Path:
    from ml_connector.notify import state_dir

    settings = connector_settings(project_root)
    return state_dir(project_root, ledger_url_for(project_root, settings, None)) / RUNS_FILE


def record_run(project_root: Path, environment: str | None, job: str, run_id: str,
               started_at: datetime, ended_at: datetime, exit_code: int) -> None:
    """One `ml-connector run` that started Meltano: its exit code is the run's outcome even
    when Meltano recorded nothing (it failed before its first task)."""
    path = runs_file(project_root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = json.dumps({"environment": environment, "job": job, "run_id": run_id,
                       "started_at": started_at.isoformat(), "ended_at": ended_at.isoformat(),
                       "exit_code": exit_code}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(line)  # one write of one line: appends of concurrent runs stay whole
    if path.stat().st_size > _RUNS_FILE_MAX:
        kept = path.read_text().splitlines(keepends=True)[-_RUNS_KEPT:]
        temporary = path.with_suffix(".tmp")
        temporary.write_text("".join(kept))
        temporary.replace(path)


def recorded_runs(project_root: Path, environment: str | None, job: str
                  ) -> list[dict[str, Any]]:
    """The job's `ml-connector run` records, shaped as Meltano's (`MeltanoRuns.history`)."""
    path = runs_file(project_root)
    found = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            run = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if run.get("job") != job or run.get("environment") != environment:
            continue
        failed = run.get("exit_code") != 0
        found.append({"state_id": None, "run_id": run["run_id"],
                      "state": "FAIL" if failed else "SUCCESS",
                      "started_at": datetime.fromisoformat(run["started_at"]),
                      "ended_at": datetime.fromisoformat(run["ended_at"]),
                      "exit_code": run.get("exit_code")})
    return found


def read_jobs(project_root: Path, environment: str | None, redactor: Redactor
              ) -> list[JobStatus]:
    """Every job of meltano.yml with its runs: Meltano's records, and ml-connector run's own
    (a run Meltano failed before its first task has only those)."""
    from meltano.core.task_sets_service import TaskSetsService

    from ml_connector.run import MeltanoRuns

    runs = MeltanoRuns(project_root, environment)
    jobs = [task_set.name for task_set in TaskSetsService(runs.project).list_task_sets()]
    return [job_status(job, runs.history(runs.state_ids(job))
                       + recorded_runs(project_root, environment, job), redactor)
            for job in jobs]


def _remedy(stream: str, error: str | None, business_id: str) -> list[str]:
    """The fix (ml_connector_core.remedies, the same advice as `audit failures`), the command
    on a line of its own so it can be copied."""
    from ml_connector_core.remedies import remedy

    text = remedy(stream, error, business_id)
    fix, then, command = text.rpartition(", then: ")
    return [f"{fix}, then:", command] if then else [text]


def _invoice_title(read: dict[str, Any] | None, invoice_id: str) -> tuple[str, str]:
    """(business id, title) of a Basware invoice from its last read payload."""
    if not read:
        return invoice_id, f"invoice {invoice_id} (Basware id; its details were not kept)"
    number = str(read.get("invoiceNumber") or invoice_id)
    vendor = read.get("supplierName") or "?"
    parts = [f"invoice {number}", f"vendor {vendor} ({read.get('supplierCode', '?')})"]
    if read.get("companyCode"):
        parts.append(f"company {read['companyCode']}")
    if read.get("grossSum") is not None:
        parts.append(f"{read['grossSum']} {read.get('currencyCode') or ''}".strip())
    return number, ", ".join(parts)


def _record_title(failure: Any) -> str:
    """`vendor SAMLTD/1600 Rheinland Industrietechnik GmbH`: kind, business id, name."""
    what = MASTER_DATA_STREAMS.get(failure.stream, failure.stream)
    name = failure.business_ids.get("name")
    return f"{what} {failure.business_id}" + (f" {name}" if name else "")


def read_ledger(ledger: Any, now: datetime, thresholds: Thresholds) -> list[Item]:
    """Invoices unanswered and TransferFailed, master data refused: oldest first each."""
    items: list[Item] = []
    unanswered = ledger.unanswered(INVOICE_STREAM, ANSWER_STREAM)
    answers = ledger.latest_entries(ANSWER_STREAM, actions=["responded"])
    failed = {key: entry for key, entry in answers.items()
              if isinstance(entry.payload, dict) and entry.payload.get("success") is False}
    reads = ledger.latest_entries(INVOICE_STREAM, keys=[*unanswered, *failed],
                                  actions=["read"])

    def item(kind: str, key: str, title: str, since: datetime, limit: timedelta,
             business_id: str, reason: str | None = None, fix: list[str] | None = None
             ) -> Item:
        age = now - since
        return Item(id=f"{kind}:{key}", kind=kind, title=title, since=since,
                    age_seconds=age.total_seconds(), threshold_seconds=limit.total_seconds(),
                    problem=age > limit, reason=reason, fix=fix or [],
                    business_id=business_id)

    open_failures = ledger.open_failures()
    # An answer tap-basware could not send (OutcomesNotSent) says why, and what to do.
    not_sent = {f.source_key: f for f in open_failures if f.stream == ANSWER_STREAM}
    for key, since in sorted(unanswered.items(), key=lambda pair: pair[1]):
        read = reads.get(key)
        number, title = _invoice_title(read.payload if read else None, key)
        failure = not_sent.get(key)
        if failure is not None and failure.last_failed_at >= since:
            reason = failure.error.split("\n")[0]
            fix = _remedy(ANSWER_STREAM, reason, number)
        else:
            reason = "acknowledged in Basware (TransferInProgress), no transfer response sent"
            fix = ["the next invoices run answers it (it is read again and found in Sage, "
                   "or created); if runs are failing, fix that first:",
                   "ml-connector run invoices"]
        items.append(item("unanswered", key, title, since, thresholds.unanswered_after,
                          number, reason=reason, fix=fix))
    created = ledger.latest_entries(SAGE_STREAM, keys=failed, actions=["created", "unchanged"])
    in_sage_now = set(created) - {f.source_key for f in open_failures
                                  if f.stream == SAGE_STREAM}
    for key, answer in sorted(failed.items(), key=lambda pair: pair[1].id or 0):
        read = reads.get(key)
        number, title = _invoice_title(read.payload if read else None, key)
        reason = str(answer.payload.get("responseMessage") or "") or None
        if key in in_sage_now:
            # Created in Sage since (a retry), but this tenant took no answer on a
            # TransferFailed invoice (tap-basware said so): only P2P can reopen it.
            fix = [f"it is in Sage 300 now; in Basware, send invoice {number} to transfer "
                   "again, then the next run answers it Transferred (nothing created twice):",
                   "ml-connector run invoices"]
        else:
            fix = _remedy(SAGE_STREAM, reason, number)
        items.append(item("transfer_failed", key, title, answer.created_at,
                          thresholds.transfer_failed_after, number, reason=reason, fix=fix))
    for failure in open_failures:
        if failure.stream not in MASTER_DATA_STREAMS:
            continue
        error = failure.error.split("\n")[0] or None
        items.append(item("rejected", f"{failure.stream}:{failure.source_key}",
                          _record_title(failure), failure.first_failed_at,
                          thresholds.rejected_after, failure.business_id, reason=error,
                          fix=_remedy(failure.stream, error, failure.business_id)))
    return items


def job_items(jobs: list[JobStatus], now: datetime, thresholds: Thresholds,
              environment: str | None, stale: bool = True) -> list[Item]:
    """Jobs failing in a row, and (with `stale`) jobs without a recent success. Their ids
    name the environment: prod's invoices job is not the sandbox's."""
    items = []
    at = f"@{environment}" if environment else ""
    for job in jobs:
        if job.failing_in_a_row and job.failing_since:
            age = now - job.failing_since
            items.append(Item(
                id=f"failing_runs:{job.job}{at}", kind="failing_runs",
                title=f"job {job.job}: {job.failing_in_a_row} failed run(s) in a row",
                since=job.failing_since, age_seconds=age.total_seconds(),
                threshold_seconds=float(thresholds.failed_runs),
                problem=job.failing_in_a_row >= thresholds.failed_runs,
                reason=f"{job.last_error or 'failed'} (Meltano's words; the run's log says "
                       "why)",
                fix=["`ml-connector check` names what to fix; then:",
                     f"ml-connector run {job.job}"], business_id=job.job))
        limit = thresholds.stale_after.get(job.job)
        if not stale or limit is None:
            continue
        success = job.last_success
        since = _utc(success["ended_at"] or success["started_at"]) if success else None
        if since is None or now - since > limit:
            age = now - since if since else None
            items.append(Item(
                id=f"stale:{job.job}{at}", kind="stale",
                title=(f"job {job.job}: no successful run for {describe_duration(age)}"
                       if age else f"job {job.job}: never ran successfully"),
                since=since or now, age_seconds=age.total_seconds() if age else 0.0,
                threshold_seconds=limit.total_seconds(), problem=True,
                reason=None if job.failing_in_a_row else "is it scheduled? (cron, CI, "
                "webhooks: docs/operations.md, \"Schedules\")",
                fix=[f"ml-connector run {job.job}"], business_id=job.job))
    return items


def collect(project_root: Path, environment: str | None, ledger_url: str | None,
            thresholds: Thresholds, *, now: datetime | None = None, stale: bool = True
            ) -> Status:
    """Everything `status` shows. MeltanoError when Meltano's records cannot be read; a
    ledger that cannot be opened is reported in the status (and is a problem)."""
    now = now or datetime.now(UTC)
    redactor = Redactor([])
    try:
        jobs = read_jobs(project_root, environment, redactor)
    except MeltanoError:
        raise
    except Exception as exc:  # noqa: BLE001 - Meltano's own errors: the project or its DB
        raise MeltanoError(f"cannot read Meltano's run records: {type(exc).__name__}: "
                           f"{redactor.redact(str(exc))[:300]}") from exc
    items = job_items(jobs, now, thresholds, environment, stale=stale)
    ledger_error = None
    try:
        from ml_connector_core.ledger import Ledger

        with Ledger.open(ledger_url) as ledger:
            items += read_ledger(ledger, now, thresholds)
    except Exception as exc:  # noqa: BLE001 - said in the status, never a traceback
        ledger_error = f"{type(exc).__name__}: {redactor.redact(str(exc))[:300]}"
        items.append(Item(id="ledger", kind="ledger", title="the ledger cannot be read",
                          since=now, age_seconds=0.0, threshold_seconds=0.0, problem=True,
                          reason=ledger_error,
                          fix=["check ML_CONNECTOR_LEDGER_URL (or --ledger-url)"]))
    return Status(now, environment, jobs, items, thresholds, ledger_error)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # Meltano and the ledger store UTC, naive
    return value


# --------------------------------------------------------------------------- showing


_SECTIONS = (
    ("failing_runs", "Jobs failing"),
    ("stale", "Jobs without a recent successful run"),
    ("unanswered", "Invoices acknowledged in Basware, no transfer response sent yet"),
    ("transfer_failed", "Invoices answered TransferFailed, waiting for someone to act"),
    ("rejected", "Master data refused, not sent since"),
    ("ledger", "Ledger"),
)


#: How each kind says its age.
AGE_PHRASES = {"failing_runs": "failing for {}", "stale": "threshold passed",
        "unanswered": "unanswered for {}", "transfer_failed": "TransferFailed for {}",
        "rejected": "refused {} ago", "ledger": "now"}


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{_utc(moment):%Y-%m-%d %H:%M} UTC ({describe_duration(now - _utc(moment))} ago)"


def render(status: Status, limit: int = 50) -> str:
    """The human report: jobs, then each kind of waiting item with reason, age and fix."""
    now = status.checked_at
    where = f" ({status.environment})" if status.environment else ""
    lines = [f"ml-connector status{where} at {now:%Y-%m-%d %H:%M} UTC", "", "Jobs"]
    for job in status.jobs:
        last = job.last_run
        state = f"{last['status']}, started {_when(last['started_at'], now)}" if last \
            else "never ran"
        success = job.last_success
        lines.append(f"  {job.job:<12} last run: {state}")
        lines.append(f"  {'':<12} last success: "
                     f"{_when(success['ended_at'] or success['started_at'], now) if success else 'never'}")
    t = status.thresholds
    for kind, heading in _SECTIONS:
        found = [item for item in status.items if item.kind == kind]
        if not found:
            continue
        lines += ["", f"{heading} ({len(found)}):"]
        for item in found[:limit]:
            mark = "PROBLEM" if item.problem else "waiting"
            lines.append(f"  {mark:<7}  {item.title}  "
                         f"({AGE_PHRASES[kind].format(describe_duration(item.age_seconds))})")
            if item.reason:
                lines.append(f"           why: {item.reason}")
            for number, step in enumerate(item.fix):
                lines.append(f"           {'fix: ' if number == 0 else '     '}{step}")
        if len(found) > limit:
            lines.append(f"  ... and {len(found) - limit} more (--json lists all)")
    if not status.items:
        lines += ["", "Nothing waits: no invoice unanswered or failed, no master data refused."]
    stale = ", ".join(f"{job} {describe_duration(d)}" for job, d in t.stale_after.items())
    lines += ["", f"Thresholds: no success for ({stale}); unanswered "
                  f"{describe_duration(t.unanswered_after)}; TransferFailed "
                  f"{describe_duration(t.transfer_failed_after)}; refused master data "
                  f"{describe_duration(t.rejected_after)}; {t.failed_runs} failed runs in a "
                  "row (flags or ML_CONNECTOR_* settings: docs/operations.md)"]
    problems = status.problems
    lines.append(f"VERDICT: {'PROBLEMS' if problems else 'OK'} — "
                 + (f"{len(problems)} past their threshold" if problems else
                    "nothing past its threshold"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_project_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (for monitoring)")
    parser.add_argument("--notify", action="store_true",
                        help="send each new problem once (and resolved ones) to the "
                             "configured webhook and/or e-mail (for cron)")
    parser.add_argument("--quiet", action="store_true",
                        help="print no report (cron: with --notify, mail only what could not "
                             "be sent)")
    parser.add_argument("--ledger-url", help="default: $ML_CONNECTOR_LEDGER_URL, else the "
                                             "project's .ml-connector/ledger.sqlite")
    parser.add_argument("--stale-after", action="append", metavar="JOB=DURATION",
                        help="a problem when JOB had no successful run for this long "
                             "(default invoices=2h, master-data=3h, payments=26h; "
                             "repeatable)")
    parser.add_argument("--unanswered-after", type=_duration_arg, metavar="DURATION",
                        help="an invoice acknowledged and not answered for this long "
                             "(default 30m)")
    parser.add_argument("--transfer-failed-after", type=_duration_arg, metavar="DURATION",
                        help="an invoice answered TransferFailed this long ago (default 4h)")
    parser.add_argument("--rejected-after", type=_duration_arg, metavar="DURATION",
                        help="master data refused this long ago (default 24h)")
    parser.add_argument("--failed-runs", type=int, metavar="N",
                        help="this many failed runs of a job in a row (default 2)")


def ledger_url_for(project_root: Path, settings: Mapping[str, str], explicit: str | None
                   ) -> str:
    """--ledger-url, ML_CONNECTOR_LEDGER_URL (environment or .env), else the project's file
    (where the plugins put it by default)."""
    if explicit:
        return explicit
    if settings.get("ML_CONNECTOR_LEDGER_URL"):
        return settings["ML_CONNECTOR_LEDGER_URL"]
    directory = project_root / ".ml-connector"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{(directory / 'ledger.sqlite').resolve()}"


def main(args: argparse.Namespace) -> int:
    try:
        root, environment = project_from_args(args)
        settings = connector_settings(root)
        thresholds = Thresholds.from_settings(settings, args)
        ledger_url = ledger_url_for(root, settings, args.ledger_url)
        status = collect(root, environment, ledger_url, thresholds)
    except (MeltanoError, OSError, ValueError) as exc:
        print(f"ml-connector status: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json:
        json.dump(status.as_json(), sys.stdout, indent=2)
        print()
    elif not args.quiet:
        print(render(status))
    if args.notify:
        from ml_connector import notify

        try:
            notify.notify_status(root, ledger_url, settings, status,
                                 out=io.StringIO() if args.quiet else sys.stdout)
        except ValueError as exc:  # a malformed ML_CONNECTOR_NOTIFY_* setting
            print(f"ml-connector status: {exc}", file=sys.stderr)
            return EXIT_UNREADABLE
    if status.ledger_error:
        return EXIT_UNREADABLE
    return status.exit_code()
