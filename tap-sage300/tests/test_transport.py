"""How pages travel: requested one ahead on the tap's own connection (prefetch.py), except
through a proxy, which gets every request as ``requests`` would send it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from tap_sage300_testkit import SageSandbox


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
