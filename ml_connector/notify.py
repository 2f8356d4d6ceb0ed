"""Notifications: each new problem of `ml-connector status` told once, to a webhook (Slack,
Teams) and/or by e-mail (SMTP).

When: after every `ml-connector run <job>` (ml_connector/run.py) and on `ml-connector status
--notify` (cron). A problem (an item of `status` past its threshold, with a stable id such as
`transfer_failed:<invoice id>` or `failing_runs:invoices`) is sent once per channel; what was
sent is remembered in `notifications.json` next to the ledger (or in the project's
`.ml-connector/` when the ledger is not a file). A problem that is gone is sent once as
resolved (ML_CONNECTOR_NOTIFY_RESOLVED=false: not) and forgotten, so if it comes back it is
new again. The problems new at one evaluation go in one message, not one per run or record.
A delivery that fails is tried again at the next evaluation; only that channel's.

After a run, jobs without a recent success are not evaluated (nor resolved): the jobs run
on schedules of their own, and one job's run says nothing about another's schedule. `status
--notify` evaluates them; schedule it in the hours the jobs run (docs/operations.md).

Secrets: the webhook URL (its path is the token), the SMTP password and the plugins' secrets
are never in a message, a line of output or the state file. Messages hold what `status`
shows: invoice numbers, vendors, reasons (redacted in the ledger already), ages, commands.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests

from ml_connector.status import (
    AGE_PHRASES,
    Item,
    Status,
    collect,
    connector_settings,
    describe_duration,
)
from ml_connector_core.redaction import Redactor

STATE_FILE = "notifications.json"
MAX_ITEMS_PER_MESSAGE = 20  # the rest: "and N more", `ml-connector status` lists all
TIMEOUT = 15.0
PREFIX = "ML_CONNECTOR_NOTIFY_"


def _true(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Channels:
    """Where messages go, from ML_CONNECTOR_NOTIFY_* settings (environment, else `.env`)."""

    webhook_url: str | None = None
    webhook_format: str = "text"  # text: {"text": ...} (Slack, Teams); teams: adaptive card
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    resolved: bool = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Channels:
        get = settings.get
        fmt = (get(PREFIX + "WEBHOOK_FORMAT") or "text").strip().lower()
        if fmt not in ("text", "teams"):
            raise ValueError(f"{PREFIX}WEBHOOK_FORMAT is {fmt!r}: text or teams")
        to = tuple(a.strip() for a in (get(PREFIX + "EMAIL_TO") or "").split(",") if a.strip())
        return cls(
            webhook_url=(get(PREFIX + "WEBHOOK_URL") or "").strip() or None,
            webhook_format=fmt,
            smtp_host=(get(PREFIX + "SMTP_HOST") or "").strip() or None,
            smtp_port=int(get(PREFIX + "SMTP_PORT") or 25),
            smtp_starttls=_true(get(PREFIX + "SMTP_STARTTLS"), False),
            smtp_user=get(PREFIX + "SMTP_USER") or None,
            smtp_password=get(PREFIX + "SMTP_PASSWORD") or None,
            email_from=get(PREFIX + "EMAIL_FROM") or f"ml-connector@{socket.getfqdn()}",
            email_to=to,
            resolved=_true(get(PREFIX + "RESOLVED"), True),
        )

    @property
    def names(self) -> list[str]:
        found = ["webhook"] if self.webhook_url else []
        if self.smtp_host and self.email_to:
            found.append("email")
        return found

    def secrets(self) -> list[str]:
        """What must never be shown: the whole URL and its path (the token), the password."""
        found = [s for s in (self.webhook_url, self.smtp_password) if s]
        if self.webhook_url:
            path = urlsplit(self.webhook_url).path.strip("/")
            found += [path, *[part for part in path.split("/") if len(part) >= 8]]
        return found

    def where(self, channel: str) -> str:
        """A channel named without its secret: the webhook's host, the mail server."""
        if channel == "webhook" and self.webhook_url:
            return f"webhook at {urlsplit(self.webhook_url).hostname}"
        return f"e-mail via {self.smtp_host}:{self.smtp_port}"


# --------------------------------------------------------------------------- the message


def _item_lines(item: Item) -> list[str]:
    age = AGE_PHRASES.get(item.kind, "{}").format(describe_duration(item.age_seconds))
    lines = [f"- {item.title} ({age})"]
    if item.reason:
        lines.append(f"  why: {item.reason}")
    lines += [f"  {'fix: ' if n == 0 else '     '}{step}" for n, step in enumerate(item.fix)]
    return lines


