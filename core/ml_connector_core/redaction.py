"""Keep secrets out of logs, exceptions and the audit ledger.

Two mechanisms, both always on:
- known secret values (from the plugin config, or added at run time such as a fresh OAuth
  token) are masked wherever they appear, also upper-cased (Sage 300 passwords are sent
  upper-case, BRIEF decision 1), URL-encoded and JSON-escaped;
- credentials recognisable by shape are masked without being known: `Basic <b64>`,
  `Bearer <token>`, `password=...`/`"client_secret": "..."` pairs in text, and the values of
  dict keys that look secret.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"

# What a secret's name ends with. Only the END of a name counts: `client_secret`,
# `clientSecret`, `X-Api-Key`, `access_token` name secrets; `keep_password_case`,
# `token_expiry_calls`, `token_url` and `passwordHint` name settings about them, whose values
# are harmless and must stay readable in logs.
_SECRET_WORDS = (r"(?:password|passwd|pwd|passphrase|secret|token|credential|signature"
                 r"|api[_-]?key|(?:secret|private|access|signing)[_-]?key)s?")

#: Key names whose values are secrets, wherever they appear (config, payloads, headers).
SECRET_KEY = re.compile(rf"(?:{_SECRET_WORDS}|authorization|auth|cookie)$", re.I)

# Secrets shorter than this are not masked as free text: masking "ab" everywhere would wreck
# every log line and hide nothing an attacker could not guess. Key-based masking still applies.
_MIN_SECRET_LEN = 4

_SHAPES = re.compile(
    # An all-lowercase word after the scheme is prose ("Basic authentication"), not a credential.
    r"(?P<scheme>\b(?i:basic|bearer|negotiate|ntlm)\s+)(?=[\w.~+/=-]*[A-Z0-9+/=])[\w.~+/=-]{6,}"
    # key=value / "key": "value" pairs whose key names a secret (see SECRET_KEY), e.g. a
    # logged form body; true/false/null/none are settings, not secrets. (`Authorization:
    # Basic ...` in text is the scheme case above, which keeps the scheme readable.)
    rf"|(?P<key>[\w.-]*?(?i:{_SECRET_WORDS})\b[\"']?\s*[:=]\s*)"
    r"(?!(?i:true|false|null|none)\b)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"'&,;}]+)"
)


# Every _SHAPES match contains one of these (lower-cased). _SHAPES costs ~0.4 ms on a
# 300-character log line, and a run logs tens of thousands of lines that contain none of them.
_SHAPE_WORDS = re.compile("basic|bearer|negotiate|ntlm|pass|pwd|secret|token|credential"
                          "|signature|api|private|access|signing")


# Every SECRET_KEY match or _SHAPES match contains one of these (lower-cased): the shape
# words plus what SECRET_KEY adds. One plain alternation is ~10x faster than _SECRET_WORDS.
_SECRET_OR_SHAPE_WORDS = re.compile(f"{_SHAPE_WORDS.pattern}|auth|cookie")


def _may_have_shape(text: str) -> bool:
    return _SHAPE_WORDS.search(text.lower()) is not None


def _mask_shape(match: re.Match[str]) -> str:
    if match.group("scheme"):
        return match.group("scheme") + MASK
    quote_char = match.group("value")[0]
    masked = quote_char + MASK + quote_char if quote_char in "\"'" else MASK
    return match.group("key") + masked


class Redactor:
    """Masks secret values in strings and nested data.

    `Redactor(secrets)` takes the secret values to hide; `add()` registers more later (e.g. an
    access token obtained during the run). Thread-safe: the pattern is swapped atomically.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    @property
    def secrets(self) -> frozenset[str]:
        """The registered secret values (e.g. to pass on to `install_log_redaction`)."""
        return frozenset(self._secrets)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Redactor:
        """A Redactor for every secret-looking value in a plugin config (nested too).

        Values of keys matching SECRET_KEY are taken, plus passwords embedded in URLs
        (e.g. a `postgresql://user:pw@host/db` ledger URL).
        """
        found: list[str] = []

        def walk(value: Any, secret: bool) -> None:
            if isinstance(value, Mapping):
                for key, item in value.items():
                    walk(item, secret or bool(SECRET_KEY.search(str(key))))
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item, secret)
            elif isinstance(value, str):
                if secret:
                    found.append(value)
                elif "://" in value:
                    try:
                        password = urlsplit(value).password
                    except ValueError:
                        password = None
                    if password:
                        found.append(unquote(password))

        walk(config, False)
        return cls(found)

    def add(self, *secrets: str | None) -> None:
        """Register more secret values (empty, None and very short values are ignored)."""
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= _MIN_SECRET_LEN)
            variants = {
                variant
                for secret in self._secrets
                for variant in (secret, secret.upper(), quote(secret, safe=""),
                                quote_plus(secret), json.dumps(secret)[1:-1],
                                json.dumps(secret, ensure_ascii=False)[1:-1])
            }
            # Longest first so a secret that contains another is masked whole.
            ordered = sorted(variants, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        """The text with known secrets and credential shapes masked."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _SHAPES.sub(_mask_shape, text) if _may_have_shape(text) else text

    def json_is_clean(self, text: str) -> bool:
        """True when ``redact_obj`` would return the document whose JSON is ``text``
        unchanged: no registered secret, no secret-looking key, no credential shape in it.
        Two searches over one string instead of a walk over every value (the ledger stores
        100,000s of records, nearly all clean); False just means "walk it"."""
        pattern = self._pattern
        if pattern is not None and pattern.search(text):
            return False
        return _SECRET_OR_SHAPE_WORDS.search(text.lower()) is None

    def redact_obj(self, value: Any, *, by_key: bool = True) -> Any:
        """A copy of nested dicts/lists with every string redacted and, with `by_key`, the
        values of secret-looking keys masked. `by_key=False` suits documents whose keys are
        field names rather than settings, such as a JSON schema (`"password": {...}`)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {
                key: (
                    MASK
                    if by_key and SECRET_KEY.search(str(key)) and _can_be_secret(item)
                    else self.redact_obj(item, by_key=by_key)
                )
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.redact_obj(item, by_key=by_key) for item in value]
        return value


def _can_be_secret(value: Any) -> bool:
    """False for what no secret is: None, "", booleans (`keep_password_case: false`)."""
    return value is not None and value != "" and not isinstance(value, bool)


_SHAPES_ONLY = Redactor()


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of HTTP headers safe to log: Authorization, API keys and cookies masked."""
    return _SHAPES_ONLY.redact_obj(dict(headers))


class RedactingFilter(logging.Filter):
    """Masks secrets in every record passing through (see `scrub`)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record, self.redactor)
        return True


