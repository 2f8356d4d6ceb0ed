"""`ml-connector check` as an operator runs it: a subprocess reading the Meltano settings (here
from env vars pointing at the sandbox), talking to both simulators over HTTP.

Each misconfiguration the sandbox can mimic is switched on through the simulators' admin API
or the plugin settings, and the check must fail on exactly that line with a reason and a fix.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import project_copy

from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ml_connector.cli", "check"]
PLUGINS = ("TAP_SAGE300", "TARGET_SAGE300", "TAP_BASWARE", "TARGET_BASWARE")
# A self-signed certificate for 127.0.0.1/localhost, valid 2000-2100, made for these tests.
TLS_CERT = Path(__file__).parent / "check_tls" / "localhost-cert.pem"
TLS_KEY = Path(__file__).parent / "check_tls" / "localhost-key.pem"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def plugin_env(sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    """The settings of all four plugins pointed at this sandbox's (free) ports.

    The user id goes in lowercase so the output has to show the uppercase rule at work.
    """
    info = sandbox.info()
    sage, basware = info["sage300"], info["basware"]
    # A proxy or CA bundle of the machine running the tests must not change what is probed.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(tuple(f"{p}_" for p in PLUGINS)) and k.upper() not in (
               "MELTANO_ENVIRONMENT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
               "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    for prefix in PLUGINS:
        if "SAGE300" in prefix:
            env.update({f"{prefix}_BASE_URL": sage["base_url"],
                        f"{prefix}_COMPANY_IDS": json.dumps(sage["company_ids"]),
                        f"{prefix}_USERNAME": sage["username"].lower(),
                        f"{prefix}_PASSWORD": sage["password"]})
        else:
            env.update({f"{prefix}_BASE_URL": basware["base_url"],
                        f"{prefix}_CLIENT_ID": basware["client_id"],
                        f"{prefix}_CLIENT_SECRET": basware["client_secret"]})
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    for name, value in overrides.items():
        for prefix in PLUGINS:
            if name.split("_", 1)[0] in prefix:  # SAGE300_x -> both Sage plugins, etc.
                env[f"{prefix}_{name.split('_', 1)[1]}"] = value
    return env


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def run_json(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    result = run_check(env, "--json")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"no JSON on stdout (exit {result.returncode}): {result.stdout}\n"
                    f"{result.stderr}")
    return result.returncode, report, result.stdout + result.stderr


def by_what(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['system']} {c['what']}": c for c in report["checks"]}


def failed(report: dict[str, Any]) -> dict[str, str]:
    return {f"{c['system']} {c['what']}": c["detail"] for c in report["checks"]
            if c["status"] == "FAIL"}


def set_settings(server_url: str, changes: dict[str, Any]) -> None:
    requests.patch(f"{server_url}/_sandbox/settings", json=changes, timeout=10
                   ).raise_for_status()


def requests_log(server_url: str) -> list[dict[str, Any]]:
    return requests.get(f"{server_url}/_sandbox/requests", timeout=30).json()["requests"]


def assert_no_secret(output: str, sandbox: Sandbox, *more: str) -> None:
    info = sandbox.info()
    for secret in (info["sage300"]["password"], info["sage300"]["password"].upper(),
                   info["basware"]["client_secret"], *more):
        assert secret not in output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- all good


def test_passes_against_the_sandbox_and_only_reads(fresh_sandbox: Sandbox) -> None:
    code, report, output = run_json(plugin_env(fresh_sandbox))

    assert code == 0, output
    assert report["verdict"] == "PASS" and report["failed"] == 0
    checks = by_what(report)
    expected = ["sage300 IIS authentication", "sage300 credentials", "basware token",
                "basware scopes", "basware X-BW-REQUEST-ID"]
    expected += [f"sage300 company {c}" for c in ("SAMINC", "SAMLTD")]
    expected += [f"sage300 {c} {m} permission" for c in ("SAMINC", "SAMLTD")
                 for m in ("AP", "PO", "GL")]
    expected += [f"basware API {api}" for api in (
        "vendors", "accounts", "costCenters", "paymentTerms", "matchingOrders",
        "accountingDocuments", "requestStatus")]
    expected += ["sage300 tap-sage300 fields", "sage300 target-sage300 fields",
                 "meltano master-data companies", "meltano invoice companies",
                 "meltano invoices answered"]
    # The payments job: its tap reads the posted AP documents, its fields checked on their own.
    expected += [f"sage300 {c} posted AP documents" for c in ("SAMINC", "SAMLTD")]
    expected += ["sage300 tap-sage300--payments fields"]
    assert set(expected) <= set(checks)
    assert "all present" in checks["sage300 tap-sage300 fields"]["detail"]
    payments_fields = checks["sage300 tap-sage300--payments fields"]["detail"]
    assert "all present" in payments_fields and "of AP checked" in payments_fields
    assert checks["sage300 SAMINC posted AP documents"]["detail"] == (
        "GET AP/APPostedDocuments?$top=1: 200 OK (tap-sage300--payments, job payments)")
    credentials = checks["sage300 credentials"]["detail"]
    assert "'webapi' sent as WEBAPI" in credentials and "password sent UPPERCASED" in credentials
    # The queue has invoices, the master data APIs are empty: 404 counts as reachable.
    assert "200" in checks["basware API accountingDocuments"]["detail"]
    assert "404, reachable" in checks["basware API vendors"]["detail"]
    assert_no_secret(output, fresh_sandbox)

    # Nothing written: Sage saw only GETs of one record or of a module's $metadata; Basware
    # only GETs besides the token.
    sage_calls = requests_log(fresh_sandbox.sage300.base_url)
    assert sage_calls and all(c["method"] == "GET" for c in sage_calls)
    assert all("%24top=1" in c["query"] or "$top=1" in c["query"]
               or c["path"].endswith("/$metadata") for c in sage_calls)
    assert {c["path"].rsplit("/", 2)[-2] for c in sage_calls
            if c["path"].endswith("/$metadata")} == {"AP", "GL", "PO", "TX"}  # TX: tax codes
    basware_calls = requests_log(fresh_sandbox.basware.base_url)
    writes = [c for c in basware_calls if c["method"] != "GET"]
    assert [(c["method"], c["path"]) for c in writes] == [("POST", "/v1/tokens")]
    api_calls = [c for c in basware_calls if c["path"].startswith("/v1/")
                 and c["path"] != "/v1/tokens"]
    assert {c["path"] for c in api_calls} >= {"/v1/vendors", "/v1/matchingOrders",
                                              "/v1/accountingDocuments"}
    assert all(UUID4.match(c["headers"]["X-BW-REQUEST-ID"]) for c in api_calls)


def test_text_output_is_one_line_per_check_then_a_verdict(fresh_sandbox: Sandbox) -> None:
    result = run_check(plugin_env(fresh_sandbox))

    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(re.match(r"^(PASS|WARN|FAIL)  \S+ +\S.*  — \S", line) for line in lines[:-1]), \
        lines
    assert lines[-1].startswith("VERDICT: PASS")
    assert any(re.match(r"^PASS  sage300 +SAMINC PO permission +— GET PO/POPurchaseOrders", line)
               for line in lines)


# --------------------------------------------------------------------------- Sage 300


def test_no_ap_right_names_the_payments_job(fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.sage300.base_url, {"forbidden_modules": ["AP"]})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    failures = failed(report)
    # AP's vendor list answers for the login; each company's AP right and posted documents.
    assert {"sage300 SAMINC posted AP documents", "sage300 SAMLTD posted AP documents",
            "sage300 SAMLTD AP permission"} <= set(failures)
    detail = failures["sage300 SAMINC posted AP documents"]
    assert "lacks the 'Sage 300 Web API' right" in detail
    assert "The payments job (tap-sage300--payments) reads AP/APPostedDocuments" in detail
    assert by_what(report)["sage300 SAMINC PO permission"]["status"] == "PASS"


def test_wrong_password(fresh_sandbox: Sandbox) -> None:
    code, report, output = run_json(plugin_env(fresh_sandbox, SAGE300_PASSWORD="Not-The-Pass9"))

    assert code == 1 and report["verdict"] == "FAIL"
    detail = failed(report)["sage300 credentials"]
    assert "refused the credentials for user WEBAPI" in detail
    assert "password sent UPPERCASED" in detail
    assert "also refused with the password's case kept" in detail
    assert_no_secret(output, fresh_sandbox, "Not-The-Pass9", "NOT-THE-PASS9")


def test_mixed_case_password_kept_against_a_legacy_install(fresh_sandbox: Sandbox) -> None:
    # The sandbox's default is the legacy install: passwords must arrive UPPERCASED.
    assert fresh_sandbox.info()["sage300"]["password_case_sensitive"] is False
    env = plugin_env(fresh_sandbox, SAGE300_KEEP_PASSWORD_CASE="true")

    code, report, output = run_json(env)

    assert code == 1
    detail = failed(report)["sage300 credentials"]
    assert "password sent with its case kept" in detail
    assert "accepted uppercased" in detail and "set keep_password_case to false" in detail
    assert_no_secret(output, fresh_sandbox)


def test_uppercased_password_against_a_case_sensitive_install(fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.sage300.base_url, {"password_case_sensitive": True})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    detail = failed(report)["sage300 credentials"]
    assert "set keep_password_case to true" in detail


def test_iis_windows_authentication(fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.sage300.base_url, {"iis_windows_auth": True})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    failures = failed(report)
    assert list(failures) == ["sage300 IIS authentication"]  # Basware unaffected
    assert "Negotiate/NTLM" in failures["sage300 IIS authentication"]
    assert "disable Windows authentication" in failures["sage300 IIS authentication"]
    assert "sage300 credentials" not in by_what(report)  # cannot be judged through IIS


def test_missing_module_permission(fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.sage300.base_url, {"forbidden_modules": ["PO"]})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    failures = failed(report)
    assert set(failures) == {"sage300 SAMINC PO permission", "sage300 SAMLTD PO permission"}
    assert "lacks the 'Sage 300 Web API' right" in failures["sage300 SAMINC PO permission"]
    assert by_what(report)["sage300 SAMINC AP permission"]["status"] == "PASS"
    assert by_what(report)["sage300 credentials"]["status"] == "PASS"


def test_unknown_company_id(fresh_sandbox: Sandbox) -> None:
    env = plugin_env(fresh_sandbox, SAGE300_COMPANY_IDS=json.dumps(["SAMINC", "SAMXYZ"]))

    code, report, _ = run_json(env)

    assert code == 1
    failures = failed(report)
    assert list(failures) == ["sage300 company SAMXYZ", "meltano master-data companies"]
    assert "no company 'SAMXYZ'" in failures["sage300 company SAMXYZ"]
    assert "SAMXYZ are read but have no Basware company code" in failures["meltano master-data companies"]
    assert by_what(report)["sage300 company SAMINC"]["status"] == "PASS"


def test_nothing_listening_on_the_sage_port(fresh_sandbox: Sandbox) -> None:
    port = free_port()
    env = plugin_env(fresh_sandbox,
                     SAGE300_BASE_URL=f"http://127.0.0.1:{port}/Sage300WebApi/v1.0/-")

    code, report, _ = run_json(env)

    assert code == 1
    failures = failed(report)
    assert list(failures) == [f"sage300 network 127.0.0.1:{port}"]
    assert "connection refused" in failures[f"sage300 network 127.0.0.1:{port}"]


# --------------------------------------------------------------------------- Basware


def test_wrong_basware_client_secret(fresh_sandbox: Sandbox) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    code, report, output = run_json(plugin_env(fresh_sandbox, BASWARE_CLIENT_SECRET=wrong))

    assert code == 1
    failures = failed(report)
    assert list(failures) == ["basware token"]
    assert "ml-connector-sandbox" in failures["basware token"]
    assert "invalid_client" in failures["basware token"]
    assert_no_secret(output, fresh_sandbox, wrong)


def test_missing_basware_scopes(fresh_sandbox: Sandbox) -> None:
    from mlc_sandbox.data import BASWARE_SCOPES
    allowed = [s for s in BASWARE_SCOPES.split()
               if s not in ("accountingDocuments.write", "matchingOrderLines.write")]
    set_settings(fresh_sandbox.basware.base_url, {"allowed_scopes": " ".join(allowed)})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    failures = failed(report)
    assert list(failures) == ["basware scopes"]  # every read still works
    detail = failures["basware scopes"]
    assert "2 needed scope(s) not granted" in detail
    assert "accountingDocuments.write (tap-basware" in detail
    assert "matchingOrderLines.write (target-basware" in detail


def test_a_client_without_the_payment_scope_names_the_payments_job(
        fresh_sandbox: Sandbox) -> None:
    """paymentResponses are posted under /v1/accountingDocuments: Basware's scope is
    accountingDocuments.write, shared with tap-basware's acknowledgements."""
    from mlc_sandbox.data import BASWARE_SCOPES
    allowed = [s for s in BASWARE_SCOPES.split() if s != "accountingDocuments.write"]
    set_settings(fresh_sandbox.basware.base_url, {"allowed_scopes": " ".join(allowed)})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    failures = failed(report)
    assert list(failures) == ["basware scopes"]
    detail = failures["basware scopes"]
    assert detail.startswith("1 needed scope(s) not granted: accountingDocuments.write (")
    assert "target-basware: payment responses (job payments)" in detail
    assert "Jobs invoices, payments fail without them (HTTP 403)" in detail


