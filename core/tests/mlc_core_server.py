"""A scripted HTTP server on loopback for the retry tests (stdlib, a thread per request)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Behaviour = Callable[[BaseHTTPRequestHandler], None]


def respond(status: int, headers: dict[str, str] | None = None, body: object = None
            ) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return behave


def stall(seconds: float) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        respond(200)(handler)
    return behave


def drop(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without answering (the client sees RemoteDisconnected)."""
    handler.close_connection = True


class Server:
    """A scripted server: each path answers with its behaviours in turn, repeating the last."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Behaviour]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0]
                server.requests.append((self.command, path, dict(self.headers)))
                script = server.scripts[path]
                (script.pop(0) if len(script) > 1 else script[0])(self)

            do_GET = do_POST = handle_one

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A stalled handler writing to a socket the client gave up on is expected here.
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def script(self, path: str, *behaviours: Behaviour) -> str:
        self.scripts[path] = list(behaviours)
        return self.url + path

    def hits(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
