"""The Basware simulator over real HTTP: auth, master data, requestStatus, the invoice queue,
webhooks, faults and the request log. No mocks: a real server on loopback, ``requests`` as
the client, a real local webhook receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from mlc_sandbox.basware import BaswareSimulator
from mlc_sandbox.data import BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET, BASWARE_SCOPES
from mlc_sandbox.http import SimulatorServer

CID, SECRET = BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET
DELAY = 0.05
EXTRA_SCOPES = "vendors.delete accounts.delete taskStatus.read"


# -- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    running = SimulatorServer(BaswareSimulator(data="demo", seed=0)).start()
    yield running
    running.stop()


class Bw:
    """A thin client for the simulator, deliberately dumb: tests decide every header."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.admin = f"{base}/_sandbox"
        self._token: str | None = None

    def token(self, scope: str = f"{BASWARE_SCOPES} {EXTRA_SCOPES}") -> str:
        response = requests.post(f"{self.base}/v1/tokens", auth=(CID, SECRET), timeout=10,
                                 data={"grant_type": "client_credentials", "scope": scope})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def headers(self, token: str | None = None, request_id: bool = True) -> dict[str, str]:
        if token is None:
            self._token = self._token or self.token()
            token = self._token
        headers = {"Authorization": f"Bearer {token}"}
        if request_id:
            headers["X-BW-REQUEST-ID"] = str(uuid.uuid4())
        return headers

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) \
            -> requests.Response:
        headers = {**self.headers(token), **kwargs.pop("headers", {})}
        kwargs.setdefault("allow_redirects", False)
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=10,
                                **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, **kwargs)

    def settings(self, **changes: Any) -> None:
        requests.patch(f"{self.admin}/settings", json=changes, timeout=10).raise_for_status()

    def faults(self, **config: Any) -> None:
        requests.put(f"{self.admin}/faults", json=config, timeout=10).raise_for_status()

    def status(self, request_id: str, wait: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            response = self.get(f"/v1/requestStatus/{request_id}")
            assert response.status_code == 200, response.text
            entry = response.json()["requestStatus"][0]
            if not wait or entry["requestStatus"] != "InProgress" or time.monotonic() > deadline:
                return entry
            time.sleep(0.02)

    def items(self, request_id: str) -> dict[str, dict[str, Any]]:
        entry = self.status(request_id)
        return {item["externalCode"]: item for item in entry["systems"][0]["items"]}

    def fetch_redirect(self, response: requests.Response) -> requests.Response:
        assert response.status_code == 302, response.text
        return requests.get(response.headers["Location"], timeout=10)


@pytest.fixture
def bw(server: SimulatorServer) -> Bw:
    client = Bw(server.base_url)
    requests.delete(f"{client.admin}/faults", timeout=10).raise_for_status()
    requests.post(f"{client.admin}/reset", json={"seed": 0, "data": "demo"},
                  timeout=60).raise_for_status()
    client.settings(processing_delay=DELAY, allowed_scopes=f"{BASWARE_SCOPES} {EXTRA_SCOPES}")
    return client


def names(language: str = "en-US", text: str = "Name") -> list[dict[str, str]]:
    return [{"language": language, "translation": text}]


def payment_term(code: str = "N30", company: str = "US01", active: bool = True) -> dict:
    return {"externalCode": f"PT-{company}-{code}", "paymentTermCode": code,
            "paymentTermNames": names(text=code), "validFrom": "2020-01-01",
            "validTo": "2099-12-31",
            "companies": [{"companyCode": company, "inherit": False, "active": active}]}


def vendor(code: str = "1200", company: str = "US01", term: str | None = "N30", **extra: Any) \
        -> dict:
    record = {"externalCode": f"V-{company}-{code}", "vendorCode": code,
              "name": f"Vendor {code}", "companies": [{"companyCode": company}], **extra}
    if term:
        record["paymentTerms"] = {"paymentTermCode": term}
    return record


def account(code: str, company: str = "US01") -> dict:
    return {"externalCode": f"ACC-{company}-{code}", "accountCode": code,
            "accountNames": names(text=f"Account {code}"),
            "companies": [{"companyCode": company, "inherit": False, "active": True}]}


def cost_center(code: str, company: str = "US01") -> dict:
    return {"externalCode": f"CC-{company}-{code}", "costCenterCode": code,
            "costCenterNames": names(text=f"Dept {code}"),
            "companies": [{"companyCode": company, "active": True}]}


def order(number: str = "PO100001", supplier: str = "1200", company: str = "US01") -> dict:
    return {"externalCode": f"PO-{company}-{number}", "orderNumber": number,
            "sourceSystem": "SAGE300", "companyCode": company,
            "organizationElementCode": company, "currencyCode": "USD", "supplierCode": supplier}


def order_line(order_code: str, line: int = 1000) -> dict:
    return {"externalCode": f"{order_code}-{line}", "orderExternalCode": order_code,
            "lineNumber": str(line), "quantity": 10, "matchingMode": "Standard",
            "netSum": 100.0, "isDeleted": False}


def post_ok(bw: Bw, path: str, records: list[dict]) -> str:
    response = bw.post(path, json=records)
    assert response.status_code == 200, response.text
    return response.headers["x-amzn-RequestId"]


def error_codes(response: requests.Response) -> list[str]:
    return [error["code"] for error in response.json()["errors"]]


def messages(response: requests.Response) -> str:
    return " | ".join(error["message"] for error in response.json()["errors"])


def b64url_json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def waiting_invoices(bw: Bw, **params: Any) -> list[dict[str, Any]]:
    """Walk the whole WaitingForTransfer queue the way a correct client must."""
    query = {"ProcessingStatus": "WaitingForTransfer", **params}
    found, token = [], None
    while True:
        extra = {"x-amz-meta-continuationtoken": token} if token else {}
        response = bw.get("/v1/accountingDocuments", params=query, headers=extra)
        if response.status_code == 404:
            return found
        page = bw.fetch_redirect(response)
        assert page.status_code == 200, page.text
        found += page.json()["accountingDocuments"]
        token = page.headers.get("x-amz-meta-continuationtoken")
        if not token:
            return found


def first_waiting(bw: Bw) -> str:
    return waiting_invoices(bw)[0]["invoiceId"]


class Receiver:
    """A real webhook endpoint on 127.0.0.1:0 that records every POST it gets."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.calls.append({"headers": dict(self.headers.items()), "body": body,
                                       "json": json.loads(body)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/basware/notify"

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in self.calls:
                if predicate(call):
                    return call
            time.sleep(0.02)
        raise AssertionError(f"no matching notification in {self.calls}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def subscribe(bw: Bw, url: str, secret: str = "hook-secret-4711", **extra: Any) \
        -> requests.Response:
    item = {"taskType": "AccountingDocuments", "taskSubType": "WaitingForTransfer",
            "subscriptionType": "Webhook", "notificationWebhookURL": url,
            "webhookAuthenticationToken": secret, **extra}
    return bw.post("/v1/subscriptions", json=[item])


def signature_ok(call: dict[str, Any], secret: str,
                 header: str = "x-bwapi-signature-256") -> bool:
    sent = {k.lower(): v for k, v in call["headers"].items()}.get(header.lower())
    expected = "sha256=" + hmac.new(secret.encode(), call["body"], hashlib.sha256).hexdigest()
    return sent is not None and hmac.compare_digest(sent, expected)


# -- tokens ------------------------------------------------------------------------------------

def test_token_shape_and_claims(bw: Bw) -> None:
    response = requests.post(f"{bw.base}/v1/tokens", auth=(CID, SECRET), timeout=10,
                             data={"grant_type": "client_credentials",
                                   "scope": "vendors.read vendors.write"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "vendors.read vendors.write"
    parts = body["access_token"].split(".")
    assert len(parts) == 3
    assert b64url_json(parts[0])["typ"] == "at+jwt"
    claims = b64url_json(parts[1])
    assert claims["sub"] == CID and claims["aud"] == "OpenAPI"
    assert claims["scope"] == "vendors.read vendors.write"
    assert claims["exp"] - claims["iat"] == 3600
    assert {"iss", "jti", "bwcid"} <= set(claims)


@pytest.mark.parametrize(("data", "auth", "status", "error"), [
    ({"scope": "vendors.read"}, (CID, SECRET), 400, "invalid_request"),
    ({"grant_type": "client_credentials"}, (CID, SECRET), 400, "invalid_request"),
    ({"grant_type": "client_credentials", "scope": "vendors.read"}, (CID, "wrong"), 401,
     "invalid_client"),
    ({"grant_type": "client_credentials", "scope": "vendors.read"}, ("someone", SECRET), 401,
     "invalid_client"),
    ({"grant_type": "client_credentials", "scope": "vendors.read"}, None, 401,
     "invalid_client"),
    ({"grant_type": "password", "scope": "vendors.read"}, (CID, SECRET), 400,
     "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "users.read"}, (CID, SECRET), 400,
     "invalid_scope"),
])
def test_token_errors(bw: Bw, data: dict, auth: tuple | None, status: int, error: str) -> None:
    response = requests.post(f"{bw.base}/v1/tokens", auth=auth, data=data, timeout=10)
    assert response.status_code == status
    assert response.json()["error"] == error
    if error == "invalid_request" and "grant_type" not in data:
        assert response.json()["error_description"] == "grant_type field required"


def test_credentials_in_body_are_not_accepted(bw: Bw) -> None:
    response = requests.post(f"{bw.base}/v1/tokens", timeout=10, data={
        "grant_type": "client_credentials", "scope": "vendors.read",
        "client_id": CID, "client_secret": SECRET})
    assert response.status_code == 401


def test_scopes_outside_the_grant_are_dropped_and_enforced(bw: Bw) -> None:
    response = requests.post(f"{bw.base}/v1/tokens", auth=(CID, SECRET), timeout=10,
                             data={"grant_type": "client_credentials",
                                   "scope": "vendors.read users.write exchangeRates.read"})
    assert response.json()["scope"] == "vendors.read"
    token = response.json()["access_token"]
    assert bw.get("/v1/vendors", token=token).status_code == 404  # allowed, just empty
    denied = bw.post("/v1/vendors", token=token, json=[vendor()])
    assert denied.status_code == 403
    error = denied.json()["errors"][0]
    assert (error["code"], error["type"]) == ("ACCESS_TOKEN_VALIDATION_ERROR", "SECURITY")
    assert "vendors.write" in error["message"]


def test_allowed_scopes_setting_limits_the_grant(bw: Bw) -> None:
    bw.settings(allowed_scopes=["accounts.read"])
    response = requests.post(f"{bw.base}/v1/tokens", auth=(CID, SECRET), timeout=10,
                             data={"grant_type": "client_credentials",
                                   "scope": "accounts.read vendors.read"})
    assert response.json()["scope"] == "accounts.read"


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Bearer ",
                                           "Token abc", "Basic bm9ib2R5Om5vcGU="])
def test_api_rejects_missing_or_invalid_credentials(bw: Bw, authorization: str | None) -> None:
    headers = {"X-BW-REQUEST-ID": str(uuid.uuid4())}
    if authorization:
        headers["Authorization"] = authorization
    response = requests.get(f"{bw.base}/v1/accounts", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_token_expires_by_lifetime(bw: Bw) -> None:
    bw.settings(token_lifetime=1)
    response = requests.post(f"{bw.base}/v1/tokens", auth=(CID, SECRET), timeout=10,
                             data={"grant_type": "client_credentials", "scope": BASWARE_SCOPES})
    assert response.json()["expires_in"] == 1
    token = response.json()["access_token"]
    assert bw.get("/v1/accounts", token=token).status_code == 404
    time.sleep(1.1)
    assert bw.get("/v1/accounts", token=token).status_code == 401


def test_token_expires_after_configured_call_count(bw: Bw) -> None:
    bw.faults(token_expiry_calls=3)
    token = bw.token()
    assert [bw.get("/v1/accounts", token=token).status_code for _ in range(4)] == \
        [404, 404, 404, 401]
    fresh = bw.token()
    assert bw.get("/v1/accounts", token=fresh).status_code == 404


def test_basic_auth_is_accepted_on_api_calls(bw: Bw) -> None:
    headers = {"X-BW-REQUEST-ID": str(uuid.uuid4())}
    response = requests.post(f"{bw.base}/v1/paymentTerms", json=[payment_term()],
                             auth=(CID, SECRET), headers=headers, timeout=10)
    assert response.status_code == 200


def test_discovery_documents(bw: Bw) -> None:
    config = requests.get(f"{bw.base}/.well-known/openid-configuration", timeout=10).json()
    assert config["jwks_uri"].endswith("/.well-known/jwks.json")
    keys = requests.get(config["jwks_uri"], timeout=10).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"


def test_unknown_route_answers_like_api_gateway(bw: Bw) -> None:
    response = bw.get("/v1/purchaseOrderz")
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert bw.call("PUT", "/v1/vendors", json=[]).status_code == 403


def test_info_and_secrets(server: SimulatorServer, bw: Bw) -> None:
    info = server.simulator.info(server.base_url)
    assert info == {"base_url": server.base_url, "token_url": f"{server.base_url}/v1/tokens",
                    "client_id": CID, "client_secret": SECRET, "region": "eu",
                    "company_codes": {"SAMINC": "US01", "SAMLTD": "CA01"},
                    "admin_url": f"{server.base_url}/_sandbox"}
    token = bw.token()
    secrets = server.simulator.secrets()
    assert SECRET in secrets and token in secrets
    assert base64.b64encode(f"{CID}:{SECRET}".encode()).decode() in secrets


# -- X-BW-REQUEST-ID -----------------------------------------------------------------------------

SYNC_CALLS = [
    ("GET", "/v1/vendors", None),
    ("POST", "/v1/vendors", [vendor()]),
    ("GET", "/v1/matchingOrders", None),
    ("POST", "/v1/matchingOrders", [order()]),
    ("GET", "/v1/matchingOrderLines?orderExternalCode=PO-1", None),
    ("POST", "/v1/matchingOrderLines", [order_line("PO-1")]),
    ("PATCH", "/v1/vendors/V-1", {"name": "x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), SYNC_CALLS)
@pytest.mark.parametrize("value", [None, "", "not-a-uuid", "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                                   uuid.uuid4().hex])
def test_sync_calls_require_a_uuid4_request_id(bw: Bw, method: str, path: str, body: Any,
                                               value: str | None) -> None:
    headers = {"Authorization": f"Bearer {bw.token()}"}
    if value is not None:
        headers["X-BW-REQUEST-ID"] = value
    response = requests.request(method, f"{bw.base}{path}", json=body, headers=headers,
                                timeout=10)
    assert response.status_code == 400
    assert error_codes(response) == ["PARAMETER_VALIDATION_ERROR"]
    assert "X-BW-REQUEST-ID" in messages(response)


def test_request_id_is_not_required_elsewhere_and_can_be_switched_off(bw: Bw) -> None:
    assert bw.get("/v1/accounts", headers={"X-BW-REQUEST-ID": ""}).status_code == 404
    bw.settings(require_request_id=False)
    assert bw.get("/v1/vendors", headers={"X-BW-REQUEST-ID": ""}).status_code == 404


# -- POST validation and limits ------------------------------------------------------------------

def test_validation_errors_name_each_field(bw: Bw) -> None:
    bad = [
        {"externalCode": "V-BAD-1", "name": "x" * 251, "companies": [{}], "vendorClas": "A"},
        {"externalCode": "V-BAD-2", "vendorCode": "2", "name": "ok",
         "companies": [{"companyCode": "US01"}],
         "addresses": [{"externalCode": "A1", "name": "Home", "addressType": "Home"}]},
    ]
    response = bw.post("/v1/vendors", json=bad)
    assert response.status_code == 400
    body = response.json()
    assert body["hasErrors"] is True and uuid.UUID(body["requestId"])
    errors = {(e["externalCode"], e["info"]): e for e in body["errors"]}
    assert all(e["type"] == "VALIDATION" and e["code"] == "SCHEMA_VALIDATION_ERROR"
               for e in body["errors"])
    assert "'vendorCode' is required" in errors[("V-BAD-1", "$[0].vendorCode")]["message"]
    assert "maximum length of 250" in errors[("V-BAD-1", "$[0].name")]["message"]
    assert "companies[0].companyCode" in errors[("V-BAD-1", "$[0].companies[0].companyCode")][
        "message"]
    assert "vendorClas" in errors[("V-BAD-1", "$[0].vendorClas")]["message"]
    assert "PostalAddress" in errors[("V-BAD-2", "$[1].addresses[0].addressType")]["message"]
    assert bw.get("/v1/vendors/V-BAD-2").status_code == 404  # nothing stored


@pytest.mark.parametrize(("path", "record", "field"), [
    ("/v1/accounts", {**account("1"), "accountNames": [{"language": "en-US"}]},
     "accountNames[0].translation"),
    ("/v1/costCenters", {**cost_center("1"), "costCenterCode": "C" * 26}, "costCenterCode"),
    ("/v1/paymentTerms", {k: v for k, v in payment_term().items() if k != "validTo"},
     "validTo"),
    ("/v1/paymentTerms", {**payment_term(), "validFrom": "1st of May"}, "validFrom"),
    ("/v1/matchingOrders", {**order(), "currencyCode": "DOLLAR"}, "currencyCode"),
    ("/v1/matchingOrderLines", {**order_line("PO-1"), "matchingMode": "Fuzzy"}, "matchingMode"),
    ("/v1/matchingOrderLines", {**order_line("PO-1"), "quantity": "ten"}, "quantity"),
])
def test_each_endpoint_validates_its_entity(bw: Bw, path: str, record: dict, field: str) -> None:
    response = bw.post(path, json=[record])
    assert response.status_code == 400
    assert field in messages(response)


def test_body_must_be_a_json_array_in_a_json_media_type(bw: Bw) -> None:
    assert bw.post("/v1/accounts", json=account("1")).status_code == 400
    assert bw.post("/v1/accounts", json=[]).status_code == 400
    broken = bw.post("/v1/accounts", data=b"[{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and error_codes(broken) == ["SCHEMA_VALIDATION_ERROR"]
    plain = bw.post("/v1/accounts", data=json.dumps([account("1")]),
                    headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    other = bw.post("/v1/accounts", data=json.dumps([account("1")]),
                    headers={"Content-Type": "application/vnd.sandbox+json; charset=utf-8"})
    assert other.status_code == 200


@pytest.mark.parametrize(("path", "limit", "make"), [
    ("/v1/vendors", 200, lambda n: vendor(str(n), term=None)),
    ("/v1/accounts", 500, lambda n: account(str(n))),
    ("/v1/matchingOrders", 500, lambda n: order(f"PO{n}")),
    ("/v1/matchingOrderLines", 100, lambda n: order_line("PO-1", n)),
])
def test_records_per_post_limit(bw: Bw, path: str, limit: int, make: Callable) -> None:
    too_many = bw.post(path, json=[make(n) for n in range(limit + 1)])
    assert too_many.status_code == 400
    assert error_codes(too_many) == ["PARAMETER_VALIDATION_ERROR"]
    assert str(limit) in messages(too_many)
    assert bw.post(path, json=[make(n) for n in range(limit)]).status_code == 200


def test_body_over_six_megabytes_is_refused(bw: Bw) -> None:
    record = {**account("1"), "text1": "x" * 250}
    body = json.dumps([record]).encode()
    padded = body[:-1] + b" " * (6 * 1024 * 1024 - len(body) + 1) + b"]"
    response = bw.post("/v1/accounts", data=padded, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_duplicate_external_codes_in_one_request(bw: Bw) -> None:
    response = bw.post("/v1/accounts", json=[account("1"), account("1")])
    assert response.status_code == 400
    assert error_codes(response) == ["DATA_VALIDATION_FAILED"]


def test_upsert_echoes_records_and_overwrites_fully(bw: Bw) -> None:
    first = {**account("6100-100"), "taxCode": "T1", "text1": None}
    response = bw.post("/v1/accounts", json=[first])
    assert response.status_code == 200
    assert uuid.UUID(response.headers["x-amzn-RequestId"]).version == 4
    echoed = response.json()[0]
    assert echoed["taxCode"] == "T1" and "text1" not in echoed and echoed["lastUpdated"]
    again = bw.post("/v1/accounts", json=[account("6100-100")]).json()[0]
    assert "taxCode" not in again and again["lastUpdated"] > echoed["lastUpdated"]
    stored = bw.get("/v1/accounts/ACC-US01-6100-100").json()
    assert stored == again


# -- asynchronous processing -----------------------------------------------------------------------

def test_request_status_is_in_progress_then_success(bw: Bw) -> None:
    bw.settings(processing_delay=0.4)
    request_id = post_ok(bw, "/v1/paymentTerms", [payment_term("N30"), payment_term("N45")])
    early = bw.status(request_id, wait=False)
    assert early["requestStatus"] == "InProgress"
    assert {i["status"] for i in early["systems"][0]["items"]} == {"InProgress"}
    time.sleep(0.45)
    entry = bw.status(request_id, wait=False)
    assert entry["requestStatus"] == "Success"
    assert {k: entry[k] for k in ("requestId", "entityType", "entityVersion", "operationType",
                                  "changedBy")} == {
        "requestId": request_id, "entityType": "PaymentTerm", "entityVersion": "PaymentTermV1",
        "operationType": "POST", "changedBy": CID}
    system = entry["systems"][0]
    assert system["system"] == "P2P" and system["systemStatus"] == "Success"
    assert [i["status"] for i in system["items"]] == ["Success", "Success"]
    assert system["items"][0] == {"externalCode": "PT-US01-N30", "parentExternalCode": None,
                                  "status": "Success", "errors": []}


def test_identical_repost_is_not_processed(bw: Bw) -> None:
    post_ok(bw, "/v1/paymentTerms", [payment_term()])
    bw.status(post_ok(bw, "/v1/accounts", [account("1")]))
    repost = post_ok(bw, "/v1/accounts", [account("1"), account("2")])
    items = bw.items(repost)
    assert items["ACC-US01-1"]["status"] == "NotProcessed"
    assert items["ACC-US01-2"]["status"] == "Success"
    assert bw.status(repost)["requestStatus"] == "Success"


def test_full_purchase_order_chain_succeeds_in_order(bw: Bw) -> None:
    post_ok(bw, "/v1/paymentTerms", [payment_term("N30")])
    post_ok(bw, "/v1/vendors", [vendor("1200")])
    post_ok(bw, "/v1/matchingOrders", [order("PO100001", "1200")])
    lines = post_ok(bw, "/v1/matchingOrderLines",
                    [order_line("PO-US01-PO100001", 1000), order_line("PO-US01-PO100001", 2000)])
    assert bw.status(lines)["requestStatus"] == "Success"


def test_business_errors_show_up_in_request_status(bw: Bw) -> None:
    post_ok(bw, "/v1/paymentTerms", [payment_term("N30", "US01")])
    vendors = post_ok(bw, "/v1/vendors", [
        vendor("1200"), vendor("1210", term="N99"),
        vendor("1220", paymentMeans=[{"paymentMeansCode": "A1", "currencyCode": "EUR"}])])
    orders = post_ok(bw, "/v1/matchingOrders", [order("PO1", "1200"), order("PO2", "9999")])
    lines = post_ok(bw, "/v1/matchingOrderLines", [order_line("PO-US01-PO1"),
                                                   order_line("PO-US01-NOPE")])
    master = post_ok(bw, "/v1/accounts", [account("1", "US01"), account("2", "ZZ99")])
    centers = post_ok(bw, "/v1/costCenters", [cost_center("100", "XX")])
    terms = post_ok(bw, "/v1/paymentTerms", [payment_term("N60", "GB01")])

    vendor_items = bw.items(vendors)
    assert vendor_items["V-US01-1200"]["status"] == "Success"
    assert vendor_items["V-US01-1210"]["errors"][0] == {
        "type": "Error", "message": "Payment term N99 does not exist for company US01",
        "category": "DataValidation"}
    assert "Currency EUR is not active" in vendor_items["V-US01-1220"]["errors"][0]["message"]
    assert bw.status(vendors)["requestStatus"] == "Error"
    order_items = bw.items(orders)
    assert order_items["PO-US01-PO1"]["status"] == "Success"
    assert order_items["PO-US01-PO2"]["errors"][0]["message"] == \
        "Supplier 9999 does not exist for company US01"
    line_items = bw.items(lines)
    assert line_items["PO-US01-PO1-1000"]["status"] == "Success"
    assert "PO-US01-NOPE does not exist" in line_items["PO-US01-NOPE-1000"]["errors"][0]["message"]
    assert bw.items(master)["ACC-ZZ99-2"]["errors"][0]["message"] == \
        "Record skipped due to wrong or missing CompanyCode 'ZZ99'"
    assert bw.items(centers)["CC-XX-100"]["status"] == "Error"
    assert bw.items(terms)["PT-GB01-N60"]["status"] == "Error"


def test_identical_repost_of_a_failed_record_stays_out_of_p2p(bw: Bw) -> None:
    failed = post_ok(bw, "/v1/vendors", [vendor("1200", term="N30")])
    assert bw.items(failed)["V-US01-1200"]["status"] == "Error"
    post_ok(bw, "/v1/paymentTerms", [payment_term("N30")])
    repost = post_ok(bw, "/v1/vendors", [vendor("1200", term="N30")])
    assert bw.items(repost)["V-US01-1200"]["status"] == "NotProcessed"
    orders = post_ok(bw, "/v1/matchingOrders", [order("PO1", "1200")])
    assert bw.items(orders)["PO-US01-PO1"]["status"] == "Error"  # the vendor never reached P2P
    changed = post_ok(bw, "/v1/vendors", [vendor("1200", term="N30", description="resend")])
    assert bw.items(changed)["V-US01-1200"]["status"] == "Success"


def test_overtaken_version_is_record_expired(bw: Bw) -> None:
    bw.settings(processing_delay=0.3)
    old = post_ok(bw, "/v1/accounts", [account("1")])
    new = post_ok(bw, "/v1/accounts", [{**account("1"), "taxCode": "T2"}])
    assert bw.items(old)["ACC-US01-1"]["status"] == "RecordExpired"
    assert bw.items(new)["ACC-US01-1"]["status"] == "Success"
    assert bw.status(old)["requestStatus"] == "Success"


def test_request_status_list_acknowledge_and_405(bw: Bw) -> None:
    bad = post_ok(bw, "/v1/accounts", [account("1", "ZZ99")])
    good = post_ok(bw, "/v1/accounts", [account("2")])
    bw.status(bad)
    bw.status(good)
    listed = bw.get("/v1/requestStatus").json()["requestStatus"]  # default: status=Error
    assert [e["requestId"] for e in listed] == [bad]
    by_type = bw.get("/v1/requestStatus", params={"entityType": "Account"}).json()
    assert {e["requestId"] for e in by_type["requestStatus"]} == {bad, good}
    ignored = bw.get("/v1/requestStatus", params={"status": "Success",
                                                  "ignoreSuccessfullItems": "true"}).json()
    assert ignored["requestStatus"][0]["systems"][0]["items"] == []
    single = bw.get(f"/v1/requestStatus/{good}", params={"ignoreSuccessfulItems": "true"})
    assert single.json()["requestStatus"][0]["systems"][0]["items"] == []

    ack = bw.post("/v1/requestStatus/acknowledge", json={"requestIds": [bad, good]})
    assert ack.status_code == 200
    assert [e["requestStatus"] for e in ack.json()["requestStatus"]] == \
        ["AcknowledgedError", "AcknowledgedSuccess"]
    assert bw.post("/v1/requestStatus/acknowledge",
                   json={"requestIds": [bad]}).status_code == 405
    assert bw.get("/v1/requestStatus").status_code == 404  # no unacknowledged errors left
    assert bw.post("/v1/requestStatus/acknowledge",
                   json={"requestIds": [str(uuid.uuid4())]}).status_code == 404
    assert bw.get(f"/v1/requestStatus/{uuid.uuid4()}").status_code == 404


def test_in_progress_request_cannot_be_acknowledged(bw: Bw) -> None:
    bw.settings(processing_delay=5)
    pending = post_ok(bw, "/v1/accounts", [account("1")])
    response = bw.post("/v1/requestStatus/acknowledge", json={"requestIds": [pending]})
    assert response.status_code == 400


# -- GET lists, single records, PATCH, DELETE -----------------------------------------------------

def test_paging_with_continuation_header(bw: Bw) -> None:
    for n in range(7):
        post_ok(bw, "/v1/accounts", [account(str(n), "US01" if n % 2 == 0 else "CA01")])
    seen, token, pages = [], None, 0
    while True:
        headers = {"x-amz-meta-continuationtoken": token} if token else {}
        response = bw.get("/v1/accounts", params={"pageSize": 3}, headers=headers)
        assert response.status_code == 200
        seen += [a["accountCode"] for a in response.json()["accounts"]]
        pages += 1
        token = response.headers.get("x-amz-meta-continuationtoken")
        if not token:
            break
    assert pages == 3 and seen == [str(n) for n in range(7)]

    first = bw.get("/v1/accounts", params={"pageSize": 3})
    token = first.headers["x-amz-meta-continuationtoken"]
    other_query = bw.get("/v1/accounts", params={"pageSize": 2},
                         headers={"x-amz-meta-continuationtoken": token})
    assert other_query.status_code == 400
    unknown = bw.get("/v1/accounts", params={"pageSize": 3},
                     headers={"x-amz-meta-continuationtoken": str(uuid.uuid4())})
    assert unknown.status_code == 400
    replay = bw.get("/v1/accounts", params={"pageSize": 3},
                    headers={"x-amz-meta-continuationtoken": token})
    assert [a["accountCode"] for a in replay.json()["accounts"]] == ["3", "4", "5"]


def test_list_filters_and_404_when_empty(bw: Bw) -> None:
    stamps = [post_ok(bw, "/v1/accounts", [account(str(n), company)])
              for n, company in enumerate(["US01", "CA01", "US01"])]
    assert len(stamps) == 3
    canada = bw.get("/v1/accounts", params={"companyCode": "CA01"}).json()["accounts"]
    assert [a["accountCode"] for a in canada] == ["1"]
    middle = bw.get("/v1/accounts/ACC-CA01-1").json()["lastUpdated"]
    after = bw.get("/v1/accounts", params={"lastUpdated": middle}).json()["accounts"]
    assert [a["accountCode"] for a in after] == ["2"]  # strictly after
    empty = bw.get("/v1/accounts", params={"companyCode": "GB01"})
    assert empty.status_code == 404
    assert empty.json()["message"] == "Request was successful and no records were found"
    assert bw.get("/v1/accounts", params={"pageSize": 501}).status_code == 400
    assert bw.get("/v1/accounts", params={"pageSize": "ten"}).status_code == 400
    assert bw.get("/v1/accounts", params={"lastUpdated": "yesterday"}).status_code == 400


def test_vendors_use_the_vendor_entities_envelope(bw: Bw) -> None:
    post_ok(bw, "/v1/vendors", [vendor("1200", term=None)])
    assert [v["vendorCode"] for v in bw.get("/v1/vendors").json()["vendorEntities"]] == ["1200"]
    assert bw.get("/v1/vendors", params={"pageSize": 500}).status_code == 200
    assert bw.get("/v1/vendors", params={"pageSize": 501}).status_code == 400


def test_matching_order_lines_need_their_order(bw: Bw) -> None:
    post_ok(bw, "/v1/matchingOrderLines", [order_line("PO-A", 1), order_line("PO-B", 1)])
    assert bw.get("/v1/matchingOrderLines").status_code == 400
    lines = bw.get("/v1/matchingOrderLines", params={"orderExternalCode": "PO-A"}).json()
    assert [line["externalCode"] for line in lines["matchingOrderLines"]] == ["PO-A-1"]
    assert bw.get("/v1/matchingOrderLines", params={"orderExternalCode": "PO-A",
                                                    "pageSize": 101}).status_code == 400


def test_get_single_and_patch(bw: Bw) -> None:
    post_ok(bw, "/v1/accounts", [{**account("1"), "taxCode": "T1"}])
    assert bw.get("/v1/accounts/ACC-US01-NOPE").status_code == 404
    patched = bw.call("PATCH", "/v1/accounts/ACC-US01-1", json={"text1": "new", "taxCode": None})
    assert patched.status_code == 200
    assert patched.json()["text1"] == "new" and patched.json()["taxCode"] == "T1"
    assert bw.status(patched.headers["x-amzn-RequestId"])["operationType"] == "PATCH"
    mismatch = bw.call("PATCH", "/v1/accounts/ACC-US01-1", json={"externalCode": "OTHER"})
    assert mismatch.status_code == 400 and error_codes(mismatch) == ["EXTERNAL_CODE_MISMATCH"]
    missing = bw.call("PATCH", "/v1/accounts/ACC-US01-NOPE", json={"text1": "x"})
    assert missing.status_code == 404
    invalid = bw.call("PATCH", "/v1/accounts/ACC-US01-1", json={"accountCode": "x" * 26})
    assert invalid.status_code == 400 and "accountCode" in messages(invalid)


def test_delete_single_and_by_last_updated(bw: Bw) -> None:
    post_ok(bw, "/v1/accounts", [account("1"), account("2"), account("3")])
    single = bw.call("DELETE", "/v1/accounts", json={"externalCode": "ACC-US01-1"})
    assert single.status_code == 200 and single.json()["taskStatus"] == "Completed"
    assert bw.call("DELETE", "/v1/accounts", json={"externalCode": "ACC-US01-1"}).status_code \
        == 404
    bulk = bw.call("DELETE", "/v1/accounts", json={"lastUpdated": "0001-01-01"})
    assert bulk.status_code == 202
    body = bulk.json()
    assert set(body) == {"statusApiLink", "taskName", "taskStatus"}
    link = body["statusApiLink"].replace(bw.base, "")
    time.sleep(DELAY + 0.02)
    assert bw.get(link).json() == {"taskStatus": "Completed", "recordCount": 2}
    assert bw.get("/v1/accounts").status_code == 404
    assert bw.call("DELETE", "/v1/accounts", json={}).status_code == 400


def test_delete_needs_the_delete_scope(bw: Bw) -> None:
    token = bw.token("accounts.read accounts.write")
    response = bw.call("DELETE", "/v1/accounts", token=token, json={"externalCode": "x"})
    assert response.status_code == 403


# -- accountingDocuments queue ---------------------------------------------------------------------

def test_queue_is_served_through_one_time_presigned_redirects(bw: Bw) -> None:
    response = bw.get("/v1/accountingDocuments",
                      params={"ProcessingStatus": "WaitingForTransfer", "pageSize": 10})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{bw.base}/_s3/exports/") and "X-Amz-Signature=" in location
    assert "x-amz-meta-continuationtoken" not in response.headers
    page = requests.get(location, timeout=10)
    assert page.status_code == 200
    documents = page.json()["accountingDocuments"]
    assert len(documents) == 10 and page.headers["x-amz-meta-continuationtoken"]
    assert all(d["processingStatus"] == "WaitingForTransfer" for d in documents)
    again = requests.get(location, timeout=10)
    assert again.status_code == 404 and "<Code>NoSuchKey</Code>" in again.text

    everything = waiting_invoices(bw, pageSize=10)
    assert len(everything) == 28 == len({d["invoiceId"] for d in everything})
    with_po = [d for d in everything if d["orderNumbers"]]
    assert with_po and all(r.get("orderNumber") for d in with_po for r in d["codingRows"])


def test_redirect_with_authorization_is_rejected(bw: Bw) -> None:
    response = bw.get("/v1/accountingDocuments", params={"ProcessingStatus": "WaitingForTransfer"})
    location = response.headers["Location"]
    with_auth = requests.get(location, headers={"Authorization": bw.headers()["Authorization"]},
                             timeout=10)
    assert with_auth.status_code == 400
    assert "<Code>InvalidArgument</Code>" in with_auth.text
    assert requests.get(location, timeout=10).status_code == 200  # not consumed by the refusal


def test_following_redirects_blindly_keeps_authorization_and_fails(bw: Bw) -> None:
    followed = requests.get(f"{bw.base}/v1/accountingDocuments", headers=bw.headers(),
                            params={"ProcessingStatus": "WaitingForTransfer"}, timeout=10)
    assert followed.status_code == 400  # requests keeps Authorization on a same-host redirect


def test_presigned_url_is_bound_to_signature_and_host(bw: Bw) -> None:
    response = bw.get("/v1/accountingDocuments", params={"ProcessingStatus": "WaitingForTransfer"})
    location = response.headers["Location"]
    tampered = location.replace("X-Amz-Expires=900", "X-Amz-Expires=9000")
    assert requests.get(tampered, timeout=10).status_code == 403
    other_host = requests.get(location, headers={"Host": "s3.example.com"}, timeout=10)
    assert other_host.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in other_host.text


def test_presigned_url_expires(bw: Bw) -> None:
    bw.settings(presigned_url_ttl=0)
    response = bw.get("/v1/accountingDocuments", params={"ProcessingStatus": "WaitingForTransfer"})
    time.sleep(1.05)
    expired = requests.get(response.headers["Location"], timeout=10)
    assert expired.status_code == 403 and "Request has expired" in expired.text


def test_queue_filters_and_404_straight_from_the_api(bw: Bw) -> None:
    canada = waiting_invoices(bw, companyCode="CA01")
    assert canada and all(d["companyCode"] == "CA01" for d in canada)
    empty = bw.get("/v1/accountingDocuments",
                   params={"ProcessingStatus": "WaitingForTransfer", "companyCode": "GB01"})
    assert empty.status_code == 404 and "Location" not in empty.headers
    assert bw.get("/v1/accountingDocuments", params={"ProcessingStatus": "Waiting"}).status_code \
        == 400
    assert bw.get("/v1/accountingDocuments", params={"pageSize": 101}).status_code == 400
    newest = max(d["lastUpdated"] for d in waiting_invoices(bw))
    assert waiting_invoices(bw, lastUpdated=newest) == []


def test_pages_stop_early_when_coding_rows_are_many(bw: Bw) -> None:
    bw.settings(max_coding_rows_per_page=5)
    response = bw.get("/v1/accountingDocuments",
                      params={"ProcessingStatus": "WaitingForTransfer", "pageSize": 100})
    page = bw.fetch_redirect(response)
    documents = page.json()["accountingDocuments"]
    assert len(documents) < 28 and page.headers["x-amz-meta-continuationtoken"]
    assert len(waiting_invoices(bw, pageSize=100)) == 28


def test_single_invoice_redirect(bw: Bw) -> None:
    invoice_id = first_waiting(bw)
    page = bw.fetch_redirect(bw.get(f"/v1/accountingDocuments/{invoice_id}"))
    assert [d["invoiceId"] for d in page.json()["accountingDocuments"]] == [invoice_id]
    assert bw.get("/v1/accountingDocuments/0000").status_code == 404


def test_acknowledge_moves_invoice_out_of_the_queue(bw: Bw) -> None:
    invoice_id = first_waiting(bw)
    ack = bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge",
                  headers={"Content-Type": "application/json"})
    assert ack.status_code == 200
    assert invoice_id not in {d["invoiceId"] for d in waiting_invoices(bw)}
    again = bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    assert again.status_code == 405 and error_codes(again) == ["METHOD_NOT_ALLOWED"]
    assert bw.post("/v1/accountingDocuments/nope/acknowledge").status_code == 404
    page = bw.fetch_redirect(bw.get(f"/v1/accountingDocuments/{invoice_id}"))
    assert page.json()["accountingDocuments"][0]["processingStatus"] == "TransferInProgress"


def transfer(externalcode: str, success: bool = True, **extra: Any) -> dict[str, Any]:
    return {"externalCode": externalcode, "success": success,
            "responseMessage": "Invoice transferred to ERP." if success else "GL 6999 unknown",
            "paymentBlock": False, **extra}


def test_transfer_response_success_rules(bw: Bw, server: SimulatorServer) -> None:
    invoice_id = first_waiting(bw)
    path = f"/v1/accountingDocuments/{invoice_id}/transferResponses"
    early = bw.post(path, json=transfer("R1"))
    assert early.status_code == 400 and "acknowledge" in messages(early)
    bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    before = _invoice(server, invoice_id)["lastUpdated"]
    ok = bw.post(path, json=transfer("R1", voucherNumber1="AP-12-3", voucherNumber2="E-7"))
    assert ok.status_code == 200 and ok.json()["externalCode"] == "R1"
    invoice = _invoice(server, invoice_id)
    assert invoice["processingStatus"] == "Transferred" and invoice["lastUpdated"] > before
    assert (invoice["voucherNumber1"], invoice["voucherNumber2"]) == ("AP-12-3", "E-7")
    assert [r["externalCode"] for r in invoice["transferResponses"]] == ["R1"]
    status = bw.status(ok.headers["x-amzn-RequestId"])
    assert status["entityType"] == "TransferResponse" and status["requestStatus"] == "Success"
    assert status["systems"][0]["items"][0]["parentExternalCode"] == invoice_id
    reused = bw.post(path, json=transfer("R1"))
    assert reused.status_code == 400 and "already exists" in messages(reused)
    after = bw.post(path, json=transfer("R2"))
    assert after.status_code == 400 and "Transferred" in messages(after)


def test_transfer_failure_then_retransfer_from_p2p(bw: Bw, server: SimulatorServer) -> None:
    bw.settings(responses_after_failure="refused")  # a stricter tenant: only P2P reopens
    invoice_id = first_waiting(bw)
    path = f"/v1/accountingDocuments/{invoice_id}/transferResponses"
    bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    failed = bw.post(path, json=transfer("F1", success=False, voucherNumber1="IGNORED"))
    assert failed.status_code == 200
    invoice = _invoice(server, invoice_id)
    assert invoice["processingStatus"] == "TransferFailed" and "voucherNumber1" not in invoice
    assert bw.post(path, json=transfer("F2")).status_code == 400
    assert bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge").status_code == 405
    assert invoice_id not in {d["invoiceId"] for d in waiting_invoices(bw)}

    retransfer = requests.post(f"{bw.admin}/invoices/{invoice_id}/retransfer", timeout=10)
    assert retransfer.status_code == 200
    assert invoice_id in {d["invoiceId"] for d in waiting_invoices(bw)}
    assert bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge").status_code == 200
    assert bw.post(path, json=transfer("S1")).status_code == 200
    history = _invoice(server, invoice_id)["transferResponses"]
    assert [r["externalCode"] for r in history] == ["F1", "S1"]
    assert requests.post(f"{bw.admin}/invoices/{invoice_id}/retransfer",
                         timeout=10).status_code == 400


def test_a_success_may_follow_a_failure_by_default(bw: Bw, server: SimulatorServer) -> None:
    """The spec forbids responses only once Transferred: the cause fixed in the ERP, the
    invoice's new outcome is accepted on TransferFailed, and the history keeps both."""
    invoice_id = first_waiting(bw)
    path = f"/v1/accountingDocuments/{invoice_id}/transferResponses"
    bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    assert bw.post(path, json=transfer("F1", success=False)).status_code == 200
    assert bw.post(path, json=transfer("F2", success=False)).status_code == 200
    ok = bw.post(path, json=transfer("S1", voucherNumber1="7", voucherNumber2="3"))
    assert ok.status_code == 200
    invoice = _invoice(server, invoice_id)
    assert invoice["processingStatus"] == "Transferred"
    assert (invoice["voucherNumber1"], invoice["voucherNumber2"]) == ("7", "3")
    assert [r["externalCode"] for r in invoice["transferResponses"]] == ["F1", "F2", "S1"]
    assert bw.post(path, json=transfer("S2")).status_code == 400
    bad = requests.patch(f"{bw.admin}/settings", json={"responses_after_failure": "maybe"},
                         timeout=10)
    assert bad.status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    (transfer("R1", responseMessage=""), "responseMessage"),
    (transfer("R1", responseMessage="x" * 251), "responseMessage"),
    ({k: v for k, v in transfer("R1").items() if k != "paymentBlock"}, "paymentBlock"),
    (transfer("R" * 37), "externalCode"),
    (transfer("R1", voucherNumber1="V" * 26), "voucherNumber1"),
    ([transfer("R1")], "single JSON object"),
])
def test_transfer_response_validation(bw: Bw, body: Any, field: str) -> None:
    invoice_id = first_waiting(bw)
    bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    response = bw.post(f"/v1/accountingDocuments/{invoice_id}/transferResponses", json=body)
    assert response.status_code == 400 and field in messages(response)
    assert bw.post("/v1/accountingDocuments/nope/transferResponses",
                   json=transfer("R1")).status_code == 404