def test_a_tax_code_scope_target_basware_asks_for_is_expected(fresh_sandbox: Sandbox) -> None:
    """target-basware's tax_codes stream POSTs /v1/taxCodes: once its scopes setting asks for
    taxCodes.write, a client Basware does not grant it fails the check, naming the job."""
    from mlc_sandbox.data import BASWARE_SCOPES
    granted = [s for s in BASWARE_SCOPES.split() if not s.startswith("taxCodes.")]
    set_settings(fresh_sandbox.basware.base_url, {"allowed_scopes": " ".join(granted)})
    env = plugin_env(fresh_sandbox)
    env["TARGET_BASWARE_SCOPES"] = "vendors.write vendors.read taxCodes.write"

    code, report, _ = run_json(env)

    assert code == 1
    detail = failed(report)["basware scopes"]
    assert detail.startswith("1 needed scope(s) not granted: taxCodes.write (target-basware: "
                             "tax codes (job master-data))")
    assert "Job master-data fails without them (HTTP 403)" in detail

    # Granted: the same client passes.
    set_settings(fresh_sandbox.basware.base_url,
                 {"allowed_scopes": " ".join([*granted, "taxCodes.write"])})
    code, report, output = run_json(env)
    assert code == 0, output
    assert by_what(report)["basware scopes"]["status"] == "PASS"


