"""`ml-connector check`: can this machine reach Sage 300 and Basware with the configured settings?

It reads the plugins' settings exactly as `meltano run` would (`meltano config print`, active
environment, env vars such as TAP_SAGE300_BASE_URL), then runs one cheap check after another
and says, per check, PASS or FAIL with the reason and the fix. Nothing is written to either
system: every call is a GET with `$top=1` / `pageSize=1`, or the OAuth2 token request.

HTTP and auth go through the core clients (Sage300Client, BaswareClient), so the check sees
exactly what the plugins see. Only the network probe (DNS, TCP, TLS) is done with sockets,
because that is where a failure must be told apart layer by layer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ml_connector.check_install import install_checks
from ml_connector.check_result import Check
from ml_connector.project_config import (  # the noqa ones: check.X for `ml-connector webhooks`
    MeltanoError,
    active_environment,  # noqa: F401
    add_project_arguments,
    as_bool,
    as_list,
    find_project_root,  # noqa: F401
    meltano_config,  # noqa: F401
    meltano_executable,  # noqa: F401
    project_from_args,
    read_plugin_configs,
)
from ml_connector_core.basware_api import (
    REQUEST_ID_HEADER,
    BaswareAuthError,
    BaswareClient,
    BaswareError,
    error_messages,
    resolve_base_url,
)
from ml_connector_core.httppolicy import RetryExhausted, RetryPolicy, UnknownOutcome
from ml_connector_core.redaction import Redactor
from ml_connector_core.sage300_api import (
    IIS_WINDOWS_AUTH_HINT,
    Sage300AuthError,
    Sage300Client,
    Sage300Error,
    explain_unauthorized,
    parse_error,
    raise_for_sage_status,
)

# A check must answer in seconds, not ride out the plugins' five-minute retry budget.
CHECK_POLICY = RetryPolicy(connect_timeout=5.0, read_timeout=30.0, max_tries=2,
                           max_elapsed=15.0, base_delay=0.5, max_delay=2.0)

#: tap-sage300--payments (job payments) inherits tap-sage300's login: one connection, its
#: own reads (SAGE_JOB_PROBES) and its own field check.
PAYMENTS_TAP = "tap-sage300--payments"
SAGE_PLUGINS = ("tap-sage300", "target-sage300", PAYMENTS_TAP)
BASWARE_PLUGINS = ("tap-basware", "target-basware")

# One cheap GET per module; $select keeps fat entities (POs with lines) small.
SAGE_MODULE_PROBES = {
    "AP": ("AP/APVendors", "VendorNumber"),
    "PO": ("PO/POPurchaseOrders", "PurchaseOrderSequenceKey"),
    "GL": ("GL/GLAccounts", "UnformattedAccount"),
}

# The resources a job reads beyond the module probes, per plugin that reads them: a Sage
# user's rights are granted per screen, so the module's vendor list proves nothing about them.
SAGE_JOB_PROBES: dict[str, tuple[str, str, str, str]] = {
    # plugin: (what, resource, key field, job)
    PAYMENTS_TAP: ("posted AP documents", "AP/APPostedDocuments", "DocumentNumber",
                   "payments"),
}

# One cheap GET per Basware API the connector uses; a 404 on a list means "reachable, empty".
BASWARE_API_PROBES = {
    "vendors": ("/v1/vendors", {"pageSize": 1}),
    "accounts": ("/v1/accounts", {"pageSize": 1}),
    "costCenters": ("/v1/costCenters", {"pageSize": 1}),
    "paymentTerms": ("/v1/paymentTerms", {"pageSize": 1}),
    "matchingOrders": ("/v1/matchingOrders", {"pageSize": 1}),
    "accountingDocuments": ("/v1/accountingDocuments",
                            {"ProcessingStatus": "WaitingForTransfer", "pageSize": 1}),
    "requestStatus": ("/v1/requestStatus", {"pageSize": 1}),
}
# The vendor and PO sync APIs are the ones that insist on X-BW-REQUEST-ID (BRIEF decision 2).
REQUEST_ID_APIS = ("vendors", "matchingOrders")

# Scope -> who needs it, for which job. Requested all at once; Basware grants what the client
# may have. A scope is named by the first path segment under /v1 (Basware's `<api>.read` /
# `<api>.write`): paymentResponses are posted under accountingDocuments, goods receipts go
# inside the matching order lines.
NEEDED_SCOPES = {
    "vendors.read": "this check", "vendors.write": "target-basware: vendors (job master-data)",
    "accounts.read": "this check",
    "accounts.write": "target-basware: GL accounts (job master-data)",
    "costCenters.read": "this check",
    "costCenters.write": "target-basware: cost centers (job master-data)",
    "paymentTerms.read": "this check",
    "paymentTerms.write": "target-basware: payment terms (job master-data)",
    "matchingOrders.read": "this check",
    "matchingOrders.write": "target-basware: PO headers (job master-data)",
    "matchingOrderLines.write": "target-basware: PO lines and their goods receipts (job "
                                "master-data)",
    "requestStatus.read": "target-basware: import outcomes (job master-data)",
    "accountingDocuments.read": "tap-basware: approved invoices (job invoices); "
                                "target-basware: a lost payment answer looked up (job "
                                "payments)",
    "accountingDocuments.write": "tap-basware: acknowledge, transfer responses (job "
                                 "invoices); target-basware: payment responses (job payments)",
}
# Needed once a plugin asks for them (its `scopes` setting): the streams that use them are
# selected by the project, not by every install.
SCOPE_USES = {
    **NEEDED_SCOPES,
    "taxCodes.write": "target-basware: tax codes (job master-data)",
    "taxCodes.read": "target-basware: tax codes (job master-data)",
    "matchingOrderLines.read": "target-basware: PO lines (job master-data)",
}


@dataclass
class SageConnection:
    base_url: str
    username: str
    password: str
    keep_password_case: bool
    verify_tls: bool
    company_ids: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)


@dataclass
class BaswareConnection:
    base_url: str
    region: str | None
    client_id: str
    client_secret: str
    verify_tls: bool
    plugins: list[str] = field(default_factory=list)
    requested: dict[str, list[str]] = field(default_factory=dict)  # scope -> plugins asking

    def needed_scopes(self) -> dict[str, str]:
        """What the check asks Basware for: the connector's scopes, and every scope one of
        these plugins requests in a run (its `scopes` setting), with who needs it."""
        needed = dict(NEEDED_SCOPES)
        for scope, plugins in self.requested.items():
            needed.setdefault(scope, SCOPE_USES.get(scope) or
                              f"{' and '.join(plugins)} (its scopes setting)")
        return needed


def _company_ids(config: dict[str, Any]) -> list[str]:
    ids = as_list(config.get("company_ids"))
    if config.get("company_id"):
        ids = [*ids, config["company_id"]]
    # target-sage300 names its companies in the Basware company code -> Sage company map.
    mapped = (config.get("stream_map_config") or {}).get("companies")
    if isinstance(mapped, dict):
        ids = [*ids, *mapped.values()]
    return [str(company).strip() for company in ids if str(company).strip()]


def sage_connections(configs: dict[str, dict[str, Any] | None]
                     ) -> tuple[list[SageConnection], list[Check]]:
    """Distinct Sage 300 logins among the plugins (tap and target usually share one)."""
    connections: dict[tuple[Any, ...], SageConnection] = {}
    problems: list[Check] = []
    for plugin in SAGE_PLUGINS:
        config = configs.get(plugin)
        if not config or not any(config.get(k) for k in ("username", "password")):
            continue  # not in meltano.yml, or not a Sage login holder
        missing = [k for k in ("base_url", "username", "password") if not config.get(k)]
        if missing:
            problems.append(Check("meltano", f"{plugin} settings", False, _missing(plugin,
                                                                                    missing)))
            continue
        keep_case = as_bool(config.get("keep_password_case"), False)
        verify = as_bool(config.get("verify_tls"), True)
        key = (config["base_url"].rstrip("/"), config["username"].upper(), config["password"],
               keep_case, verify)
        connection = connections.setdefault(key, SageConnection(
            key[0], config["username"], config["password"], keep_case, verify))
        connection.plugins.append(plugin)
        for company in _company_ids(config):
            if company not in connection.company_ids:
                connection.company_ids.append(company)
    return list(connections.values()), problems


def basware_connections(configs: dict[str, dict[str, Any] | None]
                        ) -> tuple[list[BaswareConnection], list[Check]]:
    """Distinct Basware API clients among the plugins."""
    connections: dict[tuple[Any, ...], BaswareConnection] = {}
    problems: list[Check] = []
    for plugin in BASWARE_PLUGINS:
        config = configs.get(plugin)
        if not config or not any(config.get(k) for k in ("client_id", "client_secret")):
            continue
        missing = [k for k in ("client_id", "client_secret") if not config.get(k)]
        try:
            base_url = resolve_base_url(config.get("region"), config.get("base_url"))
        except ValueError as exc:
            missing.append(f"region ({exc})")
            base_url = ""
        if missing:
            problems.append(Check("meltano", f"{plugin} settings", False, _missing(plugin,
                                                                                    missing)))
            continue
        verify = as_bool(config.get("verify_tls"), True)
        key = (base_url, config["client_id"], config["client_secret"], verify)
        connection = connections.setdefault(key, BaswareConnection(
            base_url, config.get("region"), config["client_id"], config["client_secret"], verify))
        connection.plugins.append(plugin)
        for scope in str(config.get("scopes") or "").split():
            asking = connection.requested.setdefault(scope, [])
            if plugin not in asking:
                asking.append(plugin)
    return list(connections.values()), problems


def _missing(plugin: str, settings: list[str]) -> str:
    env = ", ".join(f"{plugin.upper().replace('-', '_')}_{s.split()[0].upper()}"
                    for s in settings)
    return (f"{plugin} lacks {', '.join(settings)}. Fix: `meltano config set {plugin} <name> "
            f"<value>` (secrets go to .env) or set {env}.")


# --------------------------------------------------------------------------- network probe


def probe_network(system: str, url: str, verify_tls: bool, timeout: float = 5.0) -> Check:
    """DNS, then TCP, then TLS: the first layer that fails is the one to fix."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    what = f"network {host}:{port}"
    proxy = requests.utils.get_environ_proxies(url).get(parts.scheme)
    if proxy:
        return Check(system, what, True, f"through proxy {urlsplit(proxy).hostname} "
                     "(not probed directly; the calls below test the path)")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Check(system, what, False, f"DNS cannot resolve {host!r} ({exc.strerror}). Fix: "
                     "check the host in base_url and this machine's DNS / hosts file.")
    ip = addresses[0][4][0]
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return Check(system, what, False, f"connection refused: nothing listens on {host}:{port} "
                     f"({ip}). Fix: check the port in base_url and that the service is running "
                     "and not blocked by a firewall.")
    except TimeoutError:
        return Check(system, what, False, f"no answer from {host}:{port} ({ip}) within "
                     f"{timeout:g} s: a firewall drops the packets or the host is wrong.")
    except OSError as exc:
        return Check(system, what, False, f"cannot connect to {host}:{port} ({ip}): "
                     f"{exc.strerror or exc}.")
    connect_ms = (time.monotonic() - started) * 1000
    with sock:
        if parts.scheme != "https":
            return Check(system, what, True, f"{_resolved(host, ip)}TCP connect in "
                         f"{connect_ms:.0f} ms; plain HTTP (a real system should use https)")
        return _probe_tls(system, what, sock, host, ip, verify_tls)


