"""`ml-connector webhooks`: Basware notifications trigger the invoice job at once.

`serve` is a small HTTP receiver (stdlib ThreadingHTTPServer). For each POST it:

1. checks the signature: `x-bwapi-signature-256: sha256=<hex HMAC-SHA256 of the raw body,
   keyed by the webhookAuthenticationToken>` (the header name is not public; the sandbox and
   the only description we have agree on it), compared in constant time; wrong or missing
   -> 401;
2. answers Basware's endpoint validation (`taskType: ConnectionTest`) with 200;
3. stores the notification in SQLite (`<state-dir>/webhooks.sqlite`) keyed by taskId, before
   answering 200, so a notification acknowledged is never lost; a repeated taskId is answered
   200 and changes nothing;
4. asks the job runner for a run of `ml-connector run <job>` (default `invoices`; see
   ml_connector/run.py: it waits for a scheduled run of the same job instead of failing).
   One run at a time: notifications that arrive while a run is going set one flag, which
   gives exactly one follow-up run however many arrived. Notifications not yet covered by a successful run
   (the receiver stopped, the job failed) trigger a run when the receiver starts.

A notification is only a "go fetch" signal: the job reads Basware's queue, so a lost or
duplicated notification costs nothing but latency, and scheduled polling stays the fallback.

`subscribe URL` registers the receiver with Basware (`POST /v1/subscriptions`) using
tap-basware's Meltano settings for the client credentials.

The webhook token is a secret: it comes from an environment variable (`--token-env`, default
BASWARE_WEBHOOK_TOKEN) or tap-basware's sensitive `webhook_token` setting, and is never
logged, printed or stored.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from ml_connector import check
from ml_connector_core.basware_api import BaswareAuthError, resolve_base_url
from ml_connector_core.httppolicy import RetryExhausted
from ml_connector_core.redaction import Redactor, install_log_redaction
from ml_connector_core.settings import basware_client

logger = logging.getLogger("ml_connector.webhooks")

SIGNATURE_HEADER = "x-bwapi-signature-256"
DEFAULT_TOKEN_ENV = "BASWARE_WEBHOOK_TOKEN"
TOKEN_SETTING = "webhook_token"  # tap-basware's sensitive Meltano setting, the fallback source
MAX_BODY = 1024 * 1024  # a notification is a few hundred bytes
TRIGGERING_TASK_TYPES = frozenset({"AccountingDocuments"})
SUBSCRIBE_SCOPES = "subscriptions.read subscriptions.write"


def sign(body: bytes, token: str) -> str:
    return "sha256=" + hmac.new(token.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, token: str, header_value: str | None) -> bool:
    if not header_value:
        return False
    return hmac.compare_digest(sign(body, token).encode("ascii"),
                               header_value.strip().lower().encode("ascii", "replace"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- durable store


class NotificationStore:
    """SQLite in the state dir: every notification by taskId, and every job run."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # stored means on disk before we say 200
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS notifications (
                task_id TEXT PRIMARY KEY,
                received_at TEXT NOT NULL,
                task_type TEXT, task_sub_type TEXT, task_status TEXT, document_id TEXT,
                body TEXT NOT NULL,
                handled_by_run INTEGER REFERENCES runs(id)
            );
            CREATE TABLE IF NOT EXISTS runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                exit_code INTEGER,
                command TEXT NOT NULL,
                log_path TEXT,
                covers_up_to INTEGER NOT NULL  -- notifications.rowid seen when the run began
            );
        """)

    def add(self, notification: dict[str, Any], body: bytes) -> bool:
        """Store it; False if this taskId was stored before (a redelivery)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO notifications (task_id, received_at, task_type, "
                "task_sub_type, task_status, document_id, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(notification["taskId"]), _now(), notification.get("taskType"),
                 notification.get("taskSubType"), notification.get("taskStatus"),
                 notification.get("documentId"), body.decode("utf-8")))
            return cursor.rowcount == 1

    def unhandled(self) -> int:
        with self._lock:
            rows = self._db.execute("SELECT task_type FROM notifications "
                                    "WHERE handled_by_run IS NULL").fetchall()
            return sum(1 for (task_type,) in rows if task_type in TRIGGERING_TASK_TYPES)

    def start_run(self, command: list[str]) -> tuple[int, int]:
        """(run id, highest notification rowid this run covers)."""
        with self._lock:
            covers = self._db.execute("SELECT coalesce(max(rowid), 0) FROM notifications"
                                      ).fetchone()[0]
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, command, covers_up_to) VALUES (?, ?, ?)",
                (_now(), shlex.join(command), covers))
            return int(cursor.lastrowid or 0), covers

    def finish_run(self, run_id: int, exit_code: int, log_path: Path, covers: int) -> int:
        """Record the outcome; a successful run marks the notifications it covered handled."""
        with self._lock:
            self._db.execute("UPDATE runs SET finished_at = ?, exit_code = ?, log_path = ? "
                             "WHERE id = ?", (_now(), exit_code, str(log_path), run_id))
            if exit_code != 0:
                return 0
            cursor = self._db.execute(
                "UPDATE notifications SET handled_by_run = ? WHERE rowid <= ? AND "
                "handled_by_run IS NULL", (run_id, covers))
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- job runner


