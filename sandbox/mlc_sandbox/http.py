"""HTTP plumbing shared by both simulators: requests, responses, the admin API, faults, the log.

A simulator is a :class:`Simulator` subclass that turns a :class:`Request` into a
:class:`Response`. :class:`SimulatorServer` serves it over real HTTP/1.1 on loopback and adds
what every simulator needs: fault injection, a request log with secrets masked, and the
``/_sandbox/`` admin endpoints (state, log, faults, settings, reset).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import FaultConfig, FaultInjector

_SECRET_KEY = re.compile(r"password|secret|token|authorization|signature", re.IGNORECASE)
_MASKED_HEADERS = {"authorization", "cookie", "set-cookie", "proxy-authorization"}
LOG_CAPACITY = 50_000


@dataclass
class Request:
    method: str
    path: str  # percent-decoded path, without the query string
    raw_path: str  # as sent, including the query string
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str  # scheme://host:port this server is reached at

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Headers that must repeat (e.g. two WWW-Authenticate challenges), sent after ``headers``.
    extra_headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None,
             content_type: str = "application/json; charset=utf-8") -> Response:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
        return cls(status, body, {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def empty(cls, status: int = 204, headers: dict[str, str] | None = None) -> Response:
        return cls(status, b"", dict(headers or {}))

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8",
             headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type, **(headers or {})})


class Simulator:
    """One simulated API. Subclasses implement :meth:`handle` and the state hooks."""

    name = "simulator"

    def __init__(self) -> None:
        self.lock = threading.RLock()  # handlers run in threads; state changes hold this
        self.settings: dict[str, Any] = {}
        self.faults: FaultInjector | None = None  # set by the server

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """The full current state, as JSON-able data."""
        raise NotImplementedError

    def reset(self, seed: int, data: str) -> None:
        raise NotImplementedError

    def update_settings(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(self.settings)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(self.settings)}")
        self.settings.update(changes)

    def fault_response(self, kind: str, retry_after: float) -> Response:
        """What a status fault looks like on this API (subclasses mimic their real error pages)."""
        headers = {"Retry-After": _retry_after_value(retry_after)} if kind in ("429", "503") else {}
        return Response.json(int(kind), {"message": HTTPStatus(int(kind)).phrase}, headers)

    def admin(self, request: Request, action: str) -> Response | None:
        """Simulator-specific admin actions under ``/_sandbox/<action>``; None if unknown."""
        return None

    def info(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url}

    def secrets(self) -> list[str]:
        """Values that must never appear in the request log."""
        return []


def _retry_after_value(seconds: float) -> str:
    # Retry-After carries whole seconds; keep sub-second test delays honest by rounding up.
    return str(max(0, int(seconds + 0.999)))


class RequestLog:
    """The last LOG_CAPACITY requests, with secrets masked, numbered from 1.

    A request is logged when it ends; one that arrived before the log was cleared (a stalled
    answer held for minutes, say) belongs to the cleared log, not to whatever test reads next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=LOG_CAPACITY)
        self._seq = 0
        self._epoch = 0  # bumped by clear()

    @property
    def epoch(self) -> int:
        return self._epoch

    def add(self, entry: dict[str, Any], epoch: int) -> None:
        with self._lock:
            if epoch != self._epoch:
                return
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._entries if e["seq"] > seq]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._epoch += 1

    @property
    def last_seq(self) -> int:
        return self._seq


def mask_headers(headers: Message, secrets: list[str]) -> dict[str, str]:
    masked: dict[str, str] = {}
    for key, value in headers.items():
        if key.lower() in _MASKED_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            masked[key] = f"{scheme} ***".strip()
        else:
            masked[key] = mask_text(value, secrets)
    return masked


def mask_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def mask_json(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(k) and isinstance(v, str) else mask_json(v, secrets))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v, secrets) for v in value]
    if isinstance(value, str):
        return mask_text(value, secrets)
    return value