def test_admin_creates_deterministic_po_matched_invoices(bw: Bw, server: SimulatorServer) -> None:
    sage_order = server.simulator.dataset.sage["SAMINC"]["PO/POPurchaseOrders"][0]
    number = sage_order["PurchaseOrderNumber"]
    created = requests.post(f"{bw.admin}/invoices", json={"orderNumber": number,
                                                          "invoiceNumber": "INV-ADMIN-1"},
                            timeout=10)
    assert created.status_code == 201
    invoice = created.json()
    assert invoice["processingStatus"] == "WaitingForTransfer"
    assert invoice["invoiceNumber"] == "INV-ADMIN-1" and invoice["supplierCode"] == \
        sage_order["Vendor"]
    assert {r["orderNumber"] for r in invoice["codingRows"]} == {number}
    assert len(invoice["codingRows"]) == len(sage_order["PurchaseOrderLines"])
    assert invoice["invoiceId"] in {d["invoiceId"] for d in waiting_invoices(bw)}
    requests.post(f"{bw.admin}/reset", json={"seed": 0, "data": "demo"}, timeout=60)
    again = requests.post(f"{bw.admin}/invoices", json={"orderNumber": number,
                                                        "invoiceNumber": "INV-ADMIN-1"},
                          timeout=10).json()
    assert again["invoiceId"] == invoice["invoiceId"]
    assert requests.post(f"{bw.admin}/invoices", json={"orderNumber": "NOPE"},
                         timeout=10).status_code == 400
    non_po = requests.post(f"{bw.admin}/invoices", json={"companyCode": "CA01"},
                           timeout=10).json()
    assert non_po["companyCode"] == "CA01" and non_po["orderNumbers"] == []


