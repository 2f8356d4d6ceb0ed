"""`ml-connector plan`: what the next master-data, invoices and payments runs would do, writing
nothing.

Each job's tap is piped into its target exactly as `meltano run` would (same settings, stream
maps, catalog selection), with the target in dry run (`dry_run: true`, see
ml_connector_core/dryrun.py). The target then checks its contract, compares with the ledger,
makes its read-only look-ups, and gives every record a verdict instead of writing:

- master-data: tap-sage300 reads from the job's saved Meltano state (what the next run would
  read; `--full` reads everything), target-basware says create / update / skip / reject;
  every stream the tap selects is planned, tax codes among them; a goods receipt
  (po_receipts -> goods_receipts) goes inside the order lines it received and gets their
  verdict: create when one of them is sent, skip when all are unchanged;
- payments: tap-sage300--payments reads the posted AP documents whose payments moved since
  the job's saved state, target-basware says which of the connector's invoices get a
  payment response (create, with the cumulative paidTotal) and which were answered with this
  payment state already (skip);
- invoices: tap-basware peeks at the approved-invoice queue with `acknowledge: false` (GETs
  only: nothing leaves the queue), target-sage300 says create / skip (already in Sage) / reject
  (e.g. an unknown GL account). The transfer responses the next run would send first are read
  from the saved state and counted; invoices a stopped run acknowledged but never answered
  (`TransferInProgress` with no outcome) are peeked too (`read_in_progress`) and listed, as
  the next run reads them again.

Nothing is written to Sage 300, Basware, the ledger or Meltano's state: the targets' dry run
makes no write call, no ledger entry and no STATE, and the taps' own ledger entries (reads,
records they reject) go to a scratch ledger in a temporary folder, from which the plan takes
the tap's rejections.

The plugins run as processes through `meltano invoke`, so no plugin code is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml_connector.project_config import (
    MeltanoError,
    add_project_arguments,
    meltano_command,
    meltano_env,
    prepare_system_database,
    project_from_args,
    run_meltano,
)
from ml_connector_core.dryrun import CREATE, REJECT, SKIP, UPDATE, VERDICTS, Verdict, read_verdicts
from ml_connector_core.ledger import Action, Ledger
from ml_connector_core.outcome_handover import (
    INLINE_KEY,
    missing_runs,
    missing_runs_message,
    pending_replies,
    pending_runs,
    recoverable_runs,
    run_ledgers,
)
from ml_connector_core.settings import configured_ledger_url

MAX_LISTED_REJECTS = 100  # in the text output; --format json lists all
MAX_LISTED_IN_PROGRESS = 20  # likewise
INVOICE_STREAM = "accounting_documents"  # tap-basware's stream of the approved-invoice queue
IN_PROGRESS = "TransferInProgress"


@dataclass(frozen=True)
class Job:
    name: str
    tap: str
    target: str
    reads: str  # how the plan reads the source, for the reader of the output


JOBS = {
    "master-data": Job("master-data", "tap-sage300", "target-basware",
                       "Sage 300 records changed since the last run (the job's saved state)"),
    "invoices": Job("invoices", "tap-basware", "target-sage300",
                    "Basware's approved-invoice queue, peeked without acknowledging"),
    "payments": Job("payments", "tap-sage300--payments", "target-basware",
                    "Sage 300's posted AP documents paid since the last run (the job's saved "
                    "state)"),
}
#: `--job all` (the default) plans every job; `both`, its name when there were two, too.
ALL_JOBS = ("all", "both")


class PlanError(Exception):
    """A job could not be planned (its tap or target failed, or Meltano did)."""


@dataclass
class JobPlan:
    job: Job
    reads: str
    verdicts: list[Verdict] = field(default_factory=list)
    transfer_responses: dict[str, int] | None = None  # invoices: answers pending in the state
    # invoices: acknowledged by an earlier run that never answered them: read again
    in_progress: list[str] | None = None
    error: str | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Per stream: how many records get each verdict."""
        table: dict[str, dict[str, int]] = {}
        for verdict in self.verdicts:
            table.setdefault(verdict.stream, dict.fromkeys(VERDICTS, 0))[verdict.verdict] += 1
        return dict(sorted(table.items()))

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(VERDICTS, 0)
        for verdict in self.verdicts:
            totals[verdict.verdict] += 1
        return totals

    def skip_reasons(self) -> dict[str, int]:
        reasons = Counter(_reason_kind(v.reason) for v in self.verdicts if v.verdict == SKIP)
        return dict(reasons.most_common())

    def rejects(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict == REJECT]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tap": self.job.tap, "target": self.job.target, "reads": self.reads,
            "error": self.error, "streams": self.counts(), "totals": self.totals(),
            "skip_reasons": self.skip_reasons(),
            "transfer_responses_pending": self.transfer_responses,
            "in_progress_read_again": self.in_progress,
            "rejects": [asdict(v) for v in self.rejects()],
            "records": [asdict(v) for v in self.verdicts if v.verdict in (CREATE, UPDATE)],
        }