def _probe_tls(system: str, what: str, sock: socket.socket, host: str, ip: str,
               verify_tls: bool) -> Check:
    # requests trusts certifi's bundle unless told otherwise: probe with the same trust store.
    cafile = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
              or requests.certs.where())
    context = ssl.create_default_context(cafile=cafile)
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return Check(system, what, False, f"TLS certificate of {host} not trusted: "
                     f"{exc.verify_message}. Fix: install the issuing CA (REQUESTS_CA_BUNDLE) or "
                     "use the host name the certificate was issued for.")
    except (ssl.SSLError, OSError) as exc:
        return Check(system, what, False, f"TLS handshake with {host} failed: {exc}.")
    trust = "certificate valid" if verify_tls else "certificate NOT verified (verify_tls false)"
    return Check(system, what, True, f"{_resolved(host, ip)}{version}, {trust}")


def _resolved(host: str, ip: str) -> str:
    return "" if host == ip else f"{host} resolves to {ip}, "


# --------------------------------------------------------------------------- Sage 300


def check_sage(connection: SageConnection) -> list[Check]:
    system = "sage300"
    checks = [probe_network(system, connection.base_url, connection.verify_tls)]
    if not checks[0].ok:
        return checks
    if not connection.company_ids:
        return [*checks, Check(system, "company ids", False, "no company_ids configured for "
                               f"{', '.join(connection.plugins)}. Fix: set company_ids, e.g. "
                               '["SAMINC"] (Sage 300 org ids).')]

    def client(company: str, keep_case: bool = connection.keep_password_case) -> Sage300Client:
        return Sage300Client(base_url=connection.base_url, company=company,
                             username=connection.username, password=connection.password,
                             keep_password_case=keep_case, policy=CHECK_POLICY,
                             verify_tls=connection.verify_tls)

    probes: dict[tuple[str, str], requests.Response | Exception] = {}

    def probe(company: str, module: str, keep_case: bool = connection.keep_password_case
              ) -> requests.Response | Exception:
        resource, key_field = SAGE_MODULE_PROBES.get(module) or SAGE_JOB_PROBES[module][1:3]
        sage = client(company, keep_case)
        try:
            return sage.call("GET", sage.url(resource),
                             params={"$top": 1, "$select": key_field})
        except (requests.RequestException, RetryExhausted, UnknownOutcome) as exc:
            return exc

    # Credentials and IIS: the first company that exists answers for the login.
    login: requests.Response | Exception | None = None
    for company in connection.company_ids:
        login = probes[(company, "AP")] = probe(company, "AP")
        if not _is_unknown_company(login):
            break
    assert login is not None
    if isinstance(login, Exception):
        return [*checks, Check(system, "Web API answers", False, _transport_failure(login))]
    if login.status_code == 401:
        return [*checks, *_diagnose_401(connection, login, probe)]
    if not _is_json(login) and login.status_code >= 400:
        return [*checks, Check(system, "Web API answers", False, _not_sage(connection, login))]
    if login.status_code >= 500:  # Sage broke before we learnt anything about the login
        try:
            raise_for_sage_status(login, connection.username, "GET AP/APVendors")
        except Sage300Error as exc:
            return [*checks, Check(system, "Web API answers", False, str(exc))]
    checks.append(Check(system, "IIS authentication", True,
                        "requests reach Sage 300 (no Negotiate/NTLM challenge from IIS)"))
    checks.append(_credentials_pass(connection, login))
    for company in connection.company_ids:
        for module in SAGE_MODULE_PROBES:
            if (company, module) not in probes:
                probes[(company, module)] = probe(company, module)
        checks += _company_checks(connection, company, probes)
        if checks[-1].what == f"company {company}" and not checks[-1].ok:
            continue  # an unknown company: said once, nothing else to read there
        for plugin in SAGE_JOB_PROBES:
            if plugin in connection.plugins:
                checks.append(_job_read_check(connection, company, plugin,
                                              probe(company, plugin)))
    return checks