def test_admin_makes_bad_invoices_for_bad_input_tests(bw: Bw) -> None:
    """_set writes any JSON value into any field (supplierCode too), _remove leaves fields
    out; the queue's own fields stay the simulator's, and the invoice is in the queue as is."""
    created = requests.post(f"{bw.admin}/invoices", json={
        "_set": {"netSum": "125.00", "codingRows": [None], "supplierCode": ["1200"],
                 "invoiceId": "mine", "processingStatus": "Transferred"},
        "_remove": ["grossSum", "companyCode"]}, timeout=10)
    assert created.status_code == 201, created.text
    invoice = created.json()
    assert invoice["netSum"] == "125.00" and invoice["codingRows"] == [None]
    assert invoice["supplierCode"] == ["1200"] and "grossSum" not in invoice
    assert invoice["invoiceId"] != "mine" and invoice["companyCode"] == "US01"
    assert invoice["processingStatus"] == "WaitingForTransfer"
    listed = {d["invoiceId"]: d for d in waiting_invoices(bw)}
    assert listed[invoice["invoiceId"]]["netSum"] == "125.00"
    assert requests.post(f"{bw.admin}/invoices", json={"_remove": "grossSum"},
                         timeout=10).status_code == 400


def _invoice(server: SimulatorServer, invoice_id: str) -> dict[str, Any]:
    state = requests.get(f"{server.base_url}/_sandbox/state", timeout=10).json()
    invoices = state["tenants"][CID]["invoices"]
    return next(i for i in invoices if i["invoiceId"] == invoice_id)


