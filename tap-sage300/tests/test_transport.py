"""How pages travel: every request through a configured proxy as ``requests`` sends it, each
page asked once, and a read that lost records to a deletion failing, one request at a time or
several in flight (the windows: test_in_flight.py)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from singer_sdk.exceptions import FatalAPIError
from tap_sage300_testkit import SageSandbox, run_in_process

from tap_sage300.streams import VendorsStream


class CountingProxy(BaseHTTPRequestHandler):
    """A plain forward HTTP proxy (absolute-form GET) that remembers what it forwarded."""

    forwarded: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "proxy-connection", "connection")}
        upstream = requests.get(self.path, headers=headers, timeout=30,
                                proxies={"http": "", "https": ""})
        self.forwarded.append(self.path)
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", ""))
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def proxy() -> Iterator[str]:
    CountingProxy.forwarded = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_every_page_goes_through_a_configured_proxy(sage: SageSandbox, proxy: str) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy")}
    sage.settings(page_size=7)  # several pages, and windows in flight, through the proxy
    run = sage.run(sage.config(page_size=10), env={**env, "HTTP_PROXY": proxy})

    assert run.returncode == 0, run.stderr
    expected = sorted(v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors"))
    assert sorted(r["VendorNumber"] for r in run.of("vendors", "SAMINC")) == expected
    sage_gets = [r for r in sage.requests() if r["method"] == "GET"]
    assert len(CountingProxy.forwarded) == len(sage_gets) > 10


@pytest.mark.parametrize("in_flight", [1, 4])
def test_each_page_is_requested_once(sage: SageSandbox, in_flight: int) -> None:
    run = sage.run(sage.config(page_size=10, max_requests_in_flight=in_flight))

    assert run.returncode == 0, run.stderr
    pages = [r for r in sage.requests() if r["path"].endswith("SAMINC/AP/APVendors")]
    vendors = len(sage.table("SAMINC", "AP/APVendors"))
    assert len(pages) == vendors // 10 + 1  # no page twice, none skipped
    skips = [int(q.split("$skip=")[1].split("&")[0]) if "$skip=" in q else 0
             for q in (r["query"] for r in pages)]
    assert sorted(skips) == list(range(0, vendors, 10))
    assert len(run.of("vendors", "SAMINC")) == vendors



@pytest.mark.parametrize(("next_link", "in_flight"), [(True, 1), (False, 1), (True, 4),
                                                    (False, 4)])
def test_a_record_deleted_during_the_read_fails_the_run_naming_the_counts(
        sage: SageSandbox, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes], next_link: bool, in_flight: int) -> None:
    sage.settings(page_size=7, next_link=next_link)
    first = sage.table("SAMINC", "AP/APVendors")[0]["VendorNumber"]
    parse = VendorsStream.parse_response
    deleted: list[str] = []

    def delete_after_the_first_page(stream: VendorsStream, response: requests.Response) -> Any:
        # Sage users keep working while the tap reads: the first vendor goes once its page
        # is in, so every later one moves back a place and one falls between two pages.
        records = parse(stream, response)
        if "SAMINC" in response.url and not deleted:
            sage.delete("SAMINC", "AP/APVendors", first)
            deleted.append(first)
        return records

    monkeypatch.setattr(VendorsStream, "parse_response", delete_after_the_first_page)
    with pytest.raises(FatalAPIError) as failure:
        run_in_process(sage.config(page_size=10, company_ids=["SAMINC"],
                                   max_requests_in_flight=in_flight), capsysbinary)

    message = str(failure.value)
    assert message.startswith("Reading AP/APVendors of company SAMINC: Sage counted 32 records "
                              "(@odata.count) but 31 came back.")
    assert "run again" in message and "PageSize" in message
    out = capsysbinary.readouterr().out.decode()
    states = [m["value"] for m in map(json.loads, out.splitlines()) if m["type"] == "STATE"]
    # The company's bookmark is not committed: the next run reads the same range again.
    assert states and "replication_key_value" not in json.dumps(
        [s.get("bookmarks", {}).get("vendors") for s in states])