def _job_read_check(connection: SageConnection, company: str, plugin: str,
                    result: requests.Response | Exception) -> Check:
    """Whether the user may read what one job reads beyond the module probes (the payments
    job: the posted AP documents and their balances)."""
    what, resource, _, job = SAGE_JOB_PROBES[plugin]
    check = f"{company} {what}"
    reader = f"{plugin}, job {job}"
    if isinstance(result, Exception):
        return Check("sage300", check, False, f"{_transport_failure(result)} ({reader})")
    try:
        raise_for_sage_status(result, connection.username, f"GET {resource}")
    except Sage300Error as exc:
        return Check("sage300", check, False, f"{exc} The {job} job ({plugin}) reads "
                     f"{resource} and fails without it.")
    return Check("sage300", check, True, f"GET {resource}?$top=1: {result.status_code} "
                 f"{result.reason} ({reader})")


def _credentials_pass(connection: SageConnection, response: requests.Response) -> Check:
    if response.status_code == 404:  # every configured company is unknown: login not proven
        return Check("sage300", "credentials", False, "not verified: Sage answered 404 for "
                     "every configured company, so no call could prove the login. Either the "
                     "company ids are wrong (see below) or base_url does not end in "
                     f"/Sage300WebApi/v1.0/- (it is {connection.base_url}).")
    return Check("sage300", "credentials", True, f"accepted; {_credential_rule(connection)}")