def _reason_kind(reason: str | None) -> str:
    """A skip reason without the record's own numbers ("Already in Sage 300 company X, batch
    12 entry 3 (found by ...)" -> "Already in Sage 300"), to count skips by cause."""
    text = reason or "no reason given"
    return re.split(r" company | \(|,", text, maxsplit=1)[0]


# --------------------------------------------------------------------------- running a job


@dataclass(frozen=True)
class Project:
    root: Path
    environment: str | None
    timeout: float

    def state(self, job: Job) -> dict[str, Any]:
        """The job's saved state, as `meltano run` would hand it to the tap ({} if none).

        The state id is Meltano's `<environment>:<tap>-to-<target>`; without an active
        environment `meltano run` keeps no state.
        """
        if not self.environment:
            return {}
        state_id = f"{self.environment}:{job.tap}-to-{job.target}"
        result = run_meltano(self.root, self.environment, ["state", "get", state_id],
                             what=f"state get {state_id}")
        try:
            state = json.loads(result.stdout or "{}")
        except ValueError as exc:
            raise MeltanoError(f"`meltano state get {state_id}` did not print JSON") from exc
        if isinstance(state, dict) and isinstance(state.get("singer_state"), dict):
            state = state["singer_state"]  # Meltano's envelope around what the tap receives
        return state if isinstance(state, dict) else {}


def plan_job(project: Project, job: Job, full: bool) -> JobPlan:
    with tempfile.TemporaryDirectory(prefix="ml-connector-plan-") as folder:
        work = Path(folder)
        try:
            return _plan_job(project, job, full, work)
        except (PlanError, MeltanoError) as exc:
            return JobPlan(job, job.reads, error=str(exc))


def _plan_job(project: Project, job: Job, full: bool, work: Path) -> JobPlan:
    tap_env, target_env = _plugin_env(job.tap), _plugin_env(job.target)
    report = work / "verdicts.jsonl"
    scratch_ledger = f"sqlite:///{work / 'tap-ledger.sqlite'}"
    tap_settings = {"LEDGER_URL": scratch_ledger}
    tap_args = ["invoke", job.tap]
    plan = JobPlan(job, job.reads)
    state = project.state(job)
    if job.name == "invoices":
        # The queue is the invoices job's cursor (its state holds no position to resume
        # from), so the peek reads every waiting invoice, and those in progress that the next
        # run reads again. The outcomes of the last run are only counted: answering them is
        # a write.
        tap_settings["ACKNOWLEDGE"] = "false"
        tap_settings["READ_IN_PROGRESS"] = "true"
        plan.transfer_responses, answered = _pending_answers(project, job, state)
    elif full or not state:
        plan.reads = ("every posted AP document (no saved state used)" if job.name == "payments"
                      else "every Sage 300 record (no saved state used)")
    else:
        # `meltano invoke` passes neither state nor the selected catalog when given
        # arguments, so both are handed over explicitly (the tap's CLI takes the last
        # --catalog / --state given).
        catalog = run_meltano(project.root, project.environment,
                              ["invoke", "--dump=catalog", job.tap],
                              what=f"invoke --dump=catalog {job.tap}", timeout=project.timeout)
        (work / "catalog.json").write_text(catalog.stdout)
        (work / "state.json").write_text(json.dumps(state))
        tap_args += ["--catalog", str(work / "catalog.json"),
                     "--state", str(work / "state.json")]
    _pipe(project, work, tap_args, {f"{tap_env}_{k}": v for k, v in tap_settings.items()},
          ["invoke", job.target], {f"{target_env}_DRY_RUN": "true",
                                   f"{target_env}_DRY_RUN_REPORT": str(report)}, job)
    plan.verdicts = _tap_rejections(job.tap, scratch_ledger) + read_verdicts(report)
    if job.name == "invoices":
        # An in-progress invoice whose outcome is pending is answered first, not read again.
        plan.verdicts = [v for v in plan.verdicts if v.key not in answered]
        plan.in_progress = sorted(key for key in _in_progress_reads(scratch_ledger)
                                  if key not in answered)
    return plan


