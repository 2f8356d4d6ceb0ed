"""`ml-connector run <job>`: runs of one job wait for each other instead of failing, and a
killed run does not block the next one. Real `meltano run`s against the sandbox, each test in
a Meltano project of its own (tests/e2e.py).

Overlap is arranged, never timed: the test freezes the run holding the job (SIGSTOP on its
process group) until the other run says it waits, then lets it go on (SIGCONT). Whether two
runs overlapped is read from Meltano's own run records (first start and last end of each run
id), never from a clock in the test.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import (
    RUN_TIMEOUT,
    STATE_IDS,
    Project,
    connector_batches,
    kill,
    planted_secrets,
    project_copy,
    set_faults,
    snapshot,
    wait_until,
)

from ml_connector.project_config import MeltanoError
from ml_connector.run import EXIT_WAIT_TIMEOUT, JobRun, MeltanoRuns
from mlc_sandbox.data import BASWARE_CLIENT_ID, SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ml_connector.cli"]
JOB = "invoices"
STATE_ID = STATE_IDS[JOB]
#: The held answer of test_crash: Sage creates the batch and never answers before the kill.
HELD_BATCH = {"stall_seconds": 300, "schedule": [
    {"nth": 1, "fault": "stall_after", "method": "POST", "path": "APInvoiceBatches$"}]}


@dataclass
class ConnectorRun:
    """One `ml-connector run` in a process group of its own, its output in a log file."""

    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self) -> int:
        return self.process.wait(timeout=RUN_TIMEOUT)

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def meltano_run_id(self) -> str:
        """The run id it gave `meltano run` (as Meltano stores it: hex, no dashes)."""
        found = re.search(r"Meltano run id ([0-9a-f-]{36})", self.output())
        assert found, self.output()[-2000:]
        return uuid.UUID(found.group(1)).hex


@pytest.fixture
def start_run() -> Iterator[Callable[..., ConnectorRun]]:
    started: list[ConnectorRun] = []

    def start(project: Project, *args: str, name: str) -> ConnectorRun:
        log = project.workdir / "logs" / f"{name}.log"
        with log.open("w") as handle:
            process = subprocess.Popen([*CLI, "run", *args], cwd=ROOT, env=project.env,
                                       stdout=handle, stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
        started.append(ConnectorRun(process, log))
        return started[-1]

    yield start
    for run in started:  # a failed test leaves nothing running (or frozen) behind
        if run.process.poll() is None:
            run.signal_group(signal.SIGKILL)
            run.process.wait(timeout=60)


def wait_for(condition: Callable[[], Any], what: str, *alive: ConnectorRun) -> Any:
    """Poll until `condition` holds; fails when one of `alive` ends first (or on a hang)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (value := condition()):
        for run in alive:
            assert run.process.poll() is None, f"ended before {what}:\n{run.output()[-3000:]}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return value


# --------------------------------------------------------------------------- Meltano's records


def meltano_runs(database: Path, state_id: str = STATE_ID) -> list[dict[str, Any]]:
    """Meltano's run records of a state id, read straight from its system database."""
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT run_id, state, started_at, ended_at, payload FROM runs "
                              "WHERE job_name = ? ORDER BY id", (state_id,)).fetchall()
        except sqlite3.OperationalError:  # Meltano has not created its tables yet
            return []
    return [{**dict(row), "error": json.loads(row["payload"] or "{}").get("error")}
            for row in rows]


def project_runs(project: Project) -> list[dict[str, Any]]:
    return meltano_runs(project.workdir / "meltano.db")


def running_record(project: Project) -> str | None:
    """The run id of a record of the job marked RUNNING, if any."""
    return next((r["run_id"] for r in project_runs(project) if r["state"] == "RUNNING"), None)