def test_no_needed_scope_at_all(fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.basware.base_url, {"allowed_scopes": "tasks.read"})

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    assert "grants it none of the needed scopes" in failed(report)["basware token"]


def test_nothing_listening_on_the_basware_port(fresh_sandbox: Sandbox) -> None:
    port = free_port()
    code, report, _ = run_json(plugin_env(fresh_sandbox,
                                          BASWARE_BASE_URL=f"http://127.0.0.1:{port}"))

    assert code == 1
    assert list(failed(report)) == [f"basware network 127.0.0.1:{port}"]


def test_unknown_host(fresh_sandbox: Sandbox) -> None:
    env = plugin_env(fresh_sandbox,
                     SAGE300_BASE_URL="http://sage300.invalid/Sage300WebApi/v1.0/-")

    code, report, _ = run_json(env)

    assert code == 1
    assert "DNS cannot resolve 'sage300.invalid'" in failed(report)["sage300 network "
                                                                    "sage300.invalid:80"]


class _IisNotFound(BaseHTTPRequestHandler):
    """Any HTTPS server that is not the Sage 300 Web API: IIS's HTML 404."""

    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><body><h1>404 - File or directory not found.</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_port() -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_CERT, TLS_KEY)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IisNotFound)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *_: None  # the refused handshake is the point of one test
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_untrusted_tls_certificate(fresh_sandbox: Sandbox, https_port: int) -> None:
    env = plugin_env(fresh_sandbox, SAGE300_BASE_URL=f"https://127.0.0.1:{https_port}"
                                                     "/Sage300WebApi/v1.0/-")

    code, report, _ = run_json(env)

    assert code == 1
    detail = failed(report)[f"sage300 network 127.0.0.1:{https_port}"]
    assert "TLS certificate of 127.0.0.1 not trusted" in detail
    assert "self-signed certificate" in detail and "REQUESTS_CA_BUNDLE" in detail


