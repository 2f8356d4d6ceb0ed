"""`ml-connector run <job>`: `meltano run <job>`, one run of a job at a time, waiting instead
of failing.

Meltano refuses a second run of a job while a run of it is marked running ("Another
'<env>:<tap>-to-<target>' pipeline is already running ... '--force'"), and a run killed by
the host (kill -9, reboot) stays marked running until Meltano sees no heartbeat for 5
minutes. So a webhook-triggered run and a scheduled run collide, and a killed run blocks
the next one. This runner:

1. takes a per-job lock (`fcntl.flock` on `<meltano system dir>/run/ml-connector/<env>-
   <job>.lock`) and holds it for the whole run; the Meltano child inherits it, so the lock
   is free only once both are gone, and a killed holder releases it by dying. Others wait
   for it (bounded by `--wait-timeout`) or, with `--if-running skip`, exit 0 at once;
2. with the lock held, no other ml-connector run of the job is alive, so a Meltano run record
   of the job's state ids still marked RUNNING is either from a killed run or from a
   `meltano run` someone started by hand. Killed: the previous lock holder's Meltano run (its
   run id is in the lock file), or a record whose heartbeat is older than STALE_AFTER and did
   not move while watched; those are marked failed through Meltano's own API, with the reason.
   A record whose heartbeat moves is waited for, like the lock;
3. runs `meltano run --run-id <id> <job>` (never `--force`), forwards SIGTERM/SIGINT to it
   so Meltano marks its run failed and stops its plugins, and returns its exit code.

Lines of our own never hold setting values: they name jobs, pids, times and run ids only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ml_connector.project_config import (
    MeltanoError,
    add_project_arguments,
    meltano_command,
    meltano_env,
    project_from_args,
)
from ml_connector_core.redaction import Redactor
from ml_connector_core.run_files import RUN_FOLDER, make_private, remove_stale_config_files

#: A live Meltano run writes its heartbeat every second; this much silence means it is dead
#: (Meltano itself waits 5 minutes, for runs it cannot know are dead).
STALE_AFTER = 30.0
#: A record that looks stale is watched this long: a live run's heartbeat moves within it
#: even if this machine's clock is ahead of the one that wrote it.
HEARTBEAT_WATCH = 3.0
POLL_SECONDS = 0.5
DEFAULT_WAIT_TIMEOUT = 7200.0
#: The run did not start: another run of the job held on for longer than --wait-timeout.
EXIT_WAIT_TIMEOUT = 75  # EX_TEMPFAIL


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "?"


# --------------------------------------------------------------------------- the job lock


@dataclass
class Holder:
    """Who holds a job's lock, as written in the lock file (for waiters and the next holder)."""

    pid: int
    host: str
    since: str
    meltano_run_id: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"


class JobLock:
    """An flock on one file per environment and job. The file also names its holder."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        import fcntl  # POSIX only; imported here so the module loads everywhere

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def holder(self) -> Holder | None:
        """The holder written last (the current one while the lock is taken, else the last
        one, whose run ended or was killed); None if unreadable."""
        try:
            data = json.loads(os.pread(self.fd, 4096, 0) or b"null")
            return Holder(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError, OSError):
            return None

    def current_holder(self, patience: float = 2.0) -> Holder | None:
        """The holder of the lock as taken now. The new holder writes itself just after
        taking the lock, so for a moment the file is empty or names the previous (ended)
        holder: read again until it names a live process (on this host), at most `patience`
        seconds."""
        deadline = time.monotonic() + patience
        while True:
            holder = self.holder()
            if holder is not None and (holder.host != socket.gethostname()
                                       or _alive(holder.pid)):
                return holder
            if time.monotonic() >= deadline:
                return holder
            time.sleep(0.05)

    def write_holder(self, holder: Holder) -> None:
        data = json.dumps(asdict(holder)).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def close(self) -> None:
        os.close(self.fd)  # releases the lock unless the Meltano child still runs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def lock_path(sys_dir: Path, environment: str | None, job: str) -> Path:
    return sys_dir / "run" / "ml-connector" / f"{environment or 'no-environment'}-{job}.lock"


# --------------------------------------------------------------------------- Meltano records


@dataclass
class RunRecord:
    """A row of Meltano's `runs` table still marked RUNNING."""

    state_id: str
    run_id: str
    started_at: datetime | None
    heartbeat_at: datetime | None

    def last_sign_of_life(self) -> datetime | None:
        return self.heartbeat_at or self.started_at

    def describe(self) -> str:
        return (f"Meltano run {self.run_id} of {self.state_id} (started "
                f"{_iso(self.started_at)}, last heartbeat {_iso(self.heartbeat_at)})")