class JobRunner:
    """Runs the job in a background thread, one run at a time, coalescing requests.

    `request()` only sets a flag; the loop takes the flag before it starts a run, so every
    request made during a run is answered by exactly one follow-up run.
    """

    def __init__(self, command: list[str], cwd: Path, store: NotificationStore, log_dir: Path,
                 env: dict[str, str], retry_after: float = 60.0) -> None:
        self.command = command
        self.retry_after = retry_after
        self._failures = 0  # consecutive failed runs, for the retry backoff
        self._retry_timer: threading.Timer | None = None
        self.cwd = cwd
        self.store = store
        self.log_dir = log_dir
        self.env = env
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._stopping = False
        self.runs_started = 0
        self.runs_finished = 0
        self.last_exit_code: int | None = None
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._pending = True
            self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"running": self._running, "pending": self._pending,
                    "runs_started": self.runs_started, "runs_finished": self.runs_finished,
                    "last_exit_code": self.last_exit_code}

    def stop(self) -> None:
        """No new runs; wait for the current one (stopping a run midway is safe but wasteful)."""
        with self._cond:
            self._stopping = True
            if self._retry_timer is not None:
                self._retry_timer.cancel()
            if self._running:
                logger.info("waiting for the running job to finish")
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                self._pending = False
                self._running = True
                self.runs_started += 1
            try:
                exit_code = self._run_once()
            except Exception:  # the receiver must outlive one broken run
                logger.exception("the job could not be started")
                exit_code = -1
            with self._cond:
                self._running = False
                self.runs_finished += 1
                self.last_exit_code = exit_code
                self._failures = 0 if exit_code == 0 else self._failures + 1
                if self._failures and self.retry_after > 0 and not self._stopping:
                    self._schedule_retry()
                self._cond.notify_all()

    def _schedule_retry(self) -> None:
        """After a failed run (Sage down, Basware refusing the token), try again later, doubling the wait up to 15 minutes, while notifications are
        still unhandled. Lock held."""
        delay = min(self.retry_after * 2 ** (self._failures - 1), 900.0)
        logger.info("retrying the job in %.3g s unless a notification comes first", delay)
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = threading.Timer(delay, self._retry)
        self._retry_timer.daemon = True
        self._retry_timer.start()

    def _retry(self) -> None:
        with self._cond:
            if self._stopping:
                return
        if self.store.unhandled():
            self.request()

    def _run_once(self) -> int:
        run_id, covers = self.store.start_run(self.command)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"run-{run_id:06d}.log"
        logger.info("run %d: %s (log %s)", run_id, shlex.join(self.command), log_path)
        with log_path.open("wb") as log:
            result = subprocess.run(self.command, cwd=self.cwd, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    check=False)
        handled = self.store.finish_run(run_id, result.returncode, log_path, covers)
        if result.returncode == 0:
            logger.info("run %d finished; %d notification(s) handled", run_id, handled)
        else:
            # The invoices stay in Basware's queue; a retry, the next notification, a restart or
            # the polling schedule runs the job again.
            logger.error("run %d failed with exit code %d; see %s", run_id, result.returncode,
                         log_path)
        return result.returncode