# -- webhooks --------------------------------------------------------------------------------------

def test_subscription_connection_test_and_signed_notification(bw: Bw,
                                                              receiver: Receiver) -> None:
    secret = "hook-secret-4711"
    response = subscribe(bw, receiver.url, secret)
    assert response.status_code == 200, response.text
    assert response.json()[0]["taskSubType"] == "WaitingForTransfer"
    test_call = receiver.wait_for(lambda c: c["json"]["taskType"] == "ConnectionTest")
    assert signature_ok(test_call, secret)
    assert "hook-secret" not in json.dumps(test_call["headers"])

    invoice = requests.post(f"{bw.admin}/invoices", json={}, timeout=10).json()
    note = receiver.wait_for(lambda c: c["json"].get("documentId") == invoice["invoiceId"])
    assert signature_ok(note, secret)
    assert not signature_ok(note, "some-other-secret")
    payload = note["json"]
    assert {k: payload[k] for k in ("taskStatus", "taskType", "taskSubType")} == {
        "taskStatus": "New", "taskType": "AccountingDocuments",
        "taskSubType": "WaitingForTransfer"}
    assert payload["taskId"] and payload["expirationTime"]

    def task() -> dict[str, Any]:
        return bw.get(f"/v1/tasks/{payload['taskId']}").json()["taskStatus"][0]

    deadline = time.monotonic() + 3
    while len(task()["taskHistory"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [h["action"] for h in task()["taskHistory"]] == ["New", "NotificationSent"]
    bw.post(f"/v1/accountingDocuments/{invoice['invoiceId']}/acknowledge")
    assert task()["taskStatus"] == "Completed"
    listed = bw.get("/v1/tasks", params={"documentId": invoice["invoiceId"]}).json()
    assert [t["taskId"] for t in listed["taskStatus"]] == [payload["taskId"]]


def test_seed_data_and_retransfer_notifications(bw: Bw, receiver: Receiver,
                                                server: SimulatorServer) -> None:
    subscribe(bw, receiver.url)
    receiver.wait_for(lambda c: c["json"]["taskType"] == "ConnectionTest")
    assert len(receiver.calls) == 1  # subscribing does not replay the seeded queue
    invoice_id = first_waiting(bw)
    bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    bw.post(f"/v1/accountingDocuments/{invoice_id}/transferResponses",
            json=transfer("F1", success=False))
    requests.post(f"{bw.admin}/invoices/{invoice_id}/retransfer", timeout=10)
    receiver.wait_for(lambda c: c["json"].get("documentId") == invoice_id)


def test_subscription_refused_when_connection_test_fails(bw: Bw) -> None:
    failing = Receiver(statuses=[500])
    try:
        response = subscribe(bw, failing.url)
        assert response.status_code == 400
        body = response.json()
        assert body["hasError"] is True and "ConnectionTest" in body["errorMessages"][0]["message"]
        assert bw.get("/v1/subscriptions").status_code == 404
    finally:
        failing.close()
    unreachable = subscribe(bw, "http://127.0.0.1:9/nowhere")
    assert unreachable.status_code == 400


@pytest.mark.parametrize(("change", "text"), [
    ({"webhookAuthenticationToken": None}, "webhookAuthenticationToken"),
    ({"taskType": "Invoices"}, "taskType"),
    ({"notificationWebhookURL": "ftp://example.com/x"}, "notificationWebhookURL"),
    ({"subscriptionType": "Polling"}, "Polling"),
])
def test_subscription_validation(bw: Bw, receiver: Receiver, change: dict, text: str) -> None:
    item = {"taskType": "AccountingDocuments", "subscriptionType": "Webhook",
            "notificationWebhookURL": receiver.url, "webhookAuthenticationToken": "s3cret-1"}
    item = {k: v for k, v in {**item, **change}.items() if v is not None}
    response = bw.post("/v1/subscriptions", json=[item])
    assert response.status_code == 400
    assert text in json.dumps(response.json()["errorMessages"])
    assert receiver.calls == []


def test_subscription_list_replace_and_delete(bw: Bw, receiver: Receiver) -> None:
    assert subscribe(bw, receiver.url, "first-secret").status_code == 200
    assert subscribe(bw, receiver.url, "second-secret").status_code == 200
    listed = bw.get("/v1/subscriptions").json()["subscriptions"]
    assert [s["webhookAuthenticationToken"] for s in listed] == ["second-secret"]
    assert bw.get("/v1/subscriptions", params={"taskType": "RequestStatus"}).status_code == 404
    incomplete = bw.call("DELETE", "/v1/subscriptions", params={"taskType": "All"})
    assert incomplete.status_code == 422
    deleted = bw.call("DELETE", "/v1/subscriptions", params={
        "lastUpdated": "0001-01-01", "taskType": "All", "taskSubType": "All"})
    assert deleted.json() == {"status": "Deleted successfully", "numberOfRecordsDeleted": 1}
    assert bw.get("/v1/subscriptions").status_code == 404


def test_failed_deliveries_are_retried(bw: Bw) -> None:
    flaky = Receiver(statuses=[200, 503, 500])  # ConnectionTest ok, then two failures
    try:
        bw.settings(webhook_retry_delay=0.01)
        subscribe(bw, flaky.url)
        invoice = requests.post(f"{bw.admin}/invoices", json={}, timeout=10).json()
        deadline = time.monotonic() + 3
        while len(flaky.calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        deliveries = [c for c in flaky.calls if c["json"].get("documentId") ==
                      invoice["invoiceId"]]
        assert len(deliveries) == 3
        assert len({c["json"]["taskId"] for c in deliveries}) == 1
    finally:
        flaky.close()


def test_delivery_gives_up_and_marks_the_task_failed(bw: Bw) -> None:
    dead = Receiver(statuses=[200, 500, 500])
    try:
        bw.settings(webhook_retry_delay=0.01, webhook_max_attempts=2)
        subscribe(bw, dead.url)
        invoice = requests.post(f"{bw.admin}/invoices", json={}, timeout=10).json()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            tasks = bw.get("/v1/tasks", params={"documentId": invoice["invoiceId"]})
            if tasks.status_code == 200 and tasks.json()["taskStatus"][0]["taskStatus"] == \
                    "Failed":
                break
            time.sleep(0.02)
        task = tasks.json()["taskStatus"][0]
        assert task["taskStatus"] == "Failed"
        assert task["taskHistory"][-1]["action"] == "NotificationFailed"
    finally:
        dead.close()


def test_signature_header_name_is_configurable(bw: Bw, receiver: Receiver) -> None:
    bw.settings(webhook_signature_header="X-Sandbox-Signature")
    subscribe(bw, receiver.url, "abc-secret")
    call = receiver.wait_for(lambda c: c["json"]["taskType"] == "ConnectionTest")
    assert signature_ok(call, "abc-secret", "X-Sandbox-Signature")


def test_request_status_subscription_notifies_on_errors(bw: Bw, receiver: Receiver) -> None:
    response = bw.post("/v1/subscriptions", json=[{
        "taskType": "RequestStatus", "subscriptionType": "Webhook",
        "notificationWebhookURL": receiver.url, "webhookAuthenticationToken": "rs-secret"}])
    assert response.json()[0]["taskSubType"] == "Error"
    good = post_ok(bw, "/v1/accounts", [account("1")])
    bad = post_ok(bw, "/v1/accounts", [account("2", "ZZ99")])
    call = receiver.wait_for(lambda c: c["json"].get("documentId") == bad)
    assert call["json"]["taskSubType"] == "Error" and signature_ok(call, "rs-secret")
    time.sleep(0.1)
    assert not [c for c in receiver.calls if c["json"].get("documentId") == good]


# -- faults and the request log --------------------------------------------------------------------

def test_fault_429_carries_retry_after(bw: Bw) -> None:
    bw.faults(retry_after=2, schedule=[{"nth": 1, "fault": "429", "path": "^/v1/accounts"}])
    throttled = bw.get("/v1/accounts")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert throttled.json() == {"message": "Too Many Requests"}
    assert bw.get("/v1/accounts").status_code == 404


def test_fault_500_and_503_shapes(bw: Bw) -> None:
    bw.faults(schedule=[{"nth": 1, "fault": "500", "path": "^/v1/accounts"},
                        {"nth": 1, "fault": "503", "path": "^/v1/costCenters"}])
    error = bw.get("/v1/accounts")
    assert error.status_code == 500
    assert error_codes(error) == ["UNEXPECTED_ERROR"]
    assert error.json()["errors"][0]["type"] == "TECHNICAL"
    unavailable = bw.get("/v1/costCenters")
    assert unavailable.status_code == 503 and "Retry-After" in unavailable.headers


def test_request_log_never_contains_secrets(bw: Bw, receiver: Receiver,
                                            server: SimulatorServer) -> None:
    token = bw.token()
    requests.post(f"{bw.base}/v1/tokens", timeout=10, data={
        "grant_type": "client_credentials", "scope": "vendors.read", "client_id": CID,
        "client_secret": SECRET})
    requests.get(f"{bw.base}/v1/accounts", auth=(CID, SECRET), timeout=10)
    bw.get("/v1/accounts", token=token)
    hook_secret = "webhook-secret-do-not-log"
    subscribe(bw, receiver.url, hook_secret)
    bw.get("/v1/subscriptions", params={"note": hook_secret})
    rejected_secret = "rejected-hook-secret-42"
    bw.post("/v1/subscriptions", json=[{"taskType": "Nope", "subscriptionType": "Webhook",
                                        "notificationWebhookURL": receiver.url,
                                        "webhookAuthenticationToken": rejected_secret}])
    bw.call("DELETE", "/v1/subscriptions", params={
        "lastUpdated": "0001-01-01", "taskType": "All", "taskSubType": "All"})
    bw.get("/v1/accounts", params={"leak": token, "hook": hook_secret, "other": rejected_secret})
    log = requests.get(f"{bw.admin}/requests", timeout=10).text
    basic = base64.b64encode(f"{CID}:{SECRET}".encode()).decode()
    assert log.count('"path"') >= 7
    for secret in (SECRET, basic, token, hook_secret, rejected_secret):
        assert secret not in log
    state = requests.get(f"{bw.admin}/state", timeout=10)
    assert state.status_code == 200


def test_snapshot_and_reset(bw: Bw, server: SimulatorServer) -> None:
    post_ok(bw, "/v1/accounts", [account("1")])
    bw.settings(processing_delay=1.5)
    state = requests.get(f"{bw.admin}/state", timeout=10).json()
    tenant = state["tenants"][CID]
    assert [a["externalCode"] for a in tenant["master_data"]["accounts"]] == ["ACC-US01-1"]
    assert len(tenant["invoices"]) == 28 and tenant["request_status"]
    requests.post(f"{bw.admin}/reset", json={"seed": 0, "data": "demo"}, timeout=60)
    state = requests.get(f"{bw.admin}/state", timeout=10).json()
    assert state["settings"]["processing_delay"] == 0.3
    assert state["tenants"][CID]["master_data"] == {}
    bad = requests.patch(f"{bw.admin}/settings", json={"processing_delay": "soon"}, timeout=10)
    assert bad.status_code == 400
    assert requests.patch(f"{bw.admin}/settings", json={"nope": 1}, timeout=10).status_code == 400


def payment(externalcode: str, **extra: Any) -> dict[str, Any]:
    return {"externalCode": externalcode, "success": True, "paymentBlock": False, **extra}


def _transferred(bw: Bw) -> str:
    invoice_id = first_waiting(bw)
    bw.post(f"/v1/accountingDocuments/{invoice_id}/acknowledge")
    assert bw.post(f"/v1/accountingDocuments/{invoice_id}/transferResponses",
                   json=transfer(f"T-{invoice_id}")).status_code == 200
    return invoice_id


def test_payment_responses_partial_then_full(bw: Bw, server: SimulatorServer) -> None:
    invoice_id = _transferred(bw)
    gross = _invoice(server, invoice_id)["grossSum"]
    path = f"/v1/accountingDocuments/{invoice_id}/paymentResponses"
    part = bw.post(path, json=payment("P1", paidTotal=round(gross / 2, 2), checkNumber="CHK-1",
                                      paymentDate="2026-12-01T00:00:00Z"))
    assert part.status_code == 200
    invoice = _invoice(server, invoice_id)
    assert invoice["processingStatus"] == "Transferred"
    assert (invoice["paidTotal"], invoice["checkNumber"]) == (round(gross / 2, 2), "CHK-1")
    rest = bw.post(path, json=payment("P2", paidTotal=gross, paymentNumber="7"))
    assert rest.status_code == 200
    invoice = _invoice(server, invoice_id)
    assert invoice["processingStatus"] == "Paid" and invoice["paidTotal"] == gross
    assert "checkNumber" not in invoice  # omitted fields are cleared
    assert invoice["paymentDate"].endswith("T00:00:00Z")  # defaults to today
    assert [r["externalCode"] for r in invoice["paymentResponses"]] == ["P1", "P2"]
    status = bw.status(rest.headers["x-amzn-RequestId"])
    assert status["entityType"] == "PaymentResponse" and status["requestStatus"] == "Success"
    reused = bw.post(path, json=payment("P1", paidTotal=gross))
    assert reused.status_code == 409 and "already exists" in messages(reused)
    assert [r["externalCode"] for r in _invoice(server, invoice_id)["paymentResponses"]] == [
        "P1", "P2"]


@pytest.mark.parametrize(("body", "field"), [
    ({"externalCode": "P1", "success": True}, "paymentBlock"),
    ({"success": True, "paymentBlock": False}, "externalCode"),
    (payment("P" * 37), "externalCode"),
    (payment("P1", paidTotal="12.50"), "paidTotal"),
    ([payment("P1")], "single JSON object"),
])
def test_payment_response_validation(bw: Bw, body: Any, field: str) -> None:
    invoice_id = _transferred(bw)
    response = bw.post(f"/v1/accountingDocuments/{invoice_id}/paymentResponses", json=body)
    assert response.status_code == 400 and field in messages(response)
    assert bw.post("/v1/accountingDocuments/nope/paymentResponses",
                   json=payment("P1")).status_code == 404


def test_payment_response_needs_a_transferred_invoice(bw: Bw) -> None:
    invoice_id = first_waiting(bw)
    early = bw.post(f"/v1/accountingDocuments/{invoice_id}/paymentResponses",
                    json=payment("P1"))
    assert early.status_code == 400 and "Transferred" in messages(early)


def test_order_lines_store_their_goods_receipts_and_check_them(bw: Bw) -> None:
    post_ok(bw, "/v1/paymentTerms", [payment_term("N30")])
    post_ok(bw, "/v1/vendors", [vendor("1200")])
    post_ok(bw, "/v1/matchingOrders", [order("PO1", "1200")])
    received = {"externalCode": "GR-1-1000", "goodsReceiptNumber": "RC1", "quantity": 5}
    cancel = {"externalCode": "GR-1-1000-C", "goodsReceiptNumber": "RC1", "quantity": 5,
              "referenceGRExternalCode": "GR-1-1000"}
    good = post_ok(bw, "/v1/matchingOrderLines", [
        {**order_line("PO-US01-PO1", 1000), "goodsReceipts": [received, cancel]}])
    assert bw.status(good)["requestStatus"] == "Success"
    (line,) = bw.get("/v1/matchingOrderLines", params={
        "orderExternalCode": "PO-US01-PO1"}).json()["matchingOrderLines"]
    assert [r["externalCode"] for r in line["goodsReceipts"]] == ["GR-1-1000", "GR-1-1000-C"]
    state = requests.get(f"{bw.admin}/state", timeout=10).json()
    assert "GR-1-1000-C" in json.dumps(state)

    # A required field missing is a 400 for the request; a cancellation of a receipt the line
    # does not carry (the upsert replaces the line's receipts) is refused by P2P.
    missing = bw.post("/v1/matchingOrderLines", json=[
        {**order_line("PO-US01-PO1", 2000), "goodsReceipts": [{"externalCode": "GR-2"}]}])
    assert missing.status_code == 400 and "goodsReceiptNumber" in missing.text
    orphan = post_ok(bw, "/v1/matchingOrderLines", [
        {**order_line("PO-US01-PO1", 1000), "goodsReceipts": [cancel]}])
    (error,) = bw.items(orphan)["PO-US01-PO1-1000"]["errors"]
    assert "cancels GR-1-1000, which is not a goods receipt" in error["message"]