def _pending_answers(project: Project, job: Job, state: dict[str, Any]
                     ) -> tuple[dict[str, int], set[str]]:
    """How the outcomes the state names will be answered (Transferred or TransferFailed), and
    the invoices they answer."""
    counts = Counter({"Transferred": 0, "TransferFailed": 0})
    answered: set[str] = set()

    def count(invoice_id: str, reply: Any) -> None:
        success = reply.get("success") if isinstance(reply, dict) else None
        if isinstance(success, bool):  # a malformed one is dropped, the invoice read again
            counts["Transferred" if success else "TransferFailed"] += 1
            answered.add(invoice_id)

    inline = state.get(INLINE_KEY)
    for invoice_id, reply in (inline.items() if isinstance(inline, dict) else ()):
        count(str(invoice_id), reply)
    if runs := pending_runs(state):
        config = json.loads(run_meltano(
            project.root, project.environment, ["invoke", "--dump=config", job.tap],
            what=f"invoke --dump=config {job.tap}", timeout=project.timeout).stdout)
        ledger_url = configured_ledger_url(config, default=False) or \
            f"sqlite:///{(project.root / '.ml-connector' / 'ledger.sqlite').resolve()}"
        with Ledger.open(ledger_url) as ledger:
            if missing := missing_runs(ledger, runs):
                # Runs an older copy of this ledger lacks are dropped by the next run, which
                # reads their invoices again from TransferInProgress (listed as such here).
                lost = set(recoverable_runs(ledger, missing, state))
                if unknown := [run_id for run_id in missing if run_id not in lost]:
                    named = run_ledgers(state)
                    raise PlanError(missing_runs_message(
                        unknown, ledger_url, ":".join(filter(None, (
                            project.environment, f"{job.tap}-to-{job.target}"))),
                        {run_id: named[run_id] for run_id in unknown if run_id in named}))
                runs = {run_id: cursor for run_id, cursor in runs.items() if run_id not in lost}
            for entry in pending_replies(ledger, runs):
                count(entry.source_key, entry.reply)
    return dict(counts), answered


def _plugin_env(plugin: str) -> str:
    return plugin.upper().replace("-", "_")


def _tap_rejections(tap: str, ledger_url: str) -> list[Verdict]:
    """Records the tap itself refused (e.g. an empty key field), from its scratch ledger."""
    with Ledger.open(ledger_url) as ledger:
        replay = ledger.replayable(failed_only=True)
    return [Verdict(entry.stream, entry.source_key, REJECT, str(entry.error or ""), None, tap)
            for entry in replay.entries if entry.action == Action.REJECTED]


def _in_progress_reads(ledger_url: str) -> list[str]:
    """The invoices the tap read from TransferInProgress, from its scratch ledger."""
    with Ledger.open(ledger_url) as ledger:
        reads = ledger.replayable(stream=INVOICE_STREAM, failed_only=False).entries
    return [entry.source_key for entry in reads if entry.action == Action.READ
            and isinstance(entry.payload, dict)
            and entry.payload.get("processingStatus") == IN_PROGRESS]


def _pipe(project: Project, work: Path, tap_args: list[str], tap_env: dict[str, str],
          target_args: list[str], target_env: dict[str, str], job: Job) -> None:
    """`tap | target`, each through `meltano invoke`, in their own process groups."""
    tap_log, target_log = work / "tap.log", work / "target.log"
    with tap_log.open("w") as tap_err, target_log.open("w") as target_err, \
            (work / "target.out").open("w") as target_out:
        tap = subprocess.Popen(meltano_command(project.environment, *tap_args),
                               cwd=project.root, env=meltano_env(tap_env),
                               stdout=subprocess.PIPE, stderr=tap_err, start_new_session=True)
        target = subprocess.Popen(meltano_command(project.environment, *target_args),
                                  cwd=project.root, env=meltano_env(target_env),
                                  stdin=tap.stdout, stdout=target_out, stderr=target_err,
                                  start_new_session=True)
        assert tap.stdout is not None
        tap.stdout.close()  # the target holds the pipe; the tap sees it close if it dies
        deadline = time.monotonic() + project.timeout
        try:
            for process in (target, tap):
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for process in (tap, target):
                _stop(process)
            raise PlanError(f"the {job.name} plan did not finish in {project.timeout:g} s "
                            "(--timeout)") from None
    for plugin, process, log in ((job.tap, tap, tap_log), (job.target, target, target_log)):
        if process.returncode != 0:
            raise PlanError(f"{plugin} failed (exit {process.returncode}), nothing was "
                            f"written: {_failure(log)}")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # our own process group (start_new_session)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_MELTANO_PREFIX = re.compile(r"^\S+ \[\w+\s*\] (meltano\s+|\S+\s+)?")