def message_text(title: str, new: list[Item], resolved: list[dict[str, Any]]) -> str:
    lines = [title]
    if new:
        lines += ["", f"New ({len(new)}):"]
        for item in new[:MAX_ITEMS_PER_MESSAGE]:
            lines += _item_lines(item)
        if len(new) > MAX_ITEMS_PER_MESSAGE:
            lines.append(f"... and {len(new) - MAX_ITEMS_PER_MESSAGE} more")
    if resolved:
        lines += ["", f"Resolved ({len(resolved)}):"]
        lines += [f"- {record['title']}" for record in resolved[:MAX_ITEMS_PER_MESSAGE]]
        if len(resolved) > MAX_ITEMS_PER_MESSAGE:
            lines.append(f"... and {len(resolved) - MAX_ITEMS_PER_MESSAGE} more")
    lines += ["", "`ml-connector status` shows everything that waits."]
    return "\n".join(lines)


def webhook_body(fmt: str, text: str) -> dict[str, Any]:
    """Slack incoming webhooks and Teams (connector) webhooks both take `text`; Teams
    workflow webhooks want an adaptive card."""
    if fmt == "teams":
        return {"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard", "version": "1.4",
                        "body": [{"type": "TextBlock", "text": block, "wrap": True,
                                  **({"weight": "Bolder"} if n == 0 else {})}
                                 for n, block in enumerate(text.split("\n\n"))]}}]}
    # Slack reads &, < and > as markup; Teams shows the entities as the characters.
    return {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}


def send_webhook(channels: Channels, text: str) -> None:
    assert channels.webhook_url
    response = requests.post(channels.webhook_url,
                             json=webhook_body(channels.webhook_format, text), timeout=TIMEOUT)
    if response.status_code >= 300:
        raise RuntimeError(f"HTTP {response.status_code}")


def send_email(channels: Channels, subject: str, text: str) -> None:
    assert channels.smtp_host
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = channels.email_from
    message["To"] = ", ".join(channels.email_to)
    message.set_content(text)
    with smtplib.SMTP(channels.smtp_host, channels.smtp_port, timeout=TIMEOUT) as smtp:
        if channels.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if channels.smtp_user:
            smtp.login(channels.smtp_user, channels.smtp_password or "")
        smtp.send_message(message)


# --------------------------------------------------------------------------- remembering


def state_dir(project_root: Path, ledger_url: str | None) -> Path:
    """$ML_CONNECTOR_STATE_DIR (environment or .env: a folder that outlives the checkout, for
    a CI runner whose workspace is cleaned), else next to a SQLite ledger (its backup goes
    with it), else the project's .ml-connector/."""
    chosen = connector_settings(project_root).get("ML_CONNECTOR_STATE_DIR")
    if chosen:
        return Path(chosen)
    if ledger_url and ledger_url.startswith("sqlite:///"):
        return Path(ledger_url.removeprefix("sqlite:///")).parent
    return project_root / ".ml-connector"


@contextmanager
def _locked(directory: Path) -> Any:
    """One evaluation at a time: master-data and invoices may end together, and each would
    otherwise send the same new problem."""
    import fcntl

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / f"{STATE_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    problems = data.get("problems") if isinstance(data, dict) else None
    return problems if isinstance(problems, dict) else {}


def _save(path: Path, problems: dict[str, dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"version": 1, "problems": problems}, handle, indent=1, sort_keys=True)
    temporary.replace(path)


@dataclass
class Sent:
    new: int = 0
    resolved: int = 0
    failures: tuple[str, ...] = ()


