"""Security: planted secrets appear in no output, TLS is verified unless loudly turned off,
the webhook token is neither accepted nor echoed from a URL.

Where the rest of the security requirements are tested:
- OData escaping (no value can change a `$filter` or a key in a URL): hypothesis against the
  Sage 300 simulator, core/tests/test_odata_escaping.py; the targets refuse quotes, slashes
  and `%` in Sage codes by contract, target-sage300/tests/test_bad_input_properties.py.
- Webhook authentication: test_webhooks.py (a missing, wrong, tampered or garbage signature
  is 401 and stores nothing; the token is never printed, stored or passed to the job; serve
  refuses to start without a token; subscribe refuses a receiver with another token).
- `ml-connector check` refusing an untrusted certificate: test_check.py
  (test_untrusted_tls_certificate, test_trusted_tls_but_not_the_web_api).
- Redaction itself (shapes, spellings, precision, log records, ledger bytes on disk):
  core/tests/test_redaction.py, core/tests/test_secrets.py.
- Secrets at rest (Meltano's per-run plugin configuration files, after a SIGKILL too: no file
  holding a secret readable by other users): test_secrets_at_rest.py,
  core/tests/test_run_files.py.

The simulators accept only their demo credentials, so those are the planted secrets, with
every spelling a leak could take (uppercased as Sage gets it, Basic-auth base64, URL- and
JSON-escaped), plus the bearer tokens the Basware simulator issued during the test (read
from the in-process simulator), a planted webhook token given to tap-basware, and the wrong
passwords of the failing runs.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests
import yaml
from e2e import ROOT, Project, sandbox_get
from e2e import outputs as e2e_outputs
from sqlalchemy import create_engine, inspect, text
from test_webhooks import Receiver, notification, sign, start_receiver  # noqa: F401 - fixture

from ml_connector_core.run_summary import parse_summary_line
from mlc_sandbox.data import (
    BASWARE_CLIENT_ID,
    BASWARE_CLIENT_SECRET,
    SAGE_PASSWORD,
    SAGE_USER,
)
from mlc_sandbox.serve import Sandbox

BIN = Path(sys.executable).parent
PLUGINS = ("tap-sage300", "target-basware", "tap-basware", "target-sage300")
WEBHOOK_TOKEN = "wh00k-pl4nted-T0ken-5e1f"  # noqa: S105 - a planted test value
WRONG_SAGE_PASSWORD = "Wr0ng-pl4nted-Sage-PW"  # noqa: S105
WRONG_BASWARE_SECRET = "wr0ng-pl4nted-client-s3cret"  # noqa: S105
TLS_DIR = Path(__file__).parent / "check_tls"
# A credential that was not masked: a scheme followed by something other than the mask
# (with a capital, digit or base64 sign: "Basic credentials" in prose is no credential).
UNMASKED_CREDENTIAL = re.compile(
    r"\b(?:Bearer|Basic)\s+(?!\*\*\*)(?=[\w.~+/=-]*[A-Z0-9+/=])[\w.~+/=-]{8,}")


def spellings(secret: str) -> set[str]:
    """Every form a secret could leak in: as typed, uppercased (Sage's rule), lowercased,
    URL-encoded and JSON-escaped."""
    forms = {secret, secret.upper(), secret.lower()}
    return {f for form in forms for f in (form, quote(form, safe=""), quote_plus(form),
                                          json.dumps(form)[1:-1])}


def basic(user: str, password: str) -> set[str]:
    return {base64.b64encode(f"{u}:{p}".encode()).decode()
            for u in (user, user.upper()) for p in (password, password.upper())}


def planted_secrets(sandbox: Sandbox) -> dict[str, str]:
    """Each forbidden string -> what it is (for the failure message)."""
    secrets: dict[str, str] = {}
    for name, value in (("Sage password", SAGE_PASSWORD), ("Basware secret",
                                                          BASWARE_CLIENT_SECRET),
                        ("webhook token", WEBHOOK_TOKEN),
                        ("wrong Sage password", WRONG_SAGE_PASSWORD),
                        ("wrong Basware secret", WRONG_BASWARE_SECRET)):
        secrets.update({form: name for form in spellings(value)})
    for password in (SAGE_PASSWORD, WRONG_SAGE_PASSWORD):
        secrets.update({form: "Sage Basic header" for form in basic(SAGE_USER, password)})
    for secret in (BASWARE_CLIENT_SECRET, WRONG_BASWARE_SECRET):
        secrets.update({form: "Basware Basic header"
                        for form in basic(BASWARE_CLIENT_ID, secret)})
    # Every bearer token the Basware simulator issued (it runs in this process).
    tokens = list(sandbox.basware.simulator.auth.tokens)
    secrets.update({token: "issued bearer token" for token in tokens})
    return secrets


# -- everything a run leaves behind ------------------------------------------------------------

def ledger_dump(url: str) -> str:
    """Every column of every row of every ledger table, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                repr(tuple(row)) for name in inspect(conn).get_table_names()
                for row in conn.execute(text(f'SELECT * FROM "{name}"')))
    finally:
        engine.dispose()


