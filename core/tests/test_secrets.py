"""Planted secrets: log them, store them, fail with them; then search everything for them."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import pytest
import requests
from mlc_core_server import Server, respond
from sqlalchemy import column, inspect, select, table
from sqlalchemy.engine import make_url

from ml_connector_core.httppolicy import RetryExhausted, RetryPolicy, request_with_retry
from ml_connector_core.ledger import Action, Entry, Ledger
from ml_connector_core.redaction import Redactor, install_log_redaction

PASSWORD = "S3cr3t-pl4nted-PW"
CLIENT_SECRET = "cl1ent-s3cret-Zq9+/x"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.cGxhbnRlZA.s1gn4ture-planted"
BASIC = base64.b64encode(f"SAGEUSER:{PASSWORD.upper()}".encode()).decode()
CLIENT_BASIC = base64.b64encode(f"client-1:{CLIENT_SECRET}".encode()).decode()
FORBIDDEN = [PASSWORD, PASSWORD.upper(), CLIENT_SECRET, TOKEN, BASIC, CLIENT_BASIC,
             "cl1ent-s3cret-Zq9%2B%2Fx"]

CONFIG = {
    "sage300": {"username": "SAGEUSER", "password": PASSWORD},
    "basware": {"client_id": "client-1", "client_secret": CLIENT_SECRET},
}


def _dump_database(ledger: Ledger) -> str:
    """Every column of every row of every table, as text."""
    lines = []
    with ledger.engine.connect() as conn:
        for name in inspect(conn).get_table_names():
            columns = [column(c["name"]) for c in inspect(conn).get_columns(name)]
            lines += [repr(tuple(row)) for row in conn.execute(select(table(name, *columns)))]
    return "\n".join(lines)


def test_planted_secrets_appear_nowhere(ledger_url: str, tmp_path: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    redactor = Redactor.from_config(CONFIG)
    log_redactor = install_log_redaction(redactor.secrets)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    server = Server()
    try:
        # The OAuth token only exists at run time: register it when it is issued.
        log_redactor.add(TOKEN)
        logger = logging.getLogger("tap_sage300.client")
        logger.info("config: %s", CONFIG)
        logger.debug("headers %s", {"Authorization": f"Basic {BASIC}"})
        logger.info("token response {'access_token': '%s', 'expires_in': 3600}", TOKEN)
        logger.warning("form body: grant_type=client_credentials&client_secret=%s",
                       "cl1ent-s3cret-Zq9%2B%2Fx")

        url = server.script("/v1/tokens", respond(503))
        with pytest.raises(RetryExhausted) as caught:
            request_with_retry(
                requests.Session(), "POST", f"{url}?client_secret={CLIENT_SECRET}",
                policy=RetryPolicy(max_tries=2, base_delay=0.01),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        logger.exception("token request failed: %s", caught.value, exc_info=caught.value)
        try:
            raise PermissionError(f"401 for SAGEUSER with password {PASSWORD}")
        except PermissionError as exc:
            logging.getLogger("target_sage300").error("write failed", exc_info=exc)
            write_error = exc

        with Ledger.open(ledger_url, secrets=redactor) as ledger:
            ledger.redactor.add(TOKEN)
            run = ledger.start_run("target-sage300")
            ledger.record(Entry(
                run.run_id, "invoices", "INV-1", Action.FAILED,
                payload={"Description": f"note {PASSWORD}", "password": PASSWORD,
                         "headers": {"Authorization": f"Bearer {TOKEN}"},
                         "lines": [{"memo": f"client secret {CLIENT_SECRET}"}]},
                error=f"HTTP 401 Authorization: Basic {BASIC}\nbody: {CLIENT_SECRET}",
                schema={"type": "object", "description": f"Bearer {TOKEN}"},
            ))
            ledger.record(Entry(run.run_id, "invoices", "INV-2", Action.FAILED,
                                error=write_error))
            ledger.record(Entry(run.run_id, "tokens", "t", Action.FAILED, error=caught.value))
            ledger.finish_run(run.run_id, "failed", {"last_error": f"Basic {CLIENT_BASIC}",
                                                     "secret": CLIENT_SECRET})
            dump = _dump_database(ledger)
            assert "INV-1" in dump and "HTTP 401" in dump  # the dump really holds the rows
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        server.close()

    captured = capfd.readouterr()
    logs = log.getvalue()
    assert "token request failed" in logs and "PermissionError" in logs
    raw_files = ""
    database = make_url(ledger_url).database
    if make_url(ledger_url).get_backend_name() == "sqlite":
        # The bytes on disk too, WAL included (a secret could sit in a page the dump skips).
        raw_files = "".join(
            path.read_bytes().decode("latin-1")
            for path in Path(database).parent.glob(Path(database).name + "*")
        )
    for where, text in {"logs": logs, "stdout/stderr": captured.out + captured.err,
                        "ledger": dump, "ledger files": raw_files,
                        "exception": str(caught.value)}.items():
        for secret in FORBIDDEN:
            assert secret not in text, f"{secret!r} leaked into {where}"