def _credential_rule(connection: SageConnection) -> str:
    user = connection.username
    shown = f"user id {user!r} sent as {user.upper()}" if user != user.upper() else \
        f"user id {user} sent uppercased"
    if connection.keep_password_case:
        return f"{shown}; password sent with its case kept (keep_password_case is true)"
    return f"{shown}; password sent UPPERCASED (keep_password_case is false)"


def _diagnose_401(connection: SageConnection, response: requests.Response, probe: Any
                  ) -> list[Check]:
    reason = explain_unauthorized(response, connection.username)
    if reason == IIS_WINDOWS_AUTH_HINT:
        return [Check("sage300", "IIS authentication", False,
                      f"401 with a Negotiate/NTLM challenge: {reason} (credentials, companies "
                      "and modules are checked once IIS lets requests through)")]
    iis = Check("sage300", "IIS authentication", True,
                "Sage 300 itself answered (Basic challenge), IIS lets requests through")
    rule = _credential_rule(connection)
    # A case mismatch is the classic silent 401: try the other case once to name the fix.
    if connection.password != connection.password.upper():
        company = response.url.split("/-/")[-1].split("/")[0] if "/-/" in response.url \
            else connection.company_ids[0]
        other = probe(company, "AP", not connection.keep_password_case)
        if isinstance(other, requests.Response) and other.status_code != 401:
            # Worded without "setting: value": the log redactor masks such pairs.
            plugins = ", ".join(connection.plugins)
            if connection.keep_password_case:
                fix = ("this install wants the password UPPERCASED (a legacy install): it is "
                       f"accepted uppercased. Fix: set keep_password_case to false ({plugins}).")
            else:
                fix = ("this install compares passwords case-sensitively: the password is "
                       f"accepted with its case kept. Fix: set keep_password_case to true "
                       f"({plugins}).")
            return [iis, Check("sage300", "credentials", False, f"refused ({rule}); {fix}")]
        tried = "also refused with the password UPPERCASED" if connection.keep_password_case \
            else "also refused with the password's case kept"
        return [iis, Check("sage300", "credentials", False, f"{reason} ({rule}; {tried})")]
    return [iis, Check("sage300", "credentials", False, f"{reason} ({rule})")]