def meltano_files(project: Project) -> dict[str, str]:
    """Meltano's own files for the runs (system database, run directory with the plugins'
    generated config and logging files); the symlinked plugin environments are skipped."""
    system = project.workdir / "meltano"
    found = {"meltano.db": (project.workdir / "meltano.db").read_bytes().decode("latin-1")}
    for path in system.rglob("*"):
        inside = path.relative_to(system)
        if path.is_file() and not (system / inside.parts[0]).is_symlink():
            found[f"meltano/{inside}"] = path.read_bytes().decode("latin-1")
    return found


def audit(project: Project, *args: str) -> str:
    result = subprocess.run([str(BIN / "ml-connector"), "audit", "--ledger-url",
                             project.ledger_url, *args], cwd=ROOT, env=project.env,
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout + result.stderr


def assert_no_secret(outputs: dict[str, str], secrets: dict[str, str]) -> None:
    for where, content in outputs.items():
        for secret, what in secrets.items():
            assert secret not in content, f"the {what} ({secret[:4]}...) leaked into {where}"
        shown = UNMASKED_CREDENTIAL.search(content)
        assert shown is None, f"an unmasked credential in {where}: {shown.group()[:14]}..."


def test_planted_secrets_appear_in_no_output(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    # Meltano and every plugin at DEBUG: the most a run can say about itself.
    project = Project.create(fresh_sandbox, tmp_path / "project", extra_env={
        "TAP_BASWARE_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "MELTANO_CLI_LOG_LEVEL": "debug"})
    for job in ("master-data", "invoices", "invoices"):  # the second answers Basware
        run = project.run(job)
        assert run.ok, run.output[-4000:]
        summary = parse_summary_line(run.output)
        assert summary is not None and summary["status"] == "success", run.output[-2000:]

    # Failing runs: wrong credentials in each plugin. The error says what is wrong and never
    # echoes them (their logs join the sweep).
    failing = {}
    for plugin, wrong, says in (
            ("tap-sage300", {"password": WRONG_SAGE_PASSWORD}, "refused the credentials"),
            ("target-sage300", {"password": WRONG_SAGE_PASSWORD}, "refused the credentials"),
            ("tap-basware", {"client_secret": WRONG_BASWARE_SECRET},
             "refused the client credentials"),
            ("target-basware", {"client_secret": WRONG_BASWARE_SECRET},
             "refused the client credentials")):
        url = (fresh_sandbox.sage300.base_url if "sage300" in plugin
               else fresh_sandbox.basware.base_url)
        result = _plugin_call(plugin, url, tmp_path, ledger_url=project.ledger_url, **wrong)
        assert result.returncode != 0 and says in result.stderr, (plugin, result.stderr[-2000:])
        failing[f"failing {plugin}"] = result.stdout + result.stderr

    # A person investigating afterwards: the audit commands and the HTML report.
    report = tmp_path / "report.html"
    invoice_key = next(e["invoiceId"] for e in sandbox_get(
        fresh_sandbox.basware.base_url, "state")["tenants"][BASWARE_CLIENT_ID]["invoices"])
    outputs = {
        **e2e_outputs(project),  # run logs, state files, ledger bytes, request logs
        **failing,
        **meltano_files(project),
        **{f"meltano state {job}": project.state(job) for job in ("master-data", "invoices")},
        "ledger tables": ledger_dump(project.ledger_url),
        "audit failures": audit(project, "failures"),
        "audit report": audit(project, "report", "--html", str(report)),
        "audit report HTML": report.read_text(),
        "audit trace": audit(project, "trace", invoice_key),
        "audit replay": audit(project, "replay", "--failed"),
    }
    assert outputs["ledger tables"].count("ap_invoices") > 20  # the dump really holds rows
    secrets = planted_secrets(fresh_sandbox)
    assert any(what == "issued bearer token" for what in secrets.values())
    assert_no_secret(outputs, secrets)


# -- TLS -----------------------------------------------------------------------------------------

class _AnyAnswer(BaseHTTPRequestHandler):
    """An HTTPS server with a self-signed certificate that counts the requests it gets."""

    requests_seen: list[str] = []

    def _answer(self) -> None:
        type(self).requests_seen.append(self.path)
        body = b'{"error": {"code": "NotSage", "message": "not the Web API"}}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def untrusted_https() -> Iterator[tuple[str, list[str]]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_DIR / "localhost-cert.pem", TLS_DIR / "localhost-key.pem")
    seen: list[str] = []
    handler = type("Handler", (_AnyAnswer,), {"requests_seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *_: None  # refused handshakes are the point
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def _plugin_call(plugin: str, url: str, tmp_path: Path, verify_tls: bool = True,
                 **settings: object) -> subprocess.CompletedProcess[str]:
    """Run one plugin against `url` with the demo credentials (or `settings`), as Meltano
    would: a config file, and for a target a record on stdin."""
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config: dict[str, object] = {"verify_tls": verify_tls, "ledger_url": ledger}
    singer = None
    if plugin in ("tap-sage300", "target-sage300"):
        config.update(base_url=f"{url}/Sage300WebApi/v1.0/-", username=SAGE_USER,
                      password=SAGE_PASSWORD, company_ids=["SAMINC"])
    else:
        config.update(base_url=url, client_id=BASWARE_CLIENT_ID,
                      client_secret=BASWARE_CLIENT_SECRET, company_codes=["US01"])
    if plugin == "target-sage300":
        config.pop("company_ids")
        singer = [{"type": "SCHEMA", "stream": "ap_invoices", "key_properties": ["source_id"],
                   "schema": {"properties": {}}},
                  {"type": "RECORD", "stream": "ap_invoices", "record": {
                      "source_id": "tls1", "company": "SAMINC", "vendor_number": "1200",
                      "document_number": "TLS-1", "document_type": "invoice",
                      "document_date": "2026-10-01", "currency": "USD", "net_total": 10,
                      "gross_total": 10, "lines": [{"amount": 10, "gl_account": "6300-100"}]}}]
    if plugin == "target-basware":
        config.pop("company_codes")
        singer = [{"type": "SCHEMA", "stream": "cost_centers", "key_properties": ["externalCode"],
                   "schema": {"properties": {}}},
                  {"type": "RECORD", "stream": "cost_centers", "record": {
                      "externalCode": "TLS-CC1", "costCenterCode": "100", "name": "Admin",
                      "companyCode": "US01", "active": True}}]
    config.update(settings)
    path = tmp_path / f"{plugin}-{verify_tls}.json"
    path.write_text(json.dumps(config))
    stdin = "".join(json.dumps(m) + "\n" for m in singer) if singer else None
    return subprocess.run([str(BIN / plugin), "--config", str(path)], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False)


def test_tls_is_verified_by_default_everywhere() -> None:
    for plugin in PLUGINS:
        about = json.loads(subprocess.run([str(BIN / plugin), "--about", "--format", "json"],
                                          capture_output=True, text=True, timeout=120,
                                          check=True).stdout)
        schema = about["settings"]["properties"]["verify_tls"]
        assert schema.get("default") is True, plugin
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    for kind in ("extractors", "loaders"):
        for plugin in project["plugins"][kind]:
            if "inherit_from" in plugin:  # tap-sage300--payments: its parent's settings
                assert "verify_tls" not in json.dumps(plugin), plugin["name"]
                continue
            settings = {s["name"]: s for s in plugin.get("settings", [])}
            assert settings["verify_tls"].get("value") is True, plugin["name"]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_self_signed_certificate_is_refused_unless_verify_tls_is_loudly_off(
        plugin: str, untrusted_https: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = untrusted_https

    refused = _plugin_call(plugin, url, tmp_path, verify_tls=True)

    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr or \
        "certificate verify failed" in refused.stderr, refused.stderr[-2000:]
    assert seen == []  # the handshake failed: no request, no credentials went out
    assert not re.search(r"verify_tls is OFF|VERIFICATION IS OFF", refused.stderr)

    accepted = _plugin_call(plugin, url, tmp_path, verify_tls=False)

    assert re.search(r"verify_tls is OFF|TLS CERTIFICATE VERIFICATION IS OFF",
                     accepted.stderr), accepted.stderr[-2000:]
    assert seen  # past the handshake: it talked to whoever answered
    assert "CERTIFICATE_VERIFY_FAILED" not in accepted.stderr


# -- webhook token -------------------------------------------------------------------------------

def test_a_webhook_token_in_the_url_is_not_accepted_or_echoed(start_receiver) -> None:  # noqa: F811
    receiver: Receiver = start_receiver()
    body = json.dumps(notification()).encode()
    for query in (f"token={receiver.token}", f"webhookAuthenticationToken={receiver.token}",
                  f"signature={sign(body, receiver.token)}"):
        answer = requests.post(f"{receiver.url}?{query}", data=body, timeout=30,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 401
        assert receiver.token not in answer.text + json.dumps(dict(answer.headers))
    # Signed as Basware signs, with the token also (wrongly) in the URL: accepted, not echoed.
    signed = requests.post(f"{receiver.url}?token={receiver.token}", data=body, timeout=30,
                           headers={"Content-Type": "application/json",
                                    "x-bwapi-signature-256": sign(body, receiver.token)})
    assert signed.status_code == 200
    assert receiver.token not in signed.text + json.dumps(dict(signed.headers))
    receiver.idle()
    output = receiver.stop()
    assert "refused a notification" in output
    assert receiver.token not in output
