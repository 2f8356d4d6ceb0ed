"""Auth, faults, secrets and the reconciliation streams, against the Basware simulator."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tap_basware_testkit import header

from ml_connector_core.ledger import Ledger
from mlc_sandbox.data import BASWARE_CLIENT_SECRET
from tap_basware.tap import TapBasware

ACCOUNTING_DOCUMENTS = "/v1/accountingDocuments"


def authenticated_calls(log: list[dict]) -> list[dict]:
    return [c for c in log if c["path"].startswith("/v1/") and c["path"] != "/v1/tokens"]


def test_expired_token_mid_run_is_replaced_once_and_the_call_repeated(
        basware, tap_config, run_tap):
    # The acknowledging run makes 36 API calls; the token dies after 25 of them.
    basware.faults({"token_expiry_calls": 25})

    run = run_tap({**tap_config, "acknowledge": True, "max_requests_in_flight": 1})

    log = basware.requests()
    refused = [c for c in log if c["status"] == 401]
    assert len(refused) == 1
    assert len([c for c in log if c["path"] == "/v1/tokens"]) == 2  # one new token
    after = [c for c in log if c["seq"] > refused[0]["seq"]]
    assert after[0]["path"] == "/v1/tokens"
    retried = after[1]
    assert (retried["method"], retried["path"]) == (refused[0]["method"], refused[0]["path"])
    assert header(retried, "X-BW-REQUEST-ID") == header(refused[0], "X-BW-REQUEST-ID")
    assert retried["status"] in (200, 302, 404)
    emitted = {r["invoiceId"] for r in run.records()}
    assert {inv["processingStatus"] for i, inv in basware.invoices().items()
            if i in emitted} == {"TransferInProgress"}


def test_expired_token_with_requests_in_flight_is_replaced_once(basware, tap_config, run_tap):
    # Acknowledgements 4 at a time: several may carry the dead token at once; one thread
    # fetches the new token, the others wait for it, and each refused call is repeated.
    basware.faults({"token_expiry_calls": 25, "rates": {"slow": 1.0}, "slow_ms": 100,
                    "path": "/acknowledge$"})

    run = run_tap({**tap_config, "acknowledge": True, "max_requests_in_flight": 4})

    log = basware.requests()
    refused = [c for c in log if c["status"] == 401]
    assert 1 <= len(refused) <= 4
    assert len([c for c in log if c["path"] == "/v1/tokens"]) == 2  # one new token
    for call in refused:
        again = [c for c in log if c["seq"] > call["seq"]
                 and header(c, "X-BW-REQUEST-ID") == header(call, "X-BW-REQUEST-ID")]
        assert again and again[0]["status"] in (200, 302, 404)
    emitted = {r["invoiceId"] for r in run.records()}
    assert {inv["processingStatus"] for i, inv in basware.invoices().items()
            if i in emitted} == {"TransferInProgress"}


def test_a_token_other_threads_spent_is_renewed_not_taken_for_lost_access(
        basware, tap_config, run_tap):
    # Tokens die after 3 calls: with 4 in flight, a call's fresh token may be spent by the
    # other threads before the call is repeated. That is no reason to stop the run.
    basware.faults({"token_expiry_calls": 3, "rates": {"slow": 1.0}, "slow_ms": 50,
                    "path": "/acknowledge$"})

    run = run_tap({**tap_config, "acknowledge": True, "max_requests_in_flight": 4})

    emitted = {r["invoiceId"] for r in run.records()}
    assert len(emitted) == 28
    assert {inv["processingStatus"] for i, inv in basware.invoices().items()
            if i in emitted} == {"TransferInProgress"}


def test_429_waits_as_long_as_retry_after_says(basware, tap_config, run_tap):
    basware.faults({"retry_after": 1, "schedule": [
        {"nth": 2, "fault": "429", "method": "GET", "path": f"^{ACCOUNTING_DOCUMENTS}$"}]})

    run = run_tap(tap_config)

    assert len(run.records()) == 28  # all seeded invoices of US01 and CA01
    log = basware.requests()
    limited = [c for c in log if c["status"] == 429]
    assert len(limited) == 1
    request_id = header(limited[0], "X-BW-REQUEST-ID")
    repeat = next(c for c in log if c["seq"] > limited[0]["seq"]
                  and header(c, "X-BW-REQUEST-ID") == request_id)
    assert repeat["path"] == ACCOUNTING_DOCUMENTS and repeat["status"] == 302
    # A lower bound only (the client sleeps at least Retry-After): never flaky.
    assert repeat["time"] - limited[0]["time"] >= 1.0


def test_secrets_stay_out_of_output_state_and_ledger(basware, tap_config, run_tap, tmp_path):
    basware.faults({"token_expiry_calls": 3})  # a 401 on the way, its error path included
    run = run_tap({**tap_config, "acknowledge": True})

    ledger_file = Path(tap_config["ledger_url"].removeprefix("sqlite:///"))
    for text in (run.stdout, run.stderr, ledger_file.read_bytes().decode("utf-8", "replace")):
        assert BASWARE_CLIENT_SECRET not in text
        assert "Bearer ey" not in text and "Basic bWwt" not in text


@pytest.mark.parametrize(("region", "host"), [(None, "https://api.basware.com"),
                                              ("us", "https://api.us.basware.com")])
def test_region_picks_the_host_eu_by_default_as_in_target_basware(ledger_url, region, host):
    config = {"client_id": "id", "client_secret": "secret-value", "company_codes": ["US01"],
              "ledger_url": ledger_url} | ({"region": region} if region else {})
    assert TapBasware(config=config).basware.base_url == host
    explicit = TapBasware(config=config | {"base_url": "https://test-api.basware.com/"})
    assert explicit.basware.base_url == "https://test-api.basware.com"  # base_url wins


def test_verify_tls_off_warning_is_the_one_every_plugin_logs(basware, tap_config, run_tap):
    run = run_tap({**tap_config, "verify_tls": False})
    assert "verify_tls is OFF: Basware's TLS certificate is NOT checked" in run.stderr


def test_vendors_and_request_status_for_reconciliation(basware, tap_config, run_tap,
                                                       ledger_rows):
    vendors = [{"externalCode": f"SAMINC-{n}", "vendorCode": n, "name": f"Vendor {n}",
                "companies": [{"companyCode": "US01"}],
                "processingStatus": {"active": True, "paymentDenied": False}}
               for n in ("1200", "1210")]
    posted = basware.api("POST", "/v1/vendors", json=vendors,
                         headers={"X-BW-REQUEST-ID": str(uuid.uuid4())})
    assert posted.status_code == 200, posted.text
    basware_request_id = posted.headers["x-amzn-RequestId"]

    run = run_tap(tap_config)

    got = {r["externalCode"]: r for r in run.records("vendors")}
    assert set(got) == {"SAMINC-1200", "SAMINC-1210"}
    assert got["SAMINC-1200"]["companies"] == [{"companyCode": "US01"}]
    assert got["SAMINC-1200"]["processingStatus"] == {"active": True, "paymentDenied": False}
    statuses = {r["requestId"]: r for r in run.records("request_status")}
    assert statuses[basware_request_id]["entityType"] == "Vendor"
    items = statuses[basware_request_id]["systems"][0]["items"]
    assert sorted(item["externalCode"] for item in items) == sorted(got)
    reads = {(r["stream"], r["source_key"]) for r in ledger_rows() if r["action"] == "read"}
    assert {("vendors", "SAMINC-1200"), ("request_status", basware_request_id)} <= reads
    # Incremental: the next run asks for what changed since the bookmark. Bookmarks are
    # inclusive, so the records stamped at the bookmark instant (this one POST) come again.
    later = basware.api("POST", "/v1/vendors", json=[{**vendors[0], "name": "Vendor 1200 B"}],
                        headers={"X-BW-REQUEST-ID": str(uuid.uuid4())})
    assert later.status_code == 200, later.text
    mark = basware.last_seq()
    again = run_tap(tap_config, state=run.final_state)
    assert [r["name"] for r in again.records("vendors")] == ["Vendor 1210", "Vendor 1200 B"]
    bookmark = run.final_state["bookmarks"]["vendors"]["replication_key_value"]
    query = next(c["query"] for c in basware.requests(mark) if c["path"] == "/v1/vendors")
    assert "lastUpdated=" in query and bookmark[:19] in query.replace("%3A", ":")


def test_ledger_url_defaults_to_the_shared_environment_variable(basware, tap_config, run_tap,
                                                                tmp_path):
    shared = tmp_path / "shared-ledger.sqlite"
    config = {k: v for k, v in tap_config.items() if k != "ledger_url"}
    run_tap(config, env={"ML_CONNECTOR_LEDGER_URL": f"sqlite:///{shared}"})
    with Ledger.open(f"sqlite:///{shared}") as ledger:
        assert ledger.report().counts["accounting_documents"]["read"] == 28


def test_connection_test_closes_its_ledger_run(basware, tap_config, run_tap, ledger_runs):
    run = run_tap(tap_config, extra=("--test",))
    assert len(run.records()) == 1  # --test stops each stream after one record
    assert [r["status"] for r in ledger_runs()] == ["incomplete"]


def test_a_lost_answer_from_the_presigned_url_loses_no_invoice(basware, tap_config, run_tap):
    """The S3 object is served, then the connection drops: the retry finds the one-time URL
    consumed (404 NoSuchKey), which must not read as "no records"."""
    basware.faults({"schedule": [{"nth": 1, "fault": "drop_after", "method": "GET",
                                  "path": "^/_s3/"}]})

    run = run_tap(tap_config)

    assert len(run.records()) == 28
    log = basware.requests()
    s3 = [c for c in log if c["path"].startswith("/_s3/")]
    assert [c["fault"] for c in s3][:1] == ["drop_after"]
    assert s3[1]["status"] == 404  # the retried download: the object was consumed
    request_id = header(s3[0], "X-BW-REQUEST-ID")
    again = [c for c in log if c["path"] == ACCOUNTING_DOCUMENTS
             and header(c, "X-BW-REQUEST-ID") == request_id]
    assert len(again) == 2  # the API call was made again for a fresh URL
    assert s3[2]["status"] == 200 and header(s3[2], "X-BW-REQUEST-ID") == request_id