def assert_one_after_the_other(rows: list[dict[str, Any]], runs: int) -> None:
    """`runs` run ids, all succeeded, and no run's tasks overlap another run's."""
    spans: dict[str, list[datetime]] = {}
    for row in rows:
        assert row["state"] == "SUCCESS", row
        span = spans.setdefault(row["run_id"], [])
        span += [datetime.fromisoformat(row["started_at"]), datetime.fromisoformat(row["ended_at"])]
    assert len(spans) == runs, spans
    ordered = sorted((min(s), max(s)) for s in spans.values())
    for (_, first_end), (second_start, _) in zip(ordered, ordered[1:], strict=False):
        assert first_end <= second_start, ordered


def assert_every_invoice_once(sandbox: Sandbox) -> None:
    """The demo's 27 good invoices are in Sage once each; every invoice answered once."""
    snap = snapshot(sandbox)
    assert sum(len(copies) for copies in snap.ap_invoices.values()) == 27
    assert all(len(copies) == 1 for copies in snap.ap_invoices.values())
    assert all(len(invoice["responses"]) == 1 for invoice in snap.invoices.values())


def no_secrets(texts: dict[str, str], sandbox: Sandbox) -> None:
    planted = planted_secrets(sandbox)
    assert [name for name, text in texts.items() if any(s in text for s in planted)] == []


# --------------------------------------------------------------------------- the tests


