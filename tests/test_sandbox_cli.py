"""`ml-connector sandbox serve` as a user runs it, read with curl exactly as the README shows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

CLI = [sys.executable, "-m", "ml_connector.cli"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict]:
    info_file = tmp_path / "sandbox.json"
    process = subprocess.Popen(
        [*CLI, "sandbox", "serve", "--sage-port", "0", "--basware-port", "0",
         "--info-file", str(info_file), "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not info_file.exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "sandbox did not write its info file"
        time.sleep(0.1)
    yield {"info": json.loads(info_file.read_text()), "process": process, "file": info_file}
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def curl(*args: str) -> tuple[dict[str, str], str]:
    """Run curl; return (response headers of the last response, body)."""
    result = subprocess.run(["curl", "-sS", "-D", "-", *args], capture_output=True, check=True,
                            timeout=30)
    # Bytes, not text mode: universal newlines would turn the CRLF header separator into LF.
    head, _, body = result.stdout.decode("utf-8").rpartition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, body


def test_curl_reads_sage_vendors_page_by_page(served: dict) -> None:
    sage = served["info"]["sage300"]
    user, password = sage["username"].upper(), sage["password"].upper()
    url = f"{sage['base_url']}/SAMINC/AP/APVendors?$select=VendorNumber,VendorName&$count=true"
    pages, vendors = 0, []
    while url:
        _, body = curl("-u", f"{user}:{password}", url)
        page = json.loads(body)
        assert page["@odata.context"].endswith("/AP/$metadata#APVendors(VendorNumber,VendorName)") \
            or page["@odata.context"].endswith("/AP/$metadata#APVendors")
        assert page["@odata.count"] == 32
        vendors += [v["VendorNumber"] for v in page["value"]]
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith(sage["base_url"])  # absolute, on the same base
        pages += 1
    assert len(vendors) == 32 == len(set(vendors))
    assert vendors == sorted(vendors)  # key order


def test_curl_with_the_mixed_case_password_is_refused(served: dict) -> None:
    sage = served["info"]["sage300"]
    headers, body = curl("-u", f"{sage['username']}:{sage['password']}",
                         f"{sage['base_url']}/SAMINC/AP/APVendors")
    assert headers["www-authenticate"].startswith("Basic")
    assert json.loads(body)["error"]["code"] == "Unauthorized"


def test_curl_reads_the_basware_invoice_queue_after_a_token_call(served: dict) -> None:
    basware = served["info"]["basware"]
    _, body = curl("-u", f"{basware['client_id']}:{basware['client_secret']}",
                   "-d", "grant_type=client_credentials&scope=accountingDocuments.read",
                   basware["token_url"])
    token = json.loads(body)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    headers, _ = curl("-H", f"Authorization: Bearer {token['access_token']}",
                      f"{basware['base_url']}/v1/accountingDocuments"
                      "?ProcessingStatus=WaitingForTransfer&companyCode=US01&pageSize=100")
    assert "location" in headers  # a 302 to the pre-signed export
    _, body = curl(headers["location"])  # followed WITHOUT Authorization, as S3 requires
    invoices = json.loads(body)["accountingDocuments"]
    assert invoices and {i["processingStatus"] for i in invoices} == {"WaitingForTransfer"}
    assert all(i["companyCode"] == "US01" and i["codingRows"] for i in invoices)


def test_serve_stops_cleanly_and_removes_its_info_file(served: dict) -> None:
    process = served["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert not served["file"].exists()


def test_sandbox_pay_posts_the_batch_then_pays_in_part_and_in_full(
        fresh_sandbox: Any, tmp_path: Path) -> None:
    """`ml-connector sandbox pay INV-...`: what the AP team does in Sage 300 to an invoice the
    connector created (its batch posted, a payment against the posted document), seen over
    the Sage simulator's HTTP API."""
    from e2e import Project

    project = Project.create(fresh_sandbox, tmp_path / "work")
    assert project.run("invoices").ok
    info_file = tmp_path / "sandbox.json"
    fresh_sandbox.write_info(info_file)
    sage = fresh_sandbox.info()["sage300"]
    admin = sage["admin_url"]

    def connector_entry() -> tuple[dict[str, Any], dict[str, Any]]:
        state = requests.get(f"{admin}/state", timeout=60).json()["companies"]["SAMINC"]
        batch = next(b for b in state["AP/APInvoiceBatches"]
                     if str(b.get("Description", "")).startswith("ml-connector"))
        return batch, batch["Invoices"][0]

    batch, entry = connector_entry()
    assert batch["BatchStatus"] != "Posted"
    document, total = entry["DocumentNumber"], entry["DocumentTotalIncludingTax"]
    half = round(total / 2, 2)

    first = subprocess.run([*CLI, "sandbox", "pay", "--info-file", str(info_file), document,
                            "--amount", str(half), "--check-number", "CHK-1"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert f"Sage 300 SAMINC: AP batch {batch['BatchNumber']} posted" in first.stdout
    assert f"invoice {document} of vendor {entry['VendorNumber']} paid (check CHK-1, " \
           "payment 1" in first.stdout
    second = subprocess.run([*CLI, "sandbox", "pay", "--info-file", str(info_file), document],
                            capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert "AP batch" not in second.stdout  # posted already: only paid
    assert f"balance 0.00 of {total:.2f}" in second.stdout

    assert connector_entry()[0]["BatchStatus"] == "Posted"
    auth = (sage["username"].upper(), sage["password"].upper())
    url = f"{sage['base_url']}/SAMINC/AP/APPostedDocuments"
    posted = requests.get(url, auth=auth, timeout=30, params={
        "$filter": f"DocumentNumber eq '{document}'"}).json()["value"]
    assert [(d["FullyPaid"], d["CurrentBalance"], d["LastPaymentNumber"]) for d in posted] == [
        ("Yes", 0, 2)]
    payments = requests.get(f"{sage['base_url']}/SAMINC/AP/APPostedPayments", auth=auth,
                            timeout=30, params={"$filter": f"DocumentNumber eq '{document}'"}
                            ).json()["value"]
    assert [p["PaymentAmount"] for p in payments] == [half, pytest.approx(total - half)]

    unknown = subprocess.run([*CLI, "sandbox", "pay", "--info-file", str(info_file),
                              "INV-00000"], capture_output=True, text=True, timeout=120,
                             check=False)
    assert unknown.returncode == 1
    assert "0 AP invoices have document number INV-00000" in unknown.stderr
