"""`ml-connector webhooks serve|subscribe` over real HTTP.

The receiver runs as a subprocess, as an operator starts it. Most tests replace the job with a
small script (`--command`) that records each run and, when told to, waits for a gate file the
test creates, so "a notification arrived during a run" is arranged, never timed. The last
test runs the real `meltano run invoices` against the sandbox: an invoice approved in Basware
reaches Sage through the webhook alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ml_connector.cli", "webhooks"]
HEADER = "x-bwapi-signature-256"
WAIT = 120.0  # upper bound for anything to happen; never what decides a test

JOB_SCRIPT = """
import os, sys, time
from pathlib import Path
runs, gate, env_dump, exit_code = sys.argv[1:5]
with open(runs, "a") as handle:
    handle.write(f"{os.getpid()}\\n")
Path(env_dump).write_text("\\n".join(f"{k}={v}" for k, v in os.environ.items()))
deadline = time.monotonic() + 120
while gate != "-" and not Path(gate).exists() and time.monotonic() < deadline:
    time.sleep(0.02)
sys.exit(int(exit_code))
"""


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def sign(body: bytes, token: str) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def notification(task_type: str = "AccountingDocuments", task_id: str | None = None
                 ) -> dict[str, Any]:
    return {"taskId": task_id or str(uuid.uuid4()), "taskStatus": "New", "taskType": task_type,
            "taskSubType": "WaitingForTransfer", "documentId": uuid.uuid4().hex,
            "expirationTime": "2030-01-01T00:00:00Z"}


@dataclass
class Receiver:
    url: str
    token: str
    state_dir: Path
    process: subprocess.Popen[str]
    runs_file: Path
    gate: Path
    env_dump: Path
    output: list[str] = field(default_factory=list)

    def post(self, payload: dict[str, Any], *, token: str | None = None,
             signature: str | None = None, raw: bytes | None = None) -> requests.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature is None:
            headers[HEADER] = sign(body, token or self.token)
        elif signature:
            headers[HEADER] = signature
        return requests.post(self.url, data=body, headers=headers, timeout=30)

    def status(self) -> dict[str, Any]:
        return requests.get(f"{self.url}healthz", timeout=10).json()

    def idle(self) -> dict[str, Any]:
        """The status once no run is going or owed."""
        return wait_until(lambda: (s := self.status()) and not s["running"]
                          and not s["pending"] and s, "the receiver to go idle")

    def job_runs(self) -> int:
        return len(self.runs_file.read_text().splitlines()) if self.runs_file.exists() else 0

    def stored(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.state_dir / "webhooks.sqlite") as db:
            return db.execute("SELECT task_id, task_type, handled_by_run FROM notifications "
                              "ORDER BY rowid").fetchall()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=WAIT)
        out, err = self.process.communicate()
        self.output.append(out + err)
        return "".join(self.output)


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)

    def start(*, gated: bool = False, exit_code: int = 0, command: str | None = None,
              extra_env: dict[str, str] | None = None, token: str | None = None,
              state_dir: Path | None = None, options: tuple[str, ...] = ()) -> Receiver:
        token = token or secrets.token_urlsafe(32)
        state_dir = state_dir or tmp_path / "state"
        runs, gate, env_dump = tmp_path / "runs.txt", tmp_path / "gate", tmp_path / "job-env"
        if command is None:
            command = shlex.join([sys.executable, str(script), str(runs),
                                  str(gate) if gated else "-", str(env_dump), str(exit_code)])
        env = {**os.environ, "BASWARE_WEBHOOK_TOKEN": token, **(extra_env or {})}
        process = subprocess.Popen(
            [*CLI, "serve", "--port", "0", "--state-dir", str(state_dir), "--command", command,
             *options],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("listening on http://"), first + process.stderr.read()
        receiver = Receiver(first.split()[2], token, state_dir, process, runs, gate, env_dump,
                            [first])
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


# --------------------------------------------------------------------------- receiver


def test_answers_the_connection_test(start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    test = notification("ConnectionTest")

    signed = receiver.post(test)
    unsigned = receiver.post(test, signature="")  # whether Basware signs it is not public
    forged = receiver.post(test, token="not-the-token")

    assert signed.status_code == 200 and signed.json() == test
    assert unsigned.status_code == 200
    assert forged.status_code == 401
    assert receiver.stored() == []  # a test is no task: nothing stored, no job
    assert receiver.idle()["runs_started"] == 0


def test_refuses_bad_or_missing_signatures_and_accepts_a_good_one(
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    good = notification()
    body = json.dumps(good).encode()

    missing = receiver.post(good, signature="")
    wrong_key = receiver.post(good, token="another-token-of-the-same-length-1234567")
    tampered = receiver.post(good, raw=body.replace(b"New", b"Old"), signature=sign(
        body, receiver.token))
    garbage = receiver.post(good, signature="sha256=zz")
    assert [r.status_code for r in (missing, wrong_key, tampered, garbage)] == [401] * 4
    assert receiver.stored() == []

    accepted = receiver.post(good)
    assert accepted.status_code == 200 and accepted.json() == good
    assert receiver.idle()["runs_finished"] == 1
    assert receiver.job_runs() == 1
    assert [row[0] for row in receiver.stored()] == [good["taskId"]]


def test_a_duplicate_task_id_is_stored_once_and_triggers_once(
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    same = notification()

    answers = [receiver.post(same).status_code for _ in range(3)]

    assert answers == [200, 200, 200]
    status = receiver.idle()
    assert status["runs_started"] == 1 and receiver.job_runs() == 1
    assert receiver.stored() == [(same["taskId"], "AccountingDocuments", 1)]


def test_notifications_during_a_run_coalesce_into_one_follow_up(
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver(gated=True)
    first = notification()
    assert receiver.post(first).status_code == 200
    wait_until(lambda: receiver.job_runs() == 1, "the first run to start")  # now held at gate

    during = [notification() for _ in range(4)]
    assert [receiver.post(n).status_code for n in during] == [200] * 4
    status = receiver.status()
    assert status["running"] and status["pending"] and status["runs_started"] == 1

    receiver.gate.touch()
    status = receiver.idle()

    assert status["runs_started"] == status["runs_finished"] == 2
    assert receiver.job_runs() == 2
    handled_by = {task_id: run for task_id, _, run in receiver.stored()}
    assert handled_by[first["taskId"]] == 1
    assert {handled_by[n["taskId"]] for n in during} == {2}


def test_other_task_types_are_stored_but_trigger_nothing(
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()

    assert receiver.post(notification("RequestStatus")).status_code == 200

    assert receiver.idle()["runs_started"] == 0
    assert [row[1] for row in receiver.stored()] == ["RequestStatus"]


def test_stored_notifications_survive_a_failed_job_and_a_restart(
        start_receiver: Callable[..., Receiver], tmp_path: Path) -> None:
    failing = start_receiver(exit_code=1)
    lost_run = notification()
    assert failing.post(lost_run).status_code == 200
    assert failing.idle()["last_exit_code"] == 1
    assert failing.stored()[0][2] is None  # not handled: the job failed
    failing.stop()

    # Restarted with a job that works: it runs at once, with no new notification.
    restarted = start_receiver(state_dir=failing.state_dir)
    status = wait_until(lambda: (s := restarted.status())["runs_finished"] == 1 and s,
                        "the catch-up run")
    assert status["last_exit_code"] == 0
    assert restarted.stored()[0][0] == lost_run["taskId"]
    assert restarted.stored()[0][2] is not None


def test_a_failed_run_is_retried_while_notifications_wait(
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver(exit_code=1, options=("--retry-after", "0.05"))

    assert receiver.post(notification()).status_code == 200

    # No further notification: the retries alone run the job again (0.05 s, 0.1 s, ...).
    wait_until(lambda: receiver.job_runs() >= 3, "two retries")
    assert receiver.stored()[0][2] is None  # still waiting for a successful run
    assert "retrying the job in" in receiver.stop()


def test_the_token_is_never_printed_stored_or_passed_to_the_job(
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    assert receiver.post(notification()).status_code == 200
    assert receiver.post(notification(), token="wrong-token-wrong-token").status_code == 401
    receiver.idle()

    output = receiver.stop()

    assert "refused a notification with a wrong signature" in output
    assert receiver.token not in output
    files = [p for p in receiver.state_dir.rglob("*") if p.is_file()]
    assert files and all(receiver.token.encode() not in p.read_bytes() for p in files)
    assert receiver.token not in receiver.env_dump.read_text()


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BASWARE_WEBHOOK_TOKEN", "TAP_BASWARE_WEBHOOK_TOKEN")}
    result = subprocess.run([*CLI, "serve", "--port", "0", "--state-dir", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode != 0
    assert "BASWARE_WEBHOOK_TOKEN" in result.stderr


# --------------------------------------------------------------------------- with Basware


def basware_env(sandbox: Sandbox) -> dict[str, str]:
    basware = sandbox.info()["basware"]
    return {"TAP_BASWARE_BASE_URL": basware["base_url"],
            "TAP_BASWARE_CLIENT_ID": basware["client_id"],
            "TAP_BASWARE_CLIENT_SECRET": basware["client_secret"],
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}


def subscribe(receiver: Receiver, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "subscribe", receiver.url], cwd=ROOT,
                          env={**os.environ, **env, "BASWARE_WEBHOOK_TOKEN": receiver.token},
                          capture_output=True, text=True, timeout=300, check=False)


def test_subscribe_then_basware_notifications_run_the_job(
        fresh_sandbox: Sandbox, start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    env = basware_env(fresh_sandbox)
    basware_url = fresh_sandbox.basware.base_url

    result = subscribe(receiver, env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"-> {receiver.url}" in result.stdout
    assert receiver.token not in result.stdout + result.stderr
    subscriptions = requests.get(f"{basware_url}/_sandbox/state", timeout=30).json()
    assert receiver.url in json.dumps(subscriptions)
    assert receiver.idle()["runs_started"] == 0  # the ConnectionTest triggers nothing

    # An invoice approved in Basware: the simulator signs and sends the notification.
    invoice = requests.post(f"{basware_url}/_sandbox/invoices", json={}, timeout=30).json()

    wait_until(lambda: any(row[0] for row in receiver.stored()), "the notification")
    assert receiver.idle()["runs_finished"] == 1
    (stored,) = receiver.stored()
    with sqlite3.connect(receiver.state_dir / "webhooks.sqlite") as db:
        document = db.execute("SELECT document_id FROM notifications").fetchone()[0]
    assert document == invoice["invoiceId"] and stored[2] == 1


def test_subscribe_fails_clearly_when_the_receiver_does_not_answer(
        fresh_sandbox: Sandbox, start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    receiver.stop()  # Basware's ConnectionTest finds nothing listening

    result = subscribe(receiver, basware_env(fresh_sandbox))

    assert result.returncode == 1
    assert "ConnectionTest" in result.stderr
    assert receiver.token not in result.stdout + result.stderr


def test_subscribe_with_a_receiver_using_another_token_is_refused(
        fresh_sandbox: Sandbox, start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    other = Receiver(receiver.url, "a-different-token-than-the-receiver", receiver.state_dir,
                     receiver.process, receiver.runs_file, receiver.gate, receiver.env_dump)

    result = subscribe(other, basware_env(fresh_sandbox))

    assert result.returncode == 1
    assert "answered 401" in result.stderr


# --------------------------------------------------------------------------- end to end


def test_an_approved_invoice_reaches_sage_through_the_webhook(
        fresh_sandbox: Sandbox, start_receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    """The real job: `meltano run invoices`, triggered only by Basware's notification."""
    sage = fresh_sandbox.info()["sage300"]
    env = {
        **basware_env(fresh_sandbox),
        "TARGET_SAGE300_BASE_URL": sage["base_url"],
        "TARGET_SAGE300_USERNAME": sage["username"],
        "TARGET_SAGE300_PASSWORD": sage["password"],
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_STATE_BACKEND_URI": f"file://{tmp_path / 'meltano-state'}",
        "ML_CONNECTOR_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "TAP_BASWARE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "TARGET_SAGE300_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    meltano = str(Path(sys.executable).with_name("meltano"))
    receiver = start_receiver(command=shlex.join([meltano, "run", "invoices"]), extra_env=env)
    assert subscribe(receiver, env).returncode == 0

    document_number = f"WH-{uuid.uuid4().hex[:8].upper()}"
    invoice = requests.post(f"{fresh_sandbox.basware.base_url}/_sandbox/invoices",
                            json={"invoiceNumber": document_number}, timeout=30).json()

    wait_until(receiver.stored, "the notification", timeout=60)
    status = wait_until(lambda: (s := receiver.status())["runs_finished"] >= 1
                        and not s["running"] and s, "the invoices job", timeout=600)
    log = "\n".join(p.read_text() for p in sorted((receiver.state_dir / "runs").glob("*.log")))
    assert status["last_exit_code"] == 0, log[-4000:]

    state = requests.get(f"{fresh_sandbox.sage300.base_url}/_sandbox/state", timeout=60).json()
    found = [entry for entry in _ap_entries(state) if entry.get("DocumentNumber") ==
             document_number]
    assert len(found) == 1, f"no AP invoice {document_number} in Sage"
    assert invoice["invoiceId"] in json.dumps(found[0])  # the idempotency key went with it
    # No poll: the only job run was the one the notification started, and it also answered
    # Basware (the job's second task), so AP sees the outcome within that run, not the next.
    assert status["runs_started"] == 1
    basware = requests.get(f"{fresh_sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    answered = [i for tenant in basware["tenants"].values() for i in tenant["invoices"]
                if i["invoiceId"] == invoice["invoiceId"]]
    assert [i["processingStatus"] for i in answered] == ["Transferred"]
    assert answered[0]["transferResponses"][-1]["success"] is True


def _ap_entries(state: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for company in state["companies"].values():
        for batch in company.get("AP/APInvoiceBatches", []):
            entries += batch.get("Invoices", [])
    return entries