def scrub(record: logging.LogRecord, redactor: Redactor) -> None:
    """Redact a record in place.

    A record without secrets is left exactly as it is, so formatters that use `args` or
    `exc_info` (the SDK's metric and JSON formatters) keep working. When the message needs
    masking it replaces msg/args; when the traceback does, the masked traceback is appended to
    the message and exc_info dropped, so no formatter can render the raw exception again.
    """
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not hide the log line
        message = f"{record.msg} {record.args}"
    redacted = redactor.redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info:
        trace = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        clean = redactor.redact(trace)
        if clean != trace:
            record.msg, record.args = f"{redacted}\n{clean}", None
            record.exc_info = record.exc_text = None
    elif record.exc_text:
        record.exc_text = redactor.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)


_log_redactor: Redactor | None = None
_install_lock = threading.Lock()


def install_log_redaction(secrets: Iterable[str] = ()) -> Redactor:
    """Make sure no log record shows a secret; returns the process-wide log Redactor.

    Adds a RedactingFilter to the root logger and to every handler that exists now, and wraps
    the log record factory so records are also redacted when handlers are configured later
    (the Singer SDK reconfigures logging when a plugin starts). Calling it again adds secrets.
    """
    global _log_redactor
    with _install_lock:
        if _log_redactor is None:
            redactor = Redactor()
            previous_factory = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous_factory(*args, **kwargs)
                scrub(record, redactor)
                return record

            logging.setLogRecordFactory(factory)
            _log_redactor = redactor
        _log_redactor.add(*secrets)
        log_filter = RedactingFilter(_log_redactor)
        loggers = [logging.getLogger()] + [
            item
            for item in logging.Logger.manager.loggerDict.values()
            if isinstance(item, logging.Logger)
        ]
        handlers = {handler for logger in loggers for handler in logger.handlers}
        for target in [loggers[0], *handlers]:
            if not any(isinstance(f, RedactingFilter) for f in target.filters):
                target.addFilter(log_filter)
        return _log_redactor