def test_trusted_tls_but_not_the_web_api(fresh_sandbox: Sandbox, https_port: int) -> None:
    env = plugin_env(fresh_sandbox, SAGE300_BASE_URL=f"https://127.0.0.1:{https_port}/wrong")
    env["REQUESTS_CA_BUNDLE"] = str(TLS_CERT)  # the operator installs the issuing CA

    code, report, _ = run_json(env)

    assert code == 1
    checks = by_what(report)
    network = checks[f"sage300 network 127.0.0.1:{https_port}"]
    assert network["status"] == "PASS" and "certificate valid" in network["detail"]
    assert "TLSv1." in network["detail"]
    assert "not the Sage 300 Web API" in failed(report)["sage300 Web API answers"]


def test_sage_failing_with_server_errors(fresh_sandbox: Sandbox) -> None:
    requests.put(f"{fresh_sandbox.sage300.base_url}/_sandbox/faults",
                 json={"rates": {"500": 1.0}}, timeout=10).raise_for_status()

    code, report, _ = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    detail = failed(report)["sage300 Web API answers"]
    assert "HTTP 500" in detail and "attempt(s)" in detail
    assert "sage300 credentials" not in by_what(report)  # not judged from an error page


# --------------------------------------------------------------------------- the install itself

#: What the consultant sets for the simulator's older install (sage300_schema.py, "Versions"),
#: as environment variables of the plugins' settings and Meltano's `select` extra.
OLDER_FIELD_NAMES = json.dumps({"PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount":
                                "GLExpenseAccount"})
