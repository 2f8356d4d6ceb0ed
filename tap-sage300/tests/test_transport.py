"""How pages travel: requested one ahead on the tap's own connection (prefetch.py), a nextLink's
page as soon as the link is in, except through a proxy, which gets every request as
``requests`` would send it."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from singer_sdk.exceptions import FatalAPIError
from tap_sage300_testkit import SageSandbox

from tap_sage300 import client
from tap_sage300.client import early_next_link
from tap_sage300.prefetch import PageConnection
from tap_sage300.streams import VendorsStream
from tap_sage300.tap import TapSage300


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
    sage.settings(page_size=7)  # nextLinks inside the tap's windows of 10 go the same way
    run = sage.run(sage.config(page_size=10), env={**env, "HTTP_PROXY": proxy})

    assert run.returncode == 0, run.stderr
    expected = sorted(v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors"))
    assert sorted(r["VendorNumber"] for r in run.of("vendors", "SAMINC")) == expected
    sage_gets = [r for r in sage.requests() if r["method"] == "GET"]
    assert len(CountingProxy.forwarded) == len(sage_gets) > 10


def test_without_a_proxy_each_page_is_requested_once_in_order(sage: SageSandbox) -> None:
    run = sage.run(sage.config(page_size=10))

    assert run.returncode == 0, run.stderr
    pages = [r for r in sage.requests() if r["path"].endswith("SAMINC/AP/APVendors")]
    vendors = len(sage.table("SAMINC", "AP/APVendors"))
    assert len(pages) == vendors // 10 + 1  # no page twice, none skipped
    skips = [int(q.split("$skip=")[1].split("&")[0]) if "$skip=" in q else 0
             for q in (r["query"] for r in pages)]
    assert skips == sorted(skips)
    assert len(run.of("vendors", "SAMINC")) == vendors


# -- the next page's request before the page is decoded -------------------------------------------

LINK = b'"@odata.nextLink":"http://sage/AP/APVendors?$top=3&$skip=7"'


@pytest.mark.parametrize(("body", "link"), [
    (b'{"value":[{"a":1}],' + LINK + b"}", "http://sage/AP/APVendors?$top=3&$skip=7"),
    (b'{"value": [{"a": 1}],\n  "@odata.nextLink" : "http://sage/x" }\n', "http://sage/x"),
    (b'{"value":[],' + LINK + b"}", None),  # no records: the loop stops, nothing to ask for
    (b'{"value" : [ ] ,' + LINK + b"}", None),
    (b'{"value":[{"a":1}],"@odata.nextLink":"http:\\/\\/sage\\/x"}', None),  # escapes: decoder
    (b'{"value":[{"a":"q\\"' + LINK[1:] + b"}", None),  # a key inside a string's text
    (b'{"value":[{' + LINK + b"}]}", None),  # a record's member, not the feed's
    (b'{"value":[{"a":1}]}', None),
    (b'{"value":[{"a":1}],' + LINK + b',"@odata.count":10}', None),  # not last: decoder
])
def test_next_link_is_read_from_the_end_of_the_raw_body(body: bytes, link: str | None) -> None:
    assert early_next_link(body) == link


def run_in_process(config: dict[str, Any], capsysbinary: pytest.CaptureFixture[bytes]
                   ) -> list[dict[str, Any]]:
    tap = TapSage300(config=config)
    try:
        tap.sync_all()
    finally:  # what a failed run buffered goes out now, not at the interpreter's exit
        tap.message_writer.flush()
    out = capsysbinary.readouterr().out.decode()
    return [m["record"] for m in map(json.loads, out.splitlines())
            if m["type"] == "RECORD" and m["stream"] == "vendors"]


def test_a_next_link_page_is_requested_before_the_page_before_is_decoded(
        sage: SageSandbox, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sage.settings(page_size=7)  # Sage's PageSize; the tap's window is 10
    events: list[tuple[str, str]] = []
    send, parse = PageConnection.send, VendorsStream.parse_response

    def sending(connection: PageConnection, request: requests.PreparedRequest) -> Any:
        if "SAMINC/AP/APVendors" in request.path_url:
            events.append(("send", request.path_url.rsplit("$top=", 1)[1]))
        return send(connection, request)

    def parsing(stream: VendorsStream, response: requests.Response) -> Any:
        if "SAMINC" in response.url:
            events.append(("parse", response.url.rsplit("$top=", 1)[1]))
        return parse(stream, response)

    monkeypatch.setattr(PageConnection, "send", sending)
    monkeypatch.setattr(VendorsStream, "parse_response", parsing)
    records = run_in_process(sage.config(page_size=10), capsysbinary)

    # 32 vendors: windows of 10 (7 + the nextLink's 3), the last one short. The nextLink's
    # request goes out before its page's predecessor is decoded; a window's first page only
    # after (its URL needs the record count).
    assert events == [("send", "10&$count=true"), ("send", "3&$skip=7"),
                      ("parse", "10&$count=true"),
                      ("parse", "3&$skip=7"),
                      ("send", "10&$skip=10"), ("send", "3&$skip=17"), ("parse", "10&$skip=10"),
                      ("parse", "3&$skip=17"),
                      ("send", "10&$skip=20"), ("send", "3&$skip=27"), ("parse", "10&$skip=20"),
                      ("parse", "3&$skip=27"),
                      ("send", "10&$skip=30"), ("parse", "10&$skip=30")]
    assert sorted(r["VendorNumber"] for r in records if r["company_id"] == "SAMINC") == sorted(
        v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors"))
    gets = [r for r in sage.requests() if r["path"].endswith("SAMINC/AP/APVendors")]
    assert len(gets) == 7  # no page twice, none left out
    # The early request is prepared by the SDK like any other: the same headers on every page.
    assert len({json.dumps(r["headers"]) for r in gets}) == 1


def test_an_early_request_for_another_page_than_the_paginator_names_is_dropped(
        sage: SageSandbox, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sage.settings(page_size=7)

    def wrong(content: bytes) -> str | None:
        link = early_next_link(content)
        return link.replace("$skip=", "$skip=1") if link else None

    monkeypatch.setattr(client, "early_next_link", wrong)
    records = run_in_process(sage.config(page_size=10, company_ids=["SAMINC"]), capsysbinary)

    assert sorted(r["VendorNumber"] for r in records) == sorted(
        v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors"))
    skips = [parse_qs(r["query"]).get("$skip", ["0"])[0] for r in sage.requests()
             if r["path"].endswith("SAMINC/AP/APVendors")]
    # Each wrong early request reached Sage, but its answer was never read: the right page
    # was asked for next, on a new connection. (Sage may log a dropped request after the
    # one that replaced it: its thread is not told the client went away.)
    assert Counter(skips) == Counter(["0", "17", "7", "10", "117", "17", "20", "127", "27",
                                      "30"])


@pytest.mark.parametrize("next_link", [True, False])
def test_a_record_deleted_during_the_read_fails_the_run_naming_the_counts(
        sage: SageSandbox, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes], next_link: bool) -> None:
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
        run_in_process(sage.config(page_size=10, company_ids=["SAMINC"]), capsysbinary)

    message = str(failure.value)
    assert message.startswith("Reading AP/APVendors of company SAMINC: Sage counted 32 records "
                              "(@odata.count) but 31 came back.")
    assert "run again" in message and "PageSize" in message
    out = capsysbinary.readouterr().out.decode()
    states = [m["value"] for m in map(json.loads, out.splitlines()) if m["type"] == "STATE"]
    # The company's bookmark is not committed: the next run reads the same range again.
    assert states and "replication_key_value" not in json.dumps(
        [s.get("bookmarks", {}).get("vendors") for s in states])