class SimulatorServer:
    """Serves one :class:`Simulator` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0,
                 faults: FaultConfig | None = None) -> None:
        self.simulator = simulator
        self.faults = FaultInjector(faults)
        simulator.faults = self.faults
        self.log = RequestLog()
        self.log_bodies = True
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.simulator.name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- admin API ---------------------------------------------------------------------------
    def handle_admin(self, request: Request) -> Response:
        action = request.path[len("/_sandbox/"):].strip("/")
        sim = self.simulator
        try:
            if action == "health" and request.method == "GET":
                return Response.json(200, {"ok": True, "simulator": sim.name})
            if action == "state" and request.method == "GET":
                with sim.lock:
                    return Response.json(200, sim.snapshot())
            if action == "requests":
                if request.method == "DELETE":
                    self.log.clear()
                    return Response.empty()
                if request.method == "PATCH":
                    # {"bodies": false}: a light log (no request bodies) for volume runs,
                    # where 100,000 logged records would cost the simulator memory and CPU.
                    bodies = (request.json() or {}).get("bodies")
                    if not isinstance(bodies, bool):
                        raise ValueError("PATCH /_sandbox/requests takes {\"bodies\": true|false}")
                    self.log_bodies = bodies
                    return Response.json(200, {"bodies": self.log_bodies})
                since = int(request.arg("since", "0") or 0)
                return Response.json(200, {"last_seq": self.log.last_seq,
                                           "requests": self.log.since(since)})
            if action == "faults":
                if request.method in ("PUT", "POST"):
                    self.faults.configure(FaultConfig.from_dict(request.json() or {}))
                elif request.method == "DELETE":
                    self.faults.configure(FaultConfig())
                return Response.json(200, {"config": self.faults.config.to_dict(),
                                           "injected": self.faults.injected})
            if action == "settings":
                if request.method in ("PATCH", "PUT", "POST"):
                    with sim.lock:
                        sim.update_settings(request.json() or {})
                return Response.json(200, sim.settings)
            if action == "reset" and request.method == "POST":
                body = request.json() or {}
                with sim.lock:
                    sim.reset(int(body.get("seed", 0)), str(body.get("data", "demo")))
                self.log.clear()
                return Response.json(200, {"ok": True})
            custom = sim.admin(request, action)
            if custom is not None:
                return custom
        except (ValueError, KeyError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(404, {"error": f"unknown sandbox action {request.method} {action}"})


def _make_handler(server: SimulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as IIS and API gateways do
        disable_nagle_algorithm = True  # small JSON answers must not wait ~40 ms for an ACK
        server_version = server.simulator.name

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # the request log replaces stderr noise

        def _dispatch(self) -> None:
            started = time.perf_counter()
            epoch = server.log.epoch
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            host = self.headers.get("Host") or f"127.0.0.1:{server.port}"
            request = Request(
                method=self.command, path=unquote(parts.path), raw_path=self.path,
                query=parse_qs(parts.query, keep_blank_values=True), headers=self.headers,
                body=body, base_url=f"http://{host}",
            )
            if request.path.startswith("/_sandbox/"):
                self._send(server.handle_admin(request))
                return

            fault = server.faults.decide(request.method, request.path)
            cfg = server.faults.config
            response: Response | None = None
            if fault in ("stall", "drop"):
                if fault == "stall":
                    time.sleep(cfg.stall_seconds)
            elif fault in ("429", "500", "503"):
                response = server.simulator.fault_response(fault, cfg.retry_after)
            else:
                if fault == "slow":
                    time.sleep(cfg.slow_ms / 1000)
                try:
                    response = server.simulator.handle(request)
                except Exception as exc:  # a simulator bug must be loud, not a hung client
                    response = Response.json(500, {"sandbox_bug": repr(exc)})
                if fault == "stall_after":
                    time.sleep(cfg.stall_seconds)
                if fault in ("stall_after", "drop_after"):
                    response = None

            secrets = server.simulator.secrets()
            entry: dict[str, Any] = {
                "time": time.time(), "method": request.method,
                "path": request.path, "query": mask_text(parts.query, secrets),
                "status": response.status if response else None, "fault": fault,
                "headers": mask_headers(self.headers, secrets),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            if body and not server.log_bodies:
                entry["body_bytes"] = len(body)
            elif body and request.method != "GET":
                try:
                    entry["body"] = mask_json(json.loads(body), secrets)
                except ValueError:
                    entry["body"] = mask_text(body.decode("utf-8", "replace"), secrets)
            server.log.add(entry, epoch)

            if response is None:
                self.close_connection = True  # the client sees a dropped connection
                return
            self._send(response)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            for key, value in [*response.headers.items(), *response.extra_headers]:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    return Handler