OLDER_SELECT = json.dumps(["gl_accounts.*", "cost_centers.*", "payment_terms.*", "vendors.*",
                           "!vendors.FaxNumber", "!vendors.WebSite", "purchase_orders.*",
                           "purchase_order_lines.*"])


def test_an_older_install_fails_naming_every_missing_field_and_its_fix(
        fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.sage300.base_url, {"version": "older"})

    code, report, output = run_json(plugin_env(fresh_sandbox))

    assert code == 1
    problems = failed(report)
    tap, target = "sage300 tap-sage300 field", "sage300 target-sage300 field"
    assert set(problems) == {f"{tap} AP/APVendors/FaxNumber", f"{tap} AP/APVendors/WebSite",
                             f"{tap} PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount",
                             f"{target} PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount",
                             f"{tap} PO/POGetReceipts",  # added in 2022.2: once, not per field
                             "sage300 tap-sage300 fields", "sage300 target-sage300 fields"}
    assert ("no entity set PO/POGetReceipts. Fix: turn the stream off (`meltano "
            "--no-environment select tap-sage300 --rm po_receipts '*'`)"
            in problems[f"{tap} PO/POGetReceipts"])
    assert ("deselect FaxNumber (`meltano --no-environment select tap-sage300 --exclude vendors "
            "FaxNumber`)"
            in problems[f"{tap} AP/APVendors/FaxNumber"])
    expense = problems[f"{target} PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount"]
    assert ("set target-sage300's field_names to {\"PO/POPurchaseOrders/PurchaseOrderLines/"
            "ExpenseAccount\": \"<its name>\"} (similar names in this install: "
            "GLExpenseAccount") in expense
    warning = by_what(report)[f"{target} AP/APInvoiceBatches/Invoices/InvoiceDetails/"
                              "DistributionDescription"]
    assert warning["status"] == "WARN" and "goes on without it" in warning["detail"]
    assert "4 missing" in problems["sage300 tap-sage300 fields"]
    assert_no_secret(output, fresh_sandbox)
    sage_calls = requests_log(fresh_sandbox.sage300.base_url)
    assert all(c["method"] == "GET" for c in sage_calls)