def _company_checks(connection: SageConnection, company: str,
                    probes: dict[tuple[str, str], requests.Response | Exception]) -> list[Check]:
    results = {module: probes[(company, module)] for module in SAGE_MODULE_PROBES}
    if all(_is_unknown_company(r) for r in results.values()):
        response = results["AP"]
        assert isinstance(response, requests.Response)
        code, message = parse_error(response)
        return [Check("sage300", f"company {company}", False,
                      f"Sage 300 has no company {company!r} (404 {code}: {message}). Fix: "
                      "company_ids takes Sage 300 org ids (e.g. SAMINC) as shown in Sage's "
                      "company list; module checks skipped.")]
    checks = [Check("sage300", f"company {company}", True, "reachable")]
    for module, result in results.items():
        resource = SAGE_MODULE_PROBES[module][0]
        what = f"{company} {module} permission"
        if isinstance(result, Exception):
            checks.append(Check("sage300", what, False, _transport_failure(result)))
            continue
        try:
            raise_for_sage_status(result, connection.username, f"GET {resource}")
        except Sage300AuthError as exc:
            checks.append(Check("sage300", what, False, str(exc)))
            continue
        except Sage300Error as exc:
            checks.append(Check("sage300", what, False, str(exc)))
            continue
        checks.append(Check("sage300", what, True,
                            f"GET {resource}?$top=1: {result.status_code} {result.reason}"))
    return checks


def _is_unknown_company(result: requests.Response | Exception) -> bool:
    return isinstance(result, requests.Response) and result.status_code == 404


def _is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _not_sage(connection: SageConnection, response: requests.Response) -> str:
    return (f"HTTP {response.status_code} with a non-JSON body from {connection.base_url}: this "
            "is not the Sage 300 Web API. Fix: base_url must end in /Sage300WebApi/v1.0/-.")