class MeltanoRuns:
    """Meltano's run records of one job, through Meltano's own API (meltano.core.job), in the
    system database `meltano run` uses (MELTANO_DATABASE_URI, .env, meltano.yml)."""

    def __init__(self, project_root: Path, environment: str | None) -> None:
        _quiet_meltano_logging()
        from meltano.core.project import Project

        self.project = Project(project_root)
        if environment:
            self.project.activate_environment(environment)
        self._sessions: Any = None
        self._has_runs = False

    @property
    def sys_dir(self) -> Path:
        return Path(self.project.sys_dir_root)

    def state_ids(self, job: str) -> list[str]:
        """The state id of every extractor -> loader pair of the job's tasks, as Meltano
        names it (`<env>:<extractor>-to-<loader>[:<suffix>]`); MeltanoError for an unknown job.
        """
        from meltano.core.constants import STATE_ID_COMPONENT_DELIMITER
        from meltano.core.plugin import PluginType
        from meltano.core.plugin.error import PluginNotFoundError
        from meltano.core.task_sets_service import JobNotFoundError, TaskSetsService

        service = TaskSetsService(self.project)
        try:
            tasks = service.get(job)
        except JobNotFoundError:
            names = ", ".join(t.name for t in service.list_task_sets()) or "none"
            raise MeltanoError(f"meltano.yml has no job {job!r} (jobs: {names})") from None
        environment = self.project.environment
        if environment is None:
            return []  # Meltano runs without an environment keep no run records
        ids: list[str] = []
        extractor: str | None = None
        for name in tasks.flat_args:
            try:
                plugin = self.project.plugins.find_plugin(name.split(":")[0])
            except PluginNotFoundError:
                continue
            if plugin.type == PluginType.EXTRACTORS:
                extractor = name
            elif plugin.type == PluginType.LOADERS and extractor:
                parts = [environment.name, f"{extractor}-to-{name}",
                         environment.state_id_suffix]
                ids.append(STATE_ID_COMPONENT_DELIMITER.join(p for p in parts if p))
                extractor = None
        return list(dict.fromkeys(ids))

    @contextmanager
    def _session(self) -> Iterator[Any]:
        if self._sessions is None:
            from meltano.core.db import project_engine

            engine, self._sessions = project_engine(self.project)
            from sqlalchemy import inspect

            self._has_runs = inspect(engine).has_table("runs")
        with self._sessions() as session:
            yield session

    def running(self, state_ids: list[str]) -> list[RunRecord]:
        from meltano.core.job import JobFinder

        with self._session() as session:
            if not self._has_runs:  # Meltano never ran in this database
                return []
            return [RunRecord(job.job_name, str(job.run_id), job.started_at,
                              job.last_heartbeat_at)
                    for state_id in state_ids for job in JobFinder(state_id).running(session)]

    def history(self, state_ids: list[str], limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` run records of each state id, any state (`ml-connector
        status`): Meltano writes one when a task starts, so a run that failed before any
        plugin opened the ledger is here too."""
        from meltano.core.job import Job

        with self._session() as session:
            if not self._has_runs:
                return []
            found = []
            for state_id in state_ids:
                for job in (session.query(Job).filter(Job.job_name == state_id)
                            .order_by(Job.started_at.desc()).limit(limit)):
                    payload = job.payload if isinstance(job.payload, dict) else {}
                    found.append({"state_id": state_id, "run_id": str(job.run_id),
                                  "state": job.state.name, "started_at": job.started_at,
                                  "ended_at": job.ended_at,
                                  "heartbeat_at": job.last_heartbeat_at,
                                  "error": payload.get("error")})
            return found

    def mark_failed(self, record: RunRecord, reason: str) -> bool:
        """Mark the record failed as Meltano would a stale run, unless it changed meanwhile."""
        from meltano.core.job import JobFinder

        with self._session() as session:
            for job in JobFinder(record.state_id).running(session):
                if str(job.run_id) == record.run_id \
                        and job.last_heartbeat_at == record.heartbeat_at:
                    job.fail(error=reason)
                    job.save(session)
                    return True
        return False


def _quiet_meltano_logging() -> None:
    """Meltano's library logs through structlog, which by default prints every info line."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# --------------------------------------------------------------------------- the runner


class Stopped(Exception):
    """A signal arrived before Meltano was started: nothing to pass it to."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class JobRun:
    """One `ml-connector run <job>`: lock, clear killed runs' records, run, report."""

    def __init__(self, project_root: Path, environment: str | None, job: str, *,
                 if_running: str, wait_timeout: float, out: IO[str],
                 child_out: IO[str] | None) -> None:
        self.root = project_root
        self.environment = environment
        self.job = job
        self.if_running = if_running
        self.deadline = time.monotonic() + wait_timeout
        self.wait_timeout = wait_timeout
        self.out = out
        self.child_out = child_out  # None: Meltano prints to our stdout and stderr
        self.signal: int | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def say(self, message: str) -> None:
        where = f" ({self.environment})" if self.environment else ""
        self.out.write(f"{_iso(_now())} ml-connector run {self.job}{where}: {message}\n")
        self.out.flush()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)  # Meltano marks its run failed and stops plugins

    def _sleep(self, bounded: bool = True) -> None:
        """One poll interval; Stopped on a signal, TimeoutError past the deadline."""
        if self.signal is not None:
            raise Stopped(self.signal)
        if bounded and time.monotonic() > self.deadline:
            raise TimeoutError
        time.sleep(POLL_SECONDS)
        if self.signal is not None:
            raise Stopped(self.signal)

    def main(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            runs = MeltanoRuns(self.root, self.environment)
            state_ids = runs.state_ids(self.job)
        except MeltanoError as exc:
            self.say(str(exc))
            return 2
        except Exception as exc:  # noqa: BLE001 - Meltano's own errors: a bad project
            self.say(f"cannot read the Meltano project: {type(exc).__name__}: "
                     f"{Redactor([]).redact(str(exc))}")
            return 2
        if importlib.util.find_spec("fcntl") is None:
            self.say("needs flock (Linux, macOS); here, run `meltano run` itself")
            return 2
        lock = JobLock(lock_path(runs.sys_dir, self.environment, self.job))
        try:
            return self._locked_run(lock, runs, state_ids)
        except Stopped as stop:
            self.say(f"stopped by signal {stop.signum} before the run started")
            return 128 + stop.signum
        except TimeoutError:
            self.say(f"gave up after waiting {self.wait_timeout:g} s for the run in progress; "
                     "nothing was run")
            return EXIT_WAIT_TIMEOUT
        finally:
            lock.close()

    def _locked_run(self, lock: JobLock, runs: MeltanoRuns, state_ids: list[str]) -> int:
        if not lock.try_acquire():
            holder = lock.current_holder()
            running = f"a run of {self.job} ({holder.describe() if holder else 'pid unknown'})"
            if self.if_running == "skip":
                self.say(f"skipped: {running} is in progress; the next run reads what this "
                         "one would have")
                return 0
            self.say(f"waiting for {running} to finish (at most {self.wait_timeout:g} s)")
            while not lock.try_acquire():
                self._sleep()
            self.say("the other run ended; going ahead")
        previous = lock.holder()  # the last holder, now gone: its Meltano run is over
        run_id = str(uuid.uuid4())
        lock.write_holder(Holder(os.getpid(), socket.gethostname(), _iso(_now()), run_id))
        skipped = self._clear_records(runs, state_ids, previous)
        if skipped:
            return 0
        self._private_run_files(runs.sys_dir)
        return self._run_meltano(lock, run_id)

    def _private_run_files(self, sys_dir: Path) -> None:
        """Before Meltano writes the plugins' configuration (secrets included) under
        `<system dir>/run/`: the folder its owner's only, and the configuration files killed
        runs left there removed, when no Meltano process of the system directory is alive
        (ml_connector_core.run_files; docs/decisions.md, "Secrets at rest")."""
        run_folder = sys_dir / RUN_FOLDER
        make_private(run_folder, create=True)
        removed = remove_stale_config_files(sys_dir)
        if removed:
            self.say(f"removed {len(removed)} plugin configuration file(s) that killed runs "
                     f"left in {run_folder}")

    def _clear_records(self, runs: MeltanoRuns, state_ids: list[str],
                       previous: Holder | None) -> bool:
        """Mark killed runs' records failed; wait for live ones. True: skipped instead."""
        try:
            return self._clear_or_wait(runs, state_ids, previous)
        except (Stopped, TimeoutError):
            raise
        except Exception as exc:  # noqa: BLE001 - the database is down: Meltano will say so
            self.say(f"could not read Meltano's run records ({type(exc).__name__}); "
                     "starting the run, Meltano checks them itself")
            return False

    def _clear_or_wait(self, runs: MeltanoRuns, state_ids: list[str],
                       previous: Holder | None) -> bool:
        records = runs.running(state_ids)
        waiting_for: set[str] = set()
        while records:
            alive = []
            for record in records:
                reason = self._killed(runs, record, previous)
                if reason is None:
                    alive.append(record)
                elif runs.mark_failed(record, reason):
                    self.say(f"marked {record.describe()} failed: {reason}")
            if alive:
                described = "; ".join(r.describe() for r in alive)
                if self.if_running == "skip":
                    self.say(f"skipped: {described} is in progress (started outside "
                             "ml-connector run); the next run reads what this one would have")
                    return True
                if {r.run_id for r in alive} - waiting_for:
                    self.say(f"waiting for {described} to finish: its heartbeat is fresh "
                             "(a `meltano run` started by hand?)")
                    waiting_for |= {r.run_id for r in alive}
                self._sleep()
            records = runs.running(state_ids)
        return False

    def _killed(self, runs: MeltanoRuns, record: RunRecord, previous: Holder | None
                ) -> str | None:
        """Why the record is from a killed run, or None if it may be alive."""
        if previous and record.run_id == previous.meltano_run_id:
            return (f"ml-connector run (pid {previous.pid}, since {previous.since}) was killed "
                    "before Meltano could record the end of this run; marked failed by the "
                    "next ml-connector run")
        seen = record.last_sign_of_life()
        if seen is None or (_now() - seen).total_seconds() <= STALE_AFTER:
            return None
        watch_until = time.monotonic() + HEARTBEAT_WATCH
        while time.monotonic() < watch_until:
            self._sleep(bounded=False)  # deciding takes seconds, whatever --wait-timeout says
            if not any(r.run_id == record.run_id and r.heartbeat_at == record.heartbeat_at
                       for r in runs.running([record.state_id])):
                return None  # it moved (or ended): alive, or at least not ours to end
        age = (_now() - seen).total_seconds()
        return (f"no heartbeat for {age:.0f} s and no ml-connector run of the job alive: the "
                "process was killed (kill -9, reboot); marked failed by ml-connector run")

    def _run_meltano(self, lock: JobLock, run_id: str) -> int:
        if self.signal is not None:
            raise Stopped(self.signal)
        command = meltano_command(self.environment, "run", "--run-id", run_id, self.job)
        self.say(f"starting meltano run {self.job} (Meltano run id {run_id})")
        started = time.monotonic()
        started_at = _now()
        # The child inherits the lock: if only this process is killed, the lock stays taken
        # until Meltano is gone too, so no second run can start beside an orphaned one.
        # MELTANO_RUN_ID reaches every plugin of the job (Meltano passes its environment
        # on), so their ledger runs share the job run's id: `audit report` groups by it.
        self.child = subprocess.Popen(command, cwd=self.root,
                                      env=meltano_env({"MELTANO_RUN_ID": run_id}),
                                      stdin=subprocess.DEVNULL, stdout=self.child_out,
                                      stderr=subprocess.STDOUT if self.child_out else None,
                                      pass_fds=(lock.fd,))
        if self.signal is not None:  # arrived while starting it
            self.child.send_signal(self.signal)
        code = self.child.wait()
        code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
        self.say(f"meltano run {self.job} ended with exit code {code} after "
                 f"{time.monotonic() - started:.0f} s")
        self._record(run_id, started_at, code)
        return code

    def _record(self, run_id: str, started_at: datetime, code: int) -> None:
        """This run in ml-connector's own run records, for `ml-connector status`: Meltano
        records no run that fails before its first task starts (a setting it cannot parse),
        and such failures count among the runs failing in a row all the same."""
        try:
            from ml_connector.status import record_run

            record_run(self.root, self.environment, self.job, run_id, started_at, _now(), code)
        except Exception as exc:  # noqa: BLE001 - the run's result stands; say why
            self.say(f"could not record the run for ml-connector status ({type(exc).__name__})")


# --------------------------------------------------------------------------- command


def open_log(log_dir: Path, job: str) -> IO[str]:
    """DIR/<job>.log for appending, DIR created (0700) when missing, the file 0600."""
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log_dir / f"{job}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="a job of meltano.yml (master-data, invoices)")
    add_project_arguments(parser)
    parser.add_argument("--if-running", choices=("wait", "skip"), default="wait",
                        help="when a run of the job is in progress: wait for it (default) or "
                             "skip this run (exit 0)")
    parser.add_argument("--wait-timeout", type=float, default=DEFAULT_WAIT_TIMEOUT,
                        metavar="SECONDS",
                        help=f"give up waiting after this long, exit {EXIT_WAIT_TIMEOUT} "
                             f"(default {DEFAULT_WAIT_TIMEOUT:g})")
    parser.add_argument("--log-dir", type=Path,
                        help="append the run's output to DIR/<job>.log (DIR created if "
                             "missing) instead of printing it")


def _notify(root: Path, environment: str | None, out: IO[str]) -> None:
    """Each new problem (this job failing again, an invoice the run left failed) told once to
    the configured webhook/e-mail (ml_connector/notify.py). Whatever goes wrong there, the
    run's exit code stays the run's own."""
    try:
        from ml_connector import notify

        notify.after_run(root, environment, out)
    except Exception as exc:  # noqa: BLE001 - e.g. a broken install: said, never raised
        out.write(f"ml-connector notify: not evaluated ({type(exc).__name__})\n")
        out.flush()


def main(args: argparse.Namespace) -> int:
    try:
        root, environment = project_from_args(args)
    except (MeltanoError, OSError) as exc:
        print(f"ml-connector run: {exc}", file=sys.stderr)
        return 2
    log = open_log(args.log_dir, args.job) if args.log_dir else None
    try:
        code = JobRun(root, environment, args.job, if_running=args.if_running,
                      wait_timeout=args.wait_timeout, out=log or sys.stderr,
                      child_out=log).main()
        if code != 2:  # 2: no readable project or job, nothing to evaluate
            _notify(root, environment, log or sys.stderr)
    finally:
        if log:
            log.close()
    if code and args.log_dir:  # one line for cron's mail; the details are in the log
        print(f"ml-connector run {args.job} failed (exit {code}); see "
              f"{args.log_dir / f'{args.job}.log'}", file=sys.stderr)
    return code