def test_the_fixes_it_names_make_an_older_install_pass(fresh_sandbox: Sandbox) -> None:
    set_settings(fresh_sandbox.sage300.base_url, {"version": "older"})
    env = plugin_env(fresh_sandbox, SAGE300_FIELD_NAMES=OLDER_FIELD_NAMES)
    env["TAP_SAGE300__SELECT"] = OLDER_SELECT

    code, report, output = run_json(env)

    assert code == 0, output
    checks = by_what(report)
    assert "all present" in checks["sage300 tap-sage300 fields"]["detail"]
    assert "all present" in checks["sage300 target-sage300 fields"]["detail"]
    assert {c["what"] for c in report["checks"] if c["status"] == "WARN"} >= {
        "target-sage300 field AP/APInvoiceBatches/Invoices/InvoiceDetails/"
        "DistributionDescription"}


def test_company_maps_and_acknowledge_are_checked(fresh_sandbox: Sandbox) -> None:
    env = plugin_env(fresh_sandbox)
    env["TAP_SAGE300_COMPANY_IDS"] = json.dumps(["SAMINC", "SAMLTD", "SAMGBR"])
    env["TAP_BASWARE_COMPANY_CODES"] = json.dumps(["US01", "CA01", "GB01"])
    env["TAP_BASWARE_ACKNOWLEDGE"] = "false"

    code, report, _ = run_json(env)

    assert code == 1
    problems = failed(report)
    assert "Sage companies SAMGBR are read but have no Basware company code" in problems[
        "meltano master-data companies"]
    assert "Basware company codes GB01 are read but have no Sage company" in problems[
        "meltano invoice companies"]
    assert "never answered in Basware" in problems["meltano invoices answered"]


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "ml_connector.cli", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert re.fullmatch(r"ml-connector \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_a_project_folder_open_to_other_users_is_a_warning(fresh_sandbox: Sandbox,
                                                           tmp_path: Path) -> None:
    """Meltano writes every plugin's configuration, secrets included, under .meltano/run/
    while a job runs: a folder other users can read passes with a warning naming the fix."""
    project = project_copy(tmp_path)  # .meltano/ as `meltano install` leaves it: 0755
    result = run_check(plugin_env(fresh_sandbox), "--json", "--system", "sage300",
                       "--project-root", str(project))

    assert result.returncode == 0, result.stdout + result.stderr
    secrets_at_rest = by_what(json.loads(result.stdout))["meltano secrets at rest"]
    assert secrets_at_rest["status"] == "WARN"
    assert f"Fix: chmod 700 {project / '.meltano'}" in secrets_at_rest["detail"]