def notify(status: Status, channels: Channels, directory: Path, *,
           evaluated: frozenset[str] | None = None) -> Sent:
    """Send what is new or resolved since the last evaluation, per channel; remember it.
    `evaluated`: the kinds of item the status looked at (None: all); a remembered problem
    of another kind is left as it is, neither resolved nor sent again."""
    names = channels.names
    if not names:
        return Sent()
    redactor = Redactor(channels.secrets())
    host = socket.gethostname()
    where = f" ({status.environment})" if status.environment else ""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    current = {item.id: item for item in status.problems}
    sent = Sent()
    failures: list[str] = []
    with _locked(directory):
        path = directory / STATE_FILE
        known = _load(path)
        for channel in names:
            new = [item for item_id, item in current.items()
                   if channel not in known.get(item_id, {}).get("channels", [])]
            gone = [item_id for item_id, record in known.items()
                    if item_id not in current and channel in record.get("channels", [])
                    and (evaluated is None or record.get("kind") in evaluated)
                    and record.get("environment", status.environment) == status.environment]
            shown_gone = [known[i] for i in gone] if channels.resolved else []
            if new or shown_gone:
                counts = [f"{len(new)} new problem(s)"] if new else []
                counts += [f"{len(shown_gone)} resolved"] if shown_gone else []
                subject = f"ml-connector{where} on {host}: {', '.join(counts)}"
                text = redactor.redact(message_text(subject, new, shown_gone))
                try:
                    if channel == "webhook":
                        send_webhook(channels, text)
                    else:
                        send_email(channels, redactor.redact(subject), text)
                except Exception as exc:  # noqa: BLE001 - said once, tried again next time
                    # The exception's text may quote the URL (its token): only its type.
                    detail = str(exc) if isinstance(exc, RuntimeError) else type(exc).__name__
                    failures.append(f"{channels.where(channel)}: {redactor.redact(detail)}")
                    continue
                sent.new = max(sent.new, len(new))
                sent.resolved = max(sent.resolved, len(shown_gone))
            for item in new:
                record = known.setdefault(item.id, {
                    "kind": item.kind, "title": redactor.redact(item.title),
                    "since": item.since.isoformat(), "channels": []})
                if item.kind in ("failing_runs", "stale"):  # resolved in its environment only
                    record["environment"] = status.environment
                record["channels"] = sorted({*record["channels"], channel})
                record["notified_at"] = now
            for item_id in gone:
                record = known[item_id]
                record["channels"] = [c for c in record["channels"] if c != channel]
                if not record["channels"]:
                    del known[item_id]
        _save(path, known)
    sent.failures = tuple(failures)
    return sent


def _say(out: IO[str], sent: Sent, channels: Channels, errors: IO[str] | None = None
         ) -> None:
    """What was sent (to `out`), what could not be (to `errors`: cron mails stderr)."""
    if sent.new or sent.resolved:
        out.write(f"ml-connector notify: sent {sent.new} new problem(s), {sent.resolved} "
                  f"resolved ({', '.join(channels.where(c) for c in channels.names)})\n")
        out.flush()
    errors = errors or out
    for failure in sent.failures:
        errors.write(f"ml-connector notify: could not send ({failure}); tried again next "
                     "time\n")
    errors.flush()


def notify_status(project_root: Path, ledger_url: str | None, settings: Mapping[str, str],
                  status: Status, out: IO[str]) -> Sent:
    """`ml-connector status --notify`: everything the status evaluated."""
    channels = Channels.from_settings(settings)
    if not channels.names:
        out.write("ml-connector notify: no channel configured (ML_CONNECTOR_NOTIFY_WEBHOOK_URL"
                  " or ML_CONNECTOR_NOTIFY_SMTP_HOST with ML_CONNECTOR_NOTIFY_EMAIL_TO)\n")
        return Sent()
    sent = notify(status, channels, state_dir(project_root, ledger_url))
    _say(out, sent, channels, sys.stderr)
    return sent


def after_run(project_root: Path, environment: str | None, out: IO[str]) -> None:
    """The hook at the end of `ml-connector run <job>`: never changes the run's exit code."""
    from ml_connector.status import Thresholds, ledger_url_for

    try:
        settings = connector_settings(project_root)
        channels = Channels.from_settings(settings)
        if not channels.names:
            return  # nothing configured: not even the status is read
        ledger_url = ledger_url_for(project_root, settings, None)
        status = collect(project_root, environment, ledger_url,
                         Thresholds.from_settings(settings), stale=False)
        sent = notify(status, channels, state_dir(project_root, ledger_url),
                      evaluated=frozenset({"failing_runs", "unanswered", "transfer_failed",
                                           "rejected", "ledger"}))
        _say(out, sent, channels)
    except Exception as exc:  # noqa: BLE001 - the run's result stands; say why, no secret
        out.write(f"ml-connector notify: not evaluated ({type(exc).__name__}: "
                  f"{Redactor([]).redact(str(exc))[:200]})\n")
        out.flush()