_EXCEPTION = re.compile(r"^(?:[\w]+\.)*(\w*(?:Error|Exception|Exit)\w*: .+)")


def _failure(log: Path) -> str:
    """What a failed plugin said last: its final exception, else the end of its log, without
    Meltano's prefixes. The plugins redact their own secrets; Meltano prints no values."""
    lines = [_MELTANO_PREFIX.sub("", line).strip()
             for line in log.read_text(errors="replace").splitlines() if line.strip()]
    causes = [match[1] for match in map(_EXCEPTION.match, lines) if match]
    if causes:
        return causes[-1][:1000]
    return " / ".join(line[:300] for line in lines[-5:]) or "no log output"


# --------------------------------------------------------------------------- output


def render_text(plans: list[JobPlan], environment: str | None) -> str:
    out = [f"ml-connector plan ({environment or 'no environment'}): what the next runs would "
           "do. Nothing was written to Sage 300, Basware, the ledger or Meltano's state."]
    rejects: list[tuple[str, Verdict]] = []
    for plan in plans:
        out += ["", f"{plan.job.name} ({plan.job.tap} -> {plan.job.target}), reading "
                    f"{plan.reads}"]
        if plan.error:
            out.append(f"  NOT PLANNED: {plan.error}")
            out.append("  (`ml-connector check` tests every connection setting)")
            continue
        counts = plan.counts()
        if counts:
            width = max([len("stream"), len("total"), *map(len, counts)])
            out.append(f"  {'stream':<{width}}  " + "  ".join(f"{v:>6}" for v in VERDICTS))
            for stream, row in [*counts.items(), ("total", plan.totals())]:
                out.append(f"  {stream:<{width}}  "
                           + "  ".join(f"{row[v]:>6}" for v in VERDICTS))
        else:
            out.append("  no records to read")
        for reason, n in plan.skip_reasons().items():
            out.append(f"  skip: {n} {reason}")
        if plan.transfer_responses is not None:
            answers = plan.transfer_responses
            out.append(f"  transfer responses the next run sends first (outcomes of the last "
                       f"run): {answers['Transferred']} Transferred, "
                       f"{answers['TransferFailed']} TransferFailed")
        if plan.in_progress:
            shown = ", ".join(plan.in_progress[:MAX_LISTED_IN_PROGRESS])
            more = len(plan.in_progress) - MAX_LISTED_IN_PROGRESS
            out.append(f"  read again: {len(plan.in_progress)} invoice(s) an earlier run "
                       f"acknowledged and never answered ({IN_PROGRESS}; their verdicts "
                       f"are counted above): {shown}" + (f" ... and {more} more" if more > 0
                                                         else ""))
        rejects += [(plan.job.name, v) for v in plan.rejects()]
    if rejects:
        out += ["", f"rejected ({len(rejects)}): fix these in the source, or they stay out"]
        for job_name, verdict in rejects[:MAX_LISTED_REJECTS]:
            out.append(f"  {job_name}  {verdict.stream}  {verdict.key}  {verdict.reason}")
        if len(rejects) > MAX_LISTED_REJECTS:
            out.append(f"  ... and {len(rejects) - MAX_LISTED_REJECTS} more "
                       "(--format json lists them all)")
    return "\n".join(out)


def render_json(plans: list[JobPlan], environment: str | None) -> str:
    return json.dumps({"environment": environment, "written": False,
                       "jobs": {plan.job.name: plan.as_dict() for plan in plans}}, indent=2)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", choices=[*JOBS, *ALL_JOBS], default="all",
                        help="the job to plan (default: all of them)")
    parser.add_argument("--full", action="store_true",
                        help="master-data, payments: compare every Sage record with the "
                             "ledger, not only those the next run would read")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    add_project_arguments(parser)
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds per job before the plan gives up (default 3600)")


def main(args: argparse.Namespace) -> int:
    try:
        root, environment = project_from_args(args)
    except (MeltanoError, OSError) as exc:
        print(f"ml-connector plan: {exc}", file=sys.stderr)
        return 2
    project = Project(root, environment, args.timeout)
    jobs = list(JOBS.values()) if args.job in ALL_JOBS else [JOBS[args.job]]
    if len(jobs) > 1:
        try:
            prepare_system_database(root, environment)
        except MeltanoError as exc:
            print(f"ml-connector plan: {exc}", file=sys.stderr)
            return 1
    # The jobs write nothing and each reads its own state: plan them side by side.
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        plans = list(pool.map(lambda job: plan_job(project, job, args.full), jobs))
    render = render_json if args.format == "json" else render_text
    print(render(plans, environment), flush=True)
    return 1 if any(plan.error for plan in plans) else 0