def test_meltano_api_the_runner_relies_on(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards against Meltano API changes: the state ids Meltano gives the jobs, its run records
    read and marked failed through meltano.core.job, and what `meltano run` then checks."""
    from meltano.core.job import Job, JobFinder, State

    env = {"MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
           "MELTANO_SYS_DIR_ROOT": str(tmp_path / "system"),
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           # Should a run ever start here, it reaches nothing.
           "TAP_BASWARE_BASE_URL": "http://127.0.0.1:9", "TARGET_SAGE300_BASE_URL":
           "http://127.0.0.1:9/Sage300WebApi/v1.0/-"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    meltano = str(Path(sys.executable).with_name("meltano"))
    subprocess.run([meltano, "state", "list"], cwd=ROOT, capture_output=True, timeout=120,
                   check=True)  # Meltano creates its system database

    runs = MeltanoRuns(ROOT, "sandbox")
    assert runs.state_ids("master-data") == [STATE_IDS["master-data"]]
    assert runs.state_ids("invoices") == [STATE_IDS["invoices"]]  # two tasks, one state id
    with pytest.raises(MeltanoError, match="no job 'nope'"):
        runs.state_ids("nope")

    # A record whose heartbeat is fresh: someone's `meltano run`; skipped or waited for.
    with runs._session() as session:
        now = datetime.now(UTC)
        live = str(Job(job_name=STATE_ID, state=State.RUNNING, started_at=now,
                       last_heartbeat_at=now).save(session).run_id)
    skip = subprocess.run([*CLI, "run", JOB, "--environment", "sandbox", "--if-running",
                           "skip"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert skip.returncode == 0, skip.stderr
    assert f"skipped: Meltano run {live} of {STATE_ID}" in skip.stderr
    wait = subprocess.run([*CLI, "run", JOB, "--environment", "sandbox", "--wait-timeout", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert wait.returncode == EXIT_WAIT_TIMEOUT, wait.stderr
    assert "heartbeat is fresh" in wait.stderr and "gave up after waiting 1 s" in wait.stderr
    assert [r["state"] for r in meltano_runs(tmp_path / "meltano.db")] == ["RUNNING"]

    # Its heartbeat stopped ten minutes ago: a killed run, marked failed with the reason.
    with runs._session() as session:
        job = JobFinder(STATE_ID).latest_running(session)
        job.last_heartbeat_at = datetime.now(UTC) - timedelta(minutes=10)
        job.save(session)
    out = io.StringIO()
    runner = JobRun(ROOT, "sandbox", JOB, if_running="wait", wait_timeout=60, out=out,
                    child_out=None)
    assert runner._clear_records(runs, [STATE_ID], previous=None) is False
    assert f"marked Meltano run {live} of {STATE_ID}" in out.getvalue()
    with runs._session() as session:
        assert JobFinder(STATE_ID).latest_running(session) is None  # what `meltano run` checks
    (row,) = meltano_runs(tmp_path / "meltano.db")
    assert row["state"] == "FAIL" and re.search(r"no heartbeat for 6\d\d s", row["error"])


def test_two_runs_started_together_run_one_after_the_other(
        fresh_sandbox: Sandbox, tmp_path: Path, start_run: Callable[..., ConnectorRun]) -> None:
    project = Project.create(fresh_sandbox, tmp_path)
    first, second = (start_run(project, JOB, name=f"together-{n}") for n in (1, 2))

    holder = wait_for(lambda: next((r for r in (first, second)
                                    if "starting meltano run" in r.output()), None),
                      "one run to take the job", first, second)
    other = second if holder is first else first
    wait_for(lambda: running_record(project), "Meltano to record the run", holder)
    holder.signal_group(signal.SIGSTOP)  # it cannot end before the other has seen it
    try:
        wait_for(lambda: f"waiting for a run of {JOB} (pid {holder.process.pid}"
                 in other.output(), "the other run to wait", other)
    finally:
        holder.signal_group(signal.SIGCONT)

    assert holder.wait() == 0, holder.output()[-3000:]
    assert other.wait() == 0, other.output()[-3000:]
    assert "already running" not in holder.output() + other.output()
    assert_one_after_the_other(project_runs(project), runs=2)
    assert_every_invoice_once(fresh_sandbox)
    no_secrets({run.log.name: run.output() for run in (first, second)}, fresh_sandbox)


def test_a_run_killed_with_sigkill_does_not_block_the_next(
        fresh_sandbox: Sandbox, tmp_path: Path, start_run: Callable[..., ConnectorRun]) -> None:
    """Killed whole (ml-connector, Meltano and the plugins) while Sage holds a batch create's
    answer: Meltano's record stays RUNNING. The next run marks it failed and completes."""
    project = Project.create(fresh_sandbox, tmp_path)
    set_faults(fresh_sandbox, HELD_BATCH, None)
    killed = start_run(project, JOB, name="killed")
    wait_for(lambda: connector_batches(fresh_sandbox), "Sage to create a batch", killed)
    killed.signal_group(signal.SIGKILL)
    killed.process.wait(timeout=60)
    killed_id = killed.meltano_run_id()
    assert [r["state"] for r in project_runs(project)] == ["RUNNING"]
    set_faults(fresh_sandbox, None, None)

    started = time.monotonic()
    after = start_run(project, JOB, name="after-kill")
    code = after.wait()
    print(f"the run after the kill took {time.monotonic() - started:.1f} s in all")

    assert code == 0, after.output()[-3000:]
    output = after.output()
    assert f"marked Meltano run {uuid.UUID(killed_id)} of {STATE_ID}" in output
    assert "waiting for" not in output and "already running" not in output
    rows = project_runs(project)
    assert rows[0]["run_id"] == killed_id and rows[0]["state"] == "FAIL"
    assert "was killed before Meltano could record the end of this run" in rows[0]["error"]
    assert_one_after_the_other(rows[1:], runs=1)
    assert_every_invoice_once(fresh_sandbox)


def test_a_killed_meltano_run_started_by_hand_is_marked_failed_once_its_heartbeat_stops(
        fresh_sandbox: Sandbox, tmp_path: Path, start_run: Callable[..., ConnectorRun]) -> None:
    """No ml-connector run knows this one's run id: its silent heartbeat tells it is dead."""
    project = Project.create(fresh_sandbox, tmp_path)
    set_faults(fresh_sandbox, HELD_BATCH, None)
    by_hand = project.start(JOB, name="by-hand")
    try:
        wait_until(lambda: connector_batches(fresh_sandbox), by_hand, "Sage to create a batch")
    finally:
        kill(by_hand)
    project.finish(by_hand)
    set_faults(fresh_sandbox, None, None)

    after = start_run(project, JOB, name="after-hand-run")

    assert after.wait() == 0, after.output()[-3000:]
    rows = project_runs(project)
    assert rows[0]["state"] == "FAIL" and "no heartbeat for" in rows[0]["error"]
    assert f"marked Meltano run {uuid.UUID(rows[0]['run_id'])}" in after.output()
    assert_one_after_the_other(rows[1:], runs=1)
    assert_every_invoice_once(fresh_sandbox)


def test_if_running_skip_exits_0_and_sigterm_reaches_meltano(
        fresh_sandbox: Sandbox, tmp_path: Path, start_run: Callable[..., ConnectorRun]) -> None:
    project = Project.create(fresh_sandbox, tmp_path)
    going = start_run(project, JOB, name="going")
    wait_for(lambda: running_record(project), "Meltano to record the run", going)
    going.signal_group(signal.SIGSTOP)
    try:
        skipped = subprocess.run([*CLI, "run", JOB, "--if-running", "skip"], cwd=ROOT,
                                 env=project.env, capture_output=True, text=True,
                                 timeout=RUN_TIMEOUT)
    finally:
        going.signal_group(signal.SIGCONT)

    assert skipped.returncode == 0, skipped.stderr
    (line,) = skipped.stderr.splitlines()
    assert f"skipped: a run of {JOB} (pid {going.process.pid} on " in line
    assert "the next run reads what this one would have" in line

    # SIGTERM to ml-connector alone: it passes it on, Meltano fails its own record and stops.
    going.process.send_signal(signal.SIGTERM)
    assert going.wait() != 0
    (row,) = project_runs(project)
    assert row["state"] == "FAIL" and row["error"] == "The process was terminated", row
    assert "ended with exit code" in going.output()


def test_a_webhook_run_and_a_scheduled_run_wait_for_each_other(
        fresh_sandbox: Sandbox, tmp_path: Path, start_run: Callable[..., ConnectorRun]) -> None:
    """The receiver runs the job through `ml-connector run` (no --command): a notification
    that arrives during a scheduled run waits for it instead of failing."""
    project = Project.create(fresh_sandbox, tmp_path)
    token = secrets.token_urlsafe(32)
    state_dir = tmp_path / "webhooks"
    receiver_log = (project.workdir / "logs" / "receiver.log").open("w")
    receiver = subprocess.Popen(
        [*CLI, "webhooks", "serve", "--port", "0", "--state-dir", str(state_dir)], cwd=ROOT,
        env={**project.env, "BASWARE_WEBHOOK_TOKEN": token}, stdout=subprocess.PIPE,
        stderr=receiver_log, text=True)
    try:
        assert receiver.stdout is not None
        url = receiver.stdout.readline().split()[2]
        scheduled = start_run(project, JOB, name="scheduled")
        wait_for(lambda: running_record(project), "Meltano to record the run", scheduled)
        scheduled.signal_group(signal.SIGSTOP)
        try:
            body = json.dumps({"taskId": str(uuid.uuid4()), "taskType": "AccountingDocuments",
                               "taskSubType": "WaitingForTransfer", "taskStatus": "New"}).encode()
            signature = "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
            answer = requests.post(url, data=body, timeout=30, headers={
                "Content-Type": "application/json", "x-bwapi-signature-256": signature})
            assert answer.status_code == 200
            webhook_log = state_dir / "runs" / "run-000001.log"
            wait_for(lambda: webhook_log.exists() and f"waiting for a run of {JOB} (pid "
                     f"{scheduled.process.pid}" in webhook_log.read_text(),
                     "the webhook's run to wait")
        finally:
            scheduled.signal_group(signal.SIGCONT)

        assert scheduled.wait() == 0, scheduled.output()[-3000:]
        status = wait_for(lambda: (s := requests.get(f"{url}healthz", timeout=10).json())
                          ["runs_finished"] == 1 and not s["running"] and s, "the webhook's run")
        assert status["last_exit_code"] == 0, webhook_log.read_text()[-3000:]
    finally:
        receiver.send_signal(signal.SIGINT)
        receiver.wait(timeout=RUN_TIMEOUT)
        receiver_log.close()

    assert "starting meltano run" in webhook_log.read_text()
    assert_one_after_the_other(project_runs(project), runs=2)
    assert_every_invoice_once(fresh_sandbox)
    no_secrets({"webhook run": webhook_log.read_text(), "scheduled": scheduled.output()},
               fresh_sandbox)


def test_the_cron_lines_of_the_docs_run_as_written(fresh_sandbox: Sandbox,
                                                   tmp_path: Path) -> None:
    """docs/operations.md's crontab, each command run by `sh -c` as cron would (a bare
    environment), with only the project path replaced: a copy of the project whose `.env`
    holds the prod settings, pointed at the sandbox."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    (block,) = re.findall(r"^```cron\n(.*?)^```", doc, re.M | re.S)
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 3  # master-data, invoices, payments

    project = project_copy(tmp_path)
    sage = f"{fresh_sandbox.sage300.base_url}/Sage300WebApi/v1.0/-"
    basware = fresh_sandbox.basware.base_url
    (project / ".env").write_text("\n".join([
        f"TAP_SAGE300_BASE_URL={sage}", f"TARGET_SAGE300_BASE_URL={sage}",
        f"TAP_SAGE300_USERNAME={SAGE_USER}", f"TARGET_SAGE300_USERNAME={SAGE_USER}",
        'TAP_SAGE300_COMPANY_IDS=["SAMINC", "SAMLTD"]',
        f"TAP_BASWARE_BASE_URL={basware}", f"TARGET_BASWARE_BASE_URL={basware}",
        f"TAP_BASWARE_CLIENT_ID={BASWARE_CLIENT_ID}", f"TARGET_BASWARE_CLIENT_ID={BASWARE_CLIENT_ID}",
        'TAP_BASWARE_COMPANY_CODES=["US01", "CA01"]',
        f"PROD_SAGE300_PASSWORD={SAGE_PASSWORD}",
        f"PROD_BASWARE_CLIENT_SECRET={fresh_sandbox.info()['basware']['client_secret']}",
        f"ML_CONNECTOR_LEDGER_URL=sqlite:///{project / 'ledger.sqlite'}", ""]))
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(tmp_path),
                "LOGNAME": os.environ.get("LOGNAME", "cron")}

    for line in lines:
        command = line.split(None, 5)[5]
        assert "/srv/ml-connector" in command
        job = re.search(r" run ([\w-]+) ", command).group(1)
        result = subprocess.run(["sh", "-c", command.replace("/srv/ml-connector", str(project))],
                                env=cron_env, capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
        log = project / "logs" / f"{job}.log"
        assert result.returncode == 0, result.stderr + (log.read_text()[-3000:]
                                                        if log.exists() else "")
        assert result.stdout == result.stderr == ""  # cron mails nothing when all is well
        assert f"meltano run {job} ended with exit code 0" in log.read_text()
        assert (project / "logs").stat().st_mode & 0o777 == 0o700
        assert log.stat().st_mode & 0o777 == 0o600
        rows = meltano_runs(project / ".meltano" / "meltano.db",
                            STATE_IDS[job].replace("sandbox:", "prod:"))
        assert rows and {row["state"] for row in rows} == {"SUCCESS"}

    snap = snapshot(fresh_sandbox)
    assert snap.master_data["vendors"]  # master-data ran
    assert sum(len(copies) for copies in snap.ap_invoices.values()) == 27  # invoices ran
    no_secrets({p.name: p.read_text() for p in (project / "logs").glob("*.log")},
               fresh_sandbox)