# --------------------------------------------------------------------------- HTTP receiver


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str, store: NotificationStore,
                 runner: JobRunner, signature_header: str = SIGNATURE_HEADER) -> None:
        super().__init__(address, ReceiverHandler)
        self.token = token
        self.store = store
        self.runner = runner
        self.signature_header = signature_header


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"
    server_version = "ml-connector-webhooks"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0].rstrip("/") in ("/healthz", "/status"):
            self._answer(200, {"status": "ok", **self.server.runner.status()})
        else:
            self._answer(404, {"message": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._answer(411, {"message": "Content-Length required"}, close=True)
            return
        if int(length) > MAX_BODY:
            self._answer(413, {"message": "notification too large"}, close=True)
            return
        body = self.rfile.read(int(length))
        signature = self.headers.get(self.server.signature_header)
        try:
            notification = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            notification = None
        is_test = isinstance(notification, dict) and \
            notification.get("taskType") == "ConnectionTest"
        if not signature_valid(body, self.server.token, signature):
            if is_test and not signature:
                # Whether Basware signs its endpoint validation is not public. An unsigned
                # test is answered (it stores and triggers nothing); a wrongly signed one is not.
                logger.warning("unsigned ConnectionTest answered 200")
                self._answer(200, notification)
                return
            logger.warning("refused a notification with a %s signature from %s",
                           "wrong" if signature else "missing", self.client_address[0])
            self._answer(401, {"message": "Unauthorized"})
            return
        if not isinstance(notification, dict) or not notification.get("taskId"):
            self._answer(422, {"message": "UnprocessableEntity: a JSON object with taskId"})
            return
        if is_test:
            logger.info("ConnectionTest %s answered 200", notification["taskId"])
            self._answer(200, notification)
            return
        try:
            new = self.server.store.add(notification, body)
        except sqlite3.Error:
            logger.exception("could not store notification %s", notification["taskId"])
            self._answer(503, {"message": "could not store the notification; retry"})
            return
        task_type = notification.get("taskType")
        if not new:
            logger.info("duplicate notification %s ignored", notification["taskId"])
        elif task_type in TRIGGERING_TASK_TYPES:
            logger.info("notification %s (%s/%s, document %s) stored; job requested",
                        notification["taskId"], task_type, notification.get("taskSubType"),
                        notification.get("documentId"))
            self.server.runner.request()
        else:
            logger.info("notification %s of type %s stored; it triggers no job",
                        notification["taskId"], task_type)
        self._answer(200, notification)

    def _answer(self, status: int, payload: Any, close: bool = False) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.client_address[0], format % args)


# --------------------------------------------------------------------------- commands


def resolve_token(args: argparse.Namespace, project_root: Path, environment: str | None
                  ) -> str:
    token = os.environ.get(args.token_env)
    if token:
        return token
    config = check.meltano_config(project_root, "tap-basware", environment) or {}
    token = config.get(TOKEN_SETTING)
    if token:
        return str(token)
    raise SystemExit(f"ml-connector webhooks: no webhook token. Set the environment variable "
                     f"{args.token_env} or tap-basware's sensitive setting {TOKEN_SETTING} "
                     "(TAP_BASWARE_WEBHOOK_TOKEN); use a long random value, e.g. "
                     "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`.")


def job_command(args: argparse.Namespace, project_root: Path, environment: str | None
                ) -> list[str]:
    """`ml-connector run <job>`, so a webhook run and a scheduled run of the job wait for
    each other instead of one failing on Meltano's "already running" check."""
    if args.job_command:
        return shlex.split(args.job_command)
    if importlib.util.find_spec("fcntl") is None:  # no flock (Windows): Meltano's check only
        return [check.meltano_executable(), "run", args.job]
    return [sys.executable, "-m", "ml_connector.cli", "run", args.job,
            "--project-root", str(project_root),
            *(["--environment", environment] if environment else [])]


def serve(args: argparse.Namespace) -> int:
    root = check.find_project_root(args.project_root)
    environment = check.active_environment(root, args.environment)
    token = resolve_token(args, root, environment)
    install_log_redaction([token])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = (args.state_dir or root / ".meltano" / "ml-connector-webhooks").resolve()
    store = NotificationStore(state_dir / "webhooks.sqlite")
    # The job needs no webhook token: keep the secret out of its environment.
    env = {k: v for k, v in os.environ.items() if v != token}
    if environment and "MELTANO_ENVIRONMENT" not in env:
        env["MELTANO_ENVIRONMENT"] = environment
    runner = JobRunner(job_command(args, root, environment), root, store, state_dir / "runs", env,
                       args.retry_after)
    receiver = Receiver((args.host, args.port), token, store, runner, args.signature_header)
    host, port = receiver.server_address[:2]
    runner.start()
    backlog = store.unhandled()
    if backlog:
        logger.info("%d stored notification(s) not yet handled by a successful run: "
                    "running the job now", backlog)
        runner.request()
    print(f"listening on http://{host}:{port}/ (job: {shlex.join(runner.command)}; "
          f"state: {state_dir})", flush=True)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    server_thread = threading.Thread(target=receiver.serve_forever, name="receiver",
                                     daemon=True)
    server_thread.start()
    stop.wait()
    logger.info("stopping")
    receiver.shutdown()
    receiver.server_close()
    runner.stop()
    store.close()
    return 0


def subscribe(args: argparse.Namespace) -> int:
    root = check.find_project_root(args.project_root)
    environment = check.active_environment(root, args.environment)
    token = resolve_token(args, root, environment)
    config = check.meltano_config(root, "tap-basware", environment) or {}
    redactor = Redactor([token, *Redactor.from_config(config).secrets])
    missing = [k for k in ("client_id", "client_secret") if not config.get(k)]
    if missing:
        print(f"tap-basware lacks {', '.join(missing)} (Meltano environment "
              f"{environment or 'none'})", file=sys.stderr)
        return 2
    try:
        # Settings read through Meltano may be strings ("false"): verify_tls made a bool.
        settings = {**config, "verify_tls": check.as_bool(config.get("verify_tls"), True)}
        client = basware_client(settings, default_scopes=SUBSCRIBE_SCOPES,
                                scopes=SUBSCRIBE_SCOPES, policy=check.CHECK_POLICY)
        body = [{"taskType": "AccountingDocuments", "taskSubType": args.task_sub_type,
                 "subscriptionType": "Webhook", "notificationWebhookURL": args.url,
                 "webhookAuthenticationToken": token}]
        # Not retried on a timeout: Basware may have subscribed; rerunning `subscribe` is safe
        # (one subscription per type, subtype and URL, replaced).
        response = client.post("/v1/subscriptions", body, retry_on_timeout=False)
    except (BaswareAuthError, ValueError, requests.RequestException, RetryExhausted) as exc:
        print(f"subscribe failed: {redactor.redact(str(exc))}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"subscribe failed: Basware answered HTTP {response.status_code}: "
              f"{redactor.redact(_messages(response))}", file=sys.stderr)
        return 1
    where = resolve_base_url(config.get("region"), config.get("base_url"))
    print(f"subscribed at {where}: AccountingDocuments/{args.task_sub_type} -> {args.url} "
          "(Basware's ConnectionTest to the receiver was answered 200; the token was sent "
          "to Basware only)")
    return 0


def _messages(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        messages = body.get("errorMessages") or body.get("errors")
        if isinstance(messages, list):
            return "; ".join(str(m.get("message", m)) if isinstance(m, dict) else str(m)
                             for m in messages)
        return str(body.get("detail") or body.get("message") or body)[:300]
    return str(body)[:300]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="webhooks_command", required=True)
    for name, help_text in (("serve", "receive Basware notifications; run the job on each"),
                            ("subscribe", "register a receiver URL with Basware")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--token-env", default=DEFAULT_TOKEN_ENV,
                         help="environment variable holding the webhook token (default "
                              f"{DEFAULT_TOKEN_ENV}; else tap-basware's {TOKEN_SETTING})")
        sub.add_argument("--environment", help="Meltano environment (default: as `meltano run`)")
        sub.add_argument("--project-root", type=Path, help="Meltano project (default: "
                         "$MELTANO_PROJECT_ROOT or the nearest meltano.yml upwards)")
        if name == "serve":
            sub.add_argument("--host", default="127.0.0.1",
                             help="listen address (default loopback; expose it through a "
                                  "reverse proxy with TLS)")
            sub.add_argument("--port", type=int, default=8789, help="0 picks a free port")
            sub.add_argument("--job", default="invoices", help="Meltano job to run")
            sub.add_argument("--state-dir", type=Path, help="where notifications and run logs "
                             "are kept (default <project>/.meltano/ml-connector-webhooks)")
            sub.add_argument("--command", dest="job_command",
                             help="run this command instead of `ml-connector run <job>` "
                                  "(tests, wrappers); split like a shell would")
            sub.add_argument("--retry-after", type=float, default=60.0,
                             help="seconds before a failed job is retried, doubling per "
                                  "failure up to 15 min (0: no retry)")
            sub.add_argument("--signature-header", default=SIGNATURE_HEADER,
                             help=f"signature header name (default {SIGNATURE_HEADER})")
        else:
            sub.add_argument("url", help="the receiver's public https URL")
            sub.add_argument("--task-sub-type", default="WaitingForTransfer")


def main(args: argparse.Namespace) -> int:
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": serve, "subscribe": subscribe}
    try:
        return commands[args.webhooks_command](args)
    except check.MeltanoError as exc:
        print(f"ml-connector webhooks: {exc}", file=sys.stderr)
        return 2
