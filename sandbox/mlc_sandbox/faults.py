"""Fault injection shared by both simulators.

Faults are decided per request, before the simulator handles it (``*_before`` kinds and the
status kinds) or after it has handled it (``*_after`` kinds: the write happened, the client
never hears so). Decisions come from one seeded RNG, so a single-threaded client sees the
same faults for the same seed on every run.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

# Every kind the sandbox can inject, and what the client sees.
FAULT_KINDS: dict[str, str] = {
    "429": "429 Too Many Requests with Retry-After",
    "500": "500 Internal Server Error",
    "503": "503 Service Unavailable with Retry-After",
    "stall": "no response for stall_seconds, then the connection closes; nothing was processed",
    "drop": "connection closed at once without a response; nothing was processed",
    "stall_after": "request processed, then no response for stall_seconds and the connection closes",
    "drop_after": "request processed, then the connection closes without a response",
    "slow": "normal response after slow_ms extra latency",
}


@dataclass
class ScheduledFault:
    """Inject ``fault`` into the ``nth`` (1-based) request that matches ``method``/``path``."""

    nth: int
    fault: str
    method: str | None = None
    path: str | None = None  # regular expression searched in the request path
    fired: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path and not re.search(self.path, path))


@dataclass
class FaultConfig:
    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # kind -> probability per request
    retry_after: float = 1.0
    stall_seconds: float = 5.0
    slow_ms: int = 0
    methods: list[str] | None = None  # rates apply only to these methods (None: all)
    path: str | None = None  # rates apply only where this regex matches the path
    token_expiry_calls: int = 0  # Basware: a token stops working after N API calls (0: never)
    schedule: list[ScheduledFault] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        schedule = [ScheduledFault(**s) for s in data.pop("schedule", [])]
        config = cls(**data, schedule=schedule)
        for kind in list(config.rates) + [s.fault for s in schedule]:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    """Decides, per request, which fault (if any) the client gets."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._match_counts: dict[int, int] = {}
            self.injected: dict[str, int] = {}

    def decide(self, method: str, path: str) -> str | None:
        with self._lock:
            cfg = self.config
            due: ScheduledFault | None = None
            # Every entry counts every request it matches, whichever entry fires.
            for index, scheduled in enumerate(cfg.schedule):
                if scheduled.fired or not scheduled.matches(method, path):
                    continue
                count = self._match_counts.get(index, 0) + 1
                self._match_counts[index] = count
                if count == scheduled.nth and due is None:
                    scheduled.fired = True
                    due = scheduled
            if due is not None:
                return self._count(due.fault)
            if not cfg.rates:
                return None
            if cfg.methods and method.upper() not in {m.upper() for m in cfg.methods}:
                return None
            if cfg.path and not re.search(cfg.path, path):
                return None
            # One draw per request keeps the sequence stable however many kinds are enabled.
            draw = self._rng.random()
            cumulative = 0.0
            for kind in sorted(cfg.rates):
                cumulative += cfg.rates[kind]
                if draw < cumulative:
                    return self._count(kind)
            return None

    def _count(self, kind: str) -> str:
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind
