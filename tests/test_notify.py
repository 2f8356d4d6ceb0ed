"""Notifications: one message per new problem, to a webhook and by e-mail, never a secret.

Both receivers are started by the test on free ports, stdlib only: an HTTP server that keeps
each POST (path and JSON body), and an SMTP sink speaking enough SMTP for smtplib (EHLO, AUTH
PLAIN, MAIL, RCPT, DATA, QUIT; `smtpd` is gone since Python 3.12 and aiosmtpd is not a
dependency). The notification settings are in the project's `.env`, as an operator keeps
them; the webhook URL's path carries a token, the SMTP login a password: both are planted
secrets, with the sandbox's own.

The story, through `ml-connector run invoices` as cron runs it (the hook after each run):
a wrong Basware secret fails the job once (nothing sent: under the threshold of 2 in a row),
twice (one message: the job failing), three times (nothing: not new); the secret fixed, the
run succeeds (one message: the failing job resolved, and INV-18825 TransferFailed, new, with
its reason and the command that fixes it); another run (nothing). Then docs/operations.md's
status cron line, as written (bare environment, `--environment prod`, where no job ever ran):
one message, the stale jobs; again: nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from e2e import RUN_TIMEOUT, Project, planted_secrets, project_copy

from ml_connector.notify import Channels, notify, webhook_body
from ml_connector.status import Item, Status, Thresholds
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / ".venv" / "bin" / "ml-connector")
#: A self-signed certificate for 127.0.0.1/localhost (made for test_check.py).
TLS_CERT = Path(__file__).parent / "check_tls" / "localhost-cert.pem"
TLS_KEY = Path(__file__).parent / "check_tls" / "localhost-key.pem"
WEBHOOK_TOKEN = "T0KEN-5ecret-hook-path-7c1e"
SMTP_PASSWORD = "smtp-Pa55word-9f2b"


# --------------------------------------------------------------------------- the receivers


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: Any = self.server
        if server.fail_next:  # as Slack or Teams when they are down
            server.fail_next -= 1
            self.send_response(500)
            self.end_headers()
            return
        server.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """One SMTP session: what smtplib sends for EHLO, AUTH PLAIN, a message and QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        server: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        self.reply("220 sink ESMTP")
        mail: dict[str, Any] = {"rcpt": []}
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO" and server.tls is not None and not server.encrypted(self):
                self.wfile.write(b"250-sink\r\n250 STARTTLS\r\n")
            elif verb == "EHLO":
                self.wfile.write(b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "STARTTLS" and server.tls is not None:
                self.reply("220 ready")
                self.connection = server.tls.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile("rb")
                self.wfile = self.connection.makefile("wb", buffering=0)
                server.tls_sessions += 1
            elif verb == "AUTH":
                _, user, password = base64.b64decode(command.split()[2]).split(b"\0")
                server.logins.append((user.decode(), password.decode()))
                self.reply("235 2.7.0 authenticated")
            elif verb == "MAIL":
                mail["from"] = command
                self.reply("250 OK")
            elif verb == "RCPT":
                mail["rcpt"].append(command)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                server.messages.append(message_from_bytes(data))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:  # RSET, NOOP
                self.reply("250 OK")


@dataclass
class SmtpSink:
    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # set: STARTTLS offered, and nothing else before it
    tls_sessions: int = 0

    @staticmethod
    def encrypted(handler: socketserver.StreamRequestHandler) -> bool:
        return isinstance(handler.connection, ssl.SSLSocket)


@pytest.fixture
def receivers() -> Iterator[tuple[ThreadingHTTPServer, socketserver.ThreadingTCPServer]]:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    hook.posts = []  # type: ignore[attr-defined]
    hook.fail_next = 0  # type: ignore[attr-defined]
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    smtp.sink = SmtpSink()  # type: ignore[attr-defined]
    smtp.daemon_threads = True
    threads = [threading.Thread(target=server.serve_forever, daemon=True)
               for server in (hook, smtp)]
    for thread in threads:
        thread.start()
    yield hook, smtp
    for server in (hook, smtp):
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- the test


def connector(project: Project, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=project.root, env=env or project.env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def test_each_new_problem_is_told_once(fresh_sandbox: Sandbox, tmp_path: Path,
                                       receivers: tuple[Any, Any]) -> None:
    hook, smtp = receivers
    sink: SmtpSink = smtp.sink
    root = project_copy(tmp_path)
    workdir = tmp_path / "work"
    settings = [
        f"ML_CONNECTOR_NOTIFY_WEBHOOK_URL=http://127.0.0.1:{hook.server_port}/hooks/"
        f"{WEBHOOK_TOKEN}",
        "ML_CONNECTOR_NOTIFY_SMTP_HOST=127.0.0.1",
        f"ML_CONNECTOR_NOTIFY_SMTP_PORT={smtp.server_address[1]}",
        "ML_CONNECTOR_NOTIFY_SMTP_USER=ap-alerts",
        f"ML_CONNECTOR_NOTIFY_SMTP_PASSWORD={SMTP_PASSWORD}",
        "ML_CONNECTOR_NOTIFY_EMAIL_TO=ap-lead@example.com, it-ops@example.com",
        "ML_CONNECTOR_TRANSFER_FAILED_AFTER=0s",  # a TransferFailed is a problem at once
        # For the cron line's bare environment: the ledger and Meltano's records.
        f"ML_CONNECTOR_LEDGER_URL=sqlite:///{workdir / 'ledger.sqlite'}",
        f"MELTANO_DATABASE_URI=sqlite:///{workdir / 'meltano.db'}",
    ]
    (root / ".env").write_text("\n".join(settings) + "\n")
    project = Project.create(fresh_sandbox, workdir, root=root)
    wrong = {**project.env, "TAP_BASWARE_CLIENT_SECRET": "not-the-basware-secret"}

    def told() -> list[str]:
        """The texts received since the last call, webhook and e-mail (they must agree)."""
        texts = [body["text"] for _, body in hook.posts]
        mails = [str(message.get_payload(decode=True), "utf-8").replace("\r\n", "\n")
                 for message in sink.messages]
        assert [t.strip() for t in texts] == [m.strip() for m in mails]
        outputs.extend([json.dumps(body) for _, body in hook.posts]
                       + [m.as_string() for m in sink.messages])
        hook.posts.clear()
        sink.messages.clear()
        return texts

    outputs: list[str] = []
    run_outputs: list[str] = []

    def run(env: dict[str, str]) -> int:
        result = connector(project, "run", "invoices", env=env)
        run_outputs.append(result.stdout + result.stderr)
        return result.returncode

    assert run(wrong) != 0
    assert told() == []  # one failure: under the threshold (2 in a row)
    assert run(wrong) != 0
    (text,) = told()
    assert "1 new problem(s)" in text and "job invoices: 2 failed run(s) in a row" in text
    assert "ml-connector run invoices" in text
    assert "notify: sent 1 new problem(s), 0 resolved (webhook at 127.0.0.1, e-mail via " \
           "127.0.0.1" in run_outputs[-1]
    assert run(wrong) != 0
    assert told() == []  # the same problem: told already

    assert run(project.env) == 0
    (text,) = told()
    assert "1 new problem(s), 1 resolved" in text
    new, resolved = text.split("Resolved (1):")
    assert "invoice INV-18825, vendor Polaris Office Group (1400)" in new
    assert "why: GL account 6999-200 does not exist in Sage 300 company SAMINC" in new
    assert "ml-connector retry INV-18825" in new
    assert "job invoices: 2 failed run(s) in a row" in resolved
    assert run(project.env) == 0
    assert told() == []

    # The mail as sent: subject, recipients, the login used (its password not in the mail).
    assert sink.logins and set(sink.logins) == {("ap-alerts", SMTP_PASSWORD)}

    # docs/operations.md's status cron line, as written, in cron's bare environment.
    doc = (ROOT / "docs" / "operations.md").read_text()
    (block,) = re.findall(r"^```crontab\n(.*?)^```", doc, re.M | re.S)
    (line,) = [line for line in block.splitlines() if "status --notify" in line]
    command = line.split(None, 5)[5].replace("/srv/ml-connector", str(root))
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(tmp_path),
                "LOGNAME": os.environ.get("LOGNAME", "cron")}
    for attempt in (1, 2):
        result = subprocess.run(["sh", "-c", command], env=cron_env, capture_output=True,
                                text=True, timeout=RUN_TIMEOUT, check=False)
        assert result.returncode == 1, result.stderr  # never ran in prod: stale
        assert result.stdout == result.stderr == ""  # --quiet: cron mails nothing
        texts = told()
        if attempt == 1:
            (text,) = texts
            assert "job master-data: never ran successfully" in text
            assert "job invoices: never ran successfully" in text
            assert "INV-18825" not in text  # told already, whatever the environment
        else:
            assert texts == []

    state = (workdir / "notifications.json").read_text()
    assert (workdir / "notifications.json").stat().st_mode & 0o777 == 0o600
    secrets = [*planted_secrets(fresh_sandbox), WEBHOOK_TOKEN, SMTP_PASSWORD,
               "not-the-basware-secret"]
    texts = {"messages": "\n".join(outputs), "runs": "\n".join(run_outputs), "state": state}
    assert [name for name, text in texts.items() if any(s in text for s in secrets)] == []


def test_webhook_bodies_for_slack_and_teams() -> None:
    """`text` for Slack and Teams connector webhooks (Slack's markup characters escaped), an
    adaptive card for Teams workflow webhooks."""
    text = "ml-connector: 1 new problem(s)\n\nNew (1):\n- invoice <INV-1> & co"
    assert webhook_body("text", text) == {
        "text": "ml-connector: 1 new problem(s)\n\nNew (1):\n- invoice &lt;INV-1&gt; &amp; co"}
    card = webhook_body("teams", text)["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    blocks = [block["text"] for block in card["content"]["body"]]
    assert blocks == ["ml-connector: 1 new problem(s)", "New (1):\n- invoice <INV-1> & co"]



def test_starttls_a_failed_delivery_and_resolved(receivers: tuple[Any, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, without Meltano: e-mail over STARTTLS (the server's certificate checked
    against a trusted CA file, the login only inside TLS); a webhook that answers 500 is
    named by its host only and tried again at the next evaluation, on that channel alone;
    a problem gone is sent once as resolved, then forgotten."""
    from datetime import UTC, datetime

    hook, smtp = receivers
    sink: SmtpSink = smtp.sink
    sink.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sink.tls.load_cert_chain(TLS_CERT, TLS_KEY)
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_CERT))  # the CA smtplib's context trusts
    channels = Channels.from_settings({
        "ML_CONNECTOR_NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_port}/x/"
                                           f"{WEBHOOK_TOKEN}",
        "ML_CONNECTOR_NOTIFY_WEBHOOK_FORMAT": "teams",
        "ML_CONNECTOR_NOTIFY_SMTP_HOST": "127.0.0.1",
        "ML_CONNECTOR_NOTIFY_SMTP_PORT": str(smtp.server_address[1]),
        "ML_CONNECTOR_NOTIFY_SMTP_STARTTLS": "true",
        "ML_CONNECTOR_NOTIFY_SMTP_USER": "ap-alerts",
        "ML_CONNECTOR_NOTIFY_SMTP_PASSWORD": SMTP_PASSWORD,
        "ML_CONNECTOR_NOTIFY_EMAIL_TO": "ap-lead@example.com"})
    now = datetime.now(UTC)
    stuck = Item(id="transfer_failed:id-1", kind="transfer_failed",
                 title="invoice INV-1, vendor Acme Tools (1200)", since=now, age_seconds=5e4,
                 threshold_seconds=1.44e4, problem=True, reason="Vendor 1200 is inactive",
                 fix=["Activate vendor 1200 in Sage 300, then:", "ml-connector retry INV-1"])

    def status(*items: Item) -> Status:
        return Status(now, "prod", [], list(items), Thresholds())

    hook.fail_next = 1
    sent = notify(status(stuck), channels, tmp_path)
    assert sent.failures == ("webhook at 127.0.0.1: HTTP 500",)
    (mail,) = sink.messages
    assert "invoice INV-1" in str(mail.get_payload()) and sink.tls_sessions == 1
    assert sink.logins == [("ap-alerts", SMTP_PASSWORD)]

    sent = notify(status(stuck), channels, tmp_path)  # the webhook only, this time
    assert sent.failures == () and len(sink.messages) == 1
    ((_, card),) = hook.posts
    blocks = [b["text"] for b in card["attachments"][0]["content"]["body"]]
    assert blocks[0] == f"ml-connector (prod) on {socket.gethostname()}: 1 new problem(s)"
    assert "ml-connector retry INV-1" in blocks[1]

    notify(status(), channels, tmp_path)  # gone: resolved, once on each channel
    assert len(hook.posts) == 2 and len(sink.messages) == 2
    assert "1 resolved" in str(sink.messages[-1]["Subject"])
    notify(status(), channels, tmp_path)
    assert len(hook.posts) == 2 and len(sink.messages) == 2
    assert json.loads((tmp_path / "notifications.json").read_text())["problems"] == {}


def test_where_what_was_sent_is_remembered(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Next to a SQLite ledger; the project's .ml-connector/ for PostgreSQL; a folder that
    outlives a cleaned CI workspace when ML_CONNECTOR_STATE_DIR says so (in `.env` here)."""
    from ml_connector.notify import state_dir

    monkeypatch.delenv("ML_CONNECTOR_STATE_DIR", raising=False)
    assert state_dir(tmp_path, f"sqlite:///{tmp_path / 'db' / 'l.sqlite'}") == tmp_path / "db"
    assert state_dir(tmp_path, "postgresql://u@h/db") == tmp_path / ".ml-connector"
    (tmp_path / ".env").write_text(f"ML_CONNECTOR_STATE_DIR={tmp_path / 'kept'}\n")
    assert state_dir(tmp_path, "postgresql://u@h/db") == tmp_path / "kept"