def _transport_failure(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed: {exc}"
    return f"no usable answer: {exc}"


# --------------------------------------------------------------------------- Basware


def check_basware(connection: BaswareConnection) -> list[Check]:
    system = "basware"
    checks = [probe_network(system, connection.base_url, connection.verify_tls)]
    if not checks[0].ok:
        return checks
    needed = connection.needed_scopes()
    client = BaswareClient(client_id=connection.client_id,
                           client_secret=connection.client_secret,
                           scopes=" ".join(needed), base_url=connection.base_url,
                           policy=CHECK_POLICY, verify_tls=connection.verify_tls)
    where = (f"region {connection.region} ({connection.base_url})" if connection.region
             and connection.base_url == resolve_base_url(connection.region, None)
             else connection.base_url)
    try:
        granted = client.tokens.granted_scopes
    except BaswareAuthError as exc:
        if exc.status == 400 and "invalid_scope" in str(exc):
            # The credentials are fine; Basware grants this client none of what we need.
            return [*checks, Check(system, "token", False, f"client {connection.client_id} "
                                   "authenticated, but Basware grants it none of the needed "
                                   f"scopes ({' '.join(needed)}). Fix: ask your "
                                   "Basware consultant to grant them.")]
        return [*checks, Check(system, "token", False, str(exc))]
    except (requests.RequestException, RetryExhausted) as exc:
        return [*checks, Check(system, "token", False, _transport_failure(exc))]
    checks.append(Check(system, "token", True, f"issued to client {connection.client_id} at "
                        f"{where}"))
    missing = [scope for scope in needed if scope not in granted]
    if missing:
        needs = "; ".join(f"{scope} ({needed[scope]})" for scope in missing)
        checks.append(Check(system, "scopes", False, f"{len(missing)} needed scope(s) not "
                            f"granted: {needs}. Granted: {' '.join(sorted(granted)) or 'none'}. "
                            f"{_jobs_broken(missing, needed)}Fix: ask your Basware consultant "
                            f"to grant them to client {connection.client_id}."))
    else:
        checks.append(Check(system, "scopes", True,
                            f"all {len(needed)} needed scopes granted"))
    request_ids: dict[str, tuple[str, requests.Response | None]] = {}
    for api, (path, params) in BASWARE_API_PROBES.items():
        request_id = str(uuid.uuid4())
        check, response = _probe_api(client, api, path, params, request_id)
        checks.append(check)
        request_ids[api] = (request_id, response)
    checks.append(_request_id_check(request_ids))
    return checks


def _jobs_broken(missing: list[str], needed: dict[str, str]) -> str:
    """Which jobs the missing scopes stop, from the "(job x)" notes of their uses."""
    jobs: list[str] = []
    for scope in missing:
        for note in re.findall(r"\(jobs? ([^)]*)\)", needed[scope]):
            jobs += [job for job in re.split(r",\s*", note) if job and job not in jobs]
    if not jobs:
        return ""
    return (f"{'Job' if len(jobs) == 1 else 'Jobs'} {', '.join(jobs)} "
            f"{'fails' if len(jobs) == 1 else 'fail'} without them (HTTP 403). ")


def _probe_api(client: BaswareClient, api: str, path: str, params: dict[str, Any],
               request_id: str) -> tuple[Check, requests.Response | None]:
    what = f"API {api}"
    try:
        response = client.request("GET", path, params=params, request_id=request_id)
        if response.status_code in (301, 302, 303, 307):
            # accountingDocuments answers with a pre-signed URL, fetched without Authorization.
            query = "&".join(f"{k}={v}" for k, v in params.items())
            response = client.get_redirected(f"{path}?{query}")
    except BaswareAuthError as exc:
        return Check("basware", what, False, str(exc)), None
    except (requests.RequestException, RetryExhausted, BaswareError) as exc:
        return Check("basware", what, False, _transport_failure(exc)), None
    status = response.status_code
    if status == 404:
        return Check("basware", what, True,
                     f"GET {path}: 404, reachable, no records (Basware's empty list)"), response
    if status == 200:
        return Check("basware", what, True, f"GET {path}: 200, records present"), response
    return Check("basware", what, False, f"GET {path}: HTTP {status}: "
                 f"{error_messages(response)}"), response


def _request_id_check(request_ids: dict[str, tuple[str, requests.Response | None]]) -> Check:
    for api in REQUEST_ID_APIS:
        request_id, response = request_ids[api]
        if response is None:
            continue
        if response.status_code == 400 and REQUEST_ID_HEADER.lower() in response.text.lower():
            return Check("basware", REQUEST_ID_HEADER, False,
                         f"{api} refused our {REQUEST_ID_HEADER} {request_id}: "
                         f"{error_messages(response)}")
    answered = [api for api in REQUEST_ID_APIS if request_ids[api][1] is not None
                and request_ids[api][1].status_code in (200, 404)]
    if not answered:
        return Check("basware", REQUEST_ID_HEADER, False,
                     "not verified: the vendor and PO sync APIs did not answer (see above)")
    request_id, response = request_ids[answered[0]]
    assert response is not None
    amzn = response.headers.get("x-amzn-RequestId")
    echo = f", Basware request id {amzn}" if amzn else ""
    return Check("basware", REQUEST_ID_HEADER, True,
                 f"a UUID v4 per call, accepted by {' and '.join(answered)} "
                 f"(e.g. {request_id}{echo})")


# --------------------------------------------------------------------------- run and report


def run_checks(project_root: Path, environment: str | None, systems: Iterable[str]
               ) -> tuple[list[Check], Redactor]:
    systems = list(systems)
    plugins = [*(SAGE_PLUGINS if "sage300" in systems else ()),
               *(BASWARE_PLUGINS if "basware" in systems else ())]
    redactor = Redactor()
    try:
        configs = read_plugin_configs(project_root, environment, plugins)
    except MeltanoError as exc:
        return [Check("meltano", "configuration", False, str(exc))], redactor
    for config in configs.values():
        if config:
            redactor.add(*Redactor.from_config(config).secrets)
    env_label = environment or "no environment"
    checks: list[Check] = [Check("meltano", "configuration", True,
                                 f"read {', '.join(p for p in plugins if configs.get(p))} from "
                                 f"{project_root / 'meltano.yml'} ({env_label})")]
    if "sage300" in systems:
        connections, problems = sage_connections(configs)
        checks += problems
        if not connections and not problems:
            checks.append(Check("meltano", "sage300 settings", False,
                                "no plugin holds Sage 300 credentials. Fix: configure "
                                "tap-sage300 (base_url, company_ids, username, password)."))
        for sage in connections:
            checks += check_sage(sage)
    if "basware" in systems:
        connections_bw, problems = basware_connections(configs)
        checks += problems
        if not connections_bw and not problems:
            checks.append(Check("meltano", "basware settings", False,
                                "no plugin holds Basware credentials. Fix: configure "
                                "tap-basware (region or base_url, client_id, client_secret)."))
        for basware in connections_bw:
            checks += check_basware(basware)
    # The install's fields are worth checking only once Sage answers the login.
    sage_reachable = "sage300" in systems and any(c.system == "sage300" for c in checks) \
        and all(c.ok for c in checks if c.system == "sage300")
    checks += install_checks(project_root, environment, configs,
                             sage_reachable=sage_reachable)
    return checks, redactor


def render_text(checks: list[Check]) -> str:
    width_system = max(len(c.system) for c in checks)
    width_what = max(len(c.what) for c in checks)
    lines = [f"{c.status}  {c.system:<{width_system}}  {c.what:<{width_what}}  — {c.detail}"
             for c in checks]
    failed = sum(not c.ok for c in checks)
    warned = sum(c.status == "WARN" for c in checks)
    also = f" ({warned} with a warning)" if warned else ""
    if failed:
        lines.append(f"VERDICT: FAIL — {failed} of {len(checks)} checks failed; fix them "
                     f"from the top (later checks may depend on earlier ones){also}")
    else:
        lines.append(f"VERDICT: PASS — all {len(checks)} checks passed{also}")
    return "\n".join(lines)


def render_json(checks: list[Check]) -> str:
    failed = sum(not c.ok for c in checks)
    return json.dumps({
        "verdict": "FAIL" if failed else "PASS",
        "passed": len(checks) - failed,
        "failed": failed,
        "checks": [{"status": c.status, **asdict(c)} for c in checks],
    }, indent=2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_project_arguments(parser)
    parser.add_argument("--system", choices=["sage300", "basware", "both"], default="both")


def main(args: argparse.Namespace) -> int:
    try:
        root, environment = project_from_args(args)
    except (MeltanoError, OSError) as exc:
        print(f"ml-connector check: {exc}", file=sys.stderr)
        return 2
    systems = ["sage300", "basware"] if args.system == "both" else [args.system]
    checks, redactor = run_checks(root, environment, systems)
    # Belt and braces: no message above quotes a secret, and none may slip through.
    for check in checks:
        check.detail = redactor.redact(check.detail)
    print(render_json(checks) if args.json else render_text(checks), flush=True)
    return 1 if any(not c.ok for c in checks) else 0
