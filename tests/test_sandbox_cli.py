"""`ml-connector sandbox serve` as a user runs it, read with curl exactly as the README shows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
