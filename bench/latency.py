"""The latency mode every end-to-end benchmark shares (issue 19, item 3).

On loopback the simulators answer in microseconds, so a benchmark there measures CPU. A real
Sage 300 behind IIS takes a few hundred milliseconds per request, Basware's cloud API about
the same, and then the number of requests and how many run at once decide the wall time.
This module puts that latency into the simulators (the sandbox's own ``slow`` fault at rate
1.0: every request to that simulator waits ``slow_ms`` before it is handled; the admin API
``/_sandbox/`` is not delayed) and sets the measured wall time beside what latency alone
explains:

- requests per system, counted from each simulator's request log (every request the run
  made: reads, writes, $metadata, tokens, requestStatus polls, acknowledgements);
- the sequential bound: requests x latency, per system. The two plugins of a job run at the
  same time (a Singer pipe), so a job's Sage and Basware requests may overlap: the least it
  can take is max(Sage, Basware), with no overlap at all it takes Sage + Basware;
- the concurrency bound: the sequential bound / C, C being the plugin's limit of requests in
  flight at once against that system. C comes from the plugin's settings when it declares
  such a setting (``CONCURRENCY_SETTINGS``, in meltano.yml or its ``--about``): tap-basware's
  ``max_requests_in_flight`` (default 4, since 7f1e243, for its acknowledgements and
  transfer responses), tap-sage300's (default 4, since d406105, for the pages of a read
  after its first). A plugin that declares none makes one request at a time: C is 1 for it,
  and the concurrency bound equals the sequential bound;
- the measured wall time of the run, and what is left of it beyond the bound (client and
  simulator CPU, Meltano's start-up: what the loopback benchmarks measure).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from _common import ROOT, SAGE_PATH, Sandbox, table

SAGE_LATENCY_MS = 250  # the figures: a Sage 300 behind IIS
BASWARE_LATENCY_MS = 300  # Basware's cloud API
SYSTEMS = ("sage300", "basware")
NAMES = {"sage300": "Sage", "basware": "Basware"}
# Which plugin of each job talks to which system.
JOB_PLUGINS = {"master-data": {"sage300": "tap-sage300", "basware": "target-basware"},
               "invoices": {"basware": "tap-basware", "sage300": "target-sage300"}}
# A plugin setting by one of these names is its limit of requests in flight at once.
CONCURRENCY_SETTINGS = ("max_requests_in_flight", "max_in_flight", "max_concurrent_requests",
                        "concurrency", "parallel_requests", "max_workers")


def add_latency_args(parser: argparse.ArgumentParser, sage_ms: int = SAGE_LATENCY_MS,
                     basware_ms: int = BASWARE_LATENCY_MS) -> None:
    parser.add_argument("--sage-latency-ms", type=int, default=sage_ms, metavar="MS",
                        help=f"added to every Sage 300 request (default {sage_ms}; 0: loopback)")
    parser.add_argument("--basware-latency-ms", type=int, default=basware_ms, metavar="MS",
                        help=f"added to every Basware request (default {basware_ms}; "
                             "0: loopback)")


def set_latency(sandbox: Sandbox, sage_ms: int, basware_ms: int) -> None:
    """Every request to each simulator waits its latency before it is handled (the ``slow``
    fault at rate 1.0); 0 clears the faults (loopback)."""
    for system, ms in (("sage300", sage_ms), ("basware", basware_ms)):
        if ms > 0:
            sandbox.admin("PUT", system, "faults", json={"rates": {"slow": 1.0}, "slow_ms": ms})
        else:
            sandbox.admin("DELETE", system, "faults")


def in_flight_limits() -> dict[str, tuple[int, str]]:
    """Per plugin, (C, where it comes from): the value of a concurrency setting, as
    meltano.yml sets it (the plugin's config, else the setting's `value`) or else as the
    plugin's own `--about` declares its default; 1 when the plugin has no such setting (it
    makes one request at a time)."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    limits: dict[str, tuple[int, str]] = {}
    for kind in ("extractors", "loaders"):
        for plugin in project["plugins"].get(kind, []):
            name = plugin["name"]
            declared = {s["name"]: s for s in plugin.get("settings", [])}
            about = _about_settings(plugin.get("executable", name))
            setting = next((n for n in CONCURRENCY_SETTINGS if n in declared or n in about),
                           None)
            if setting is None:
                limits[name] = (1, "no concurrency setting: one request at a time")
                continue
            value = (plugin.get("config") or {}).get(setting)
            if value is None:
                value = declared.get(setting, {}).get("value")
            if value is None:
                value = about.get(setting, {}).get("default", 1)
            limits[name] = (max(1, int(value)), f"`{setting}` = {value}")
    return limits


def _about_settings(executable: str) -> dict[str, Any]:
    """The settings a plugin declares (`--about --format json`), {} if it cannot say."""
    if executable not in _ABOUT:
        found = list((ROOT / ".meltano").glob(f"*/{executable}/venv/bin/{executable}"))
        properties: dict[str, Any] = {}
        if found:
            try:
                out = subprocess.run([str(found[0]), "--about", "--format", "json"],
                                     capture_output=True, text=True, timeout=120,
                                     check=True).stdout
                properties = json.loads(out).get("settings", {}).get("properties", {})
            except (subprocess.SubprocessError, ValueError, OSError):
                properties = {}
        _ABOUT[executable] = properties
    return _ABOUT[executable]


_ABOUT: dict[str, dict[str, Any]] = {}


def classify(system: str, request: dict[str, Any]) -> str:
    """A short name for what a request was, for the breakdown lines."""
    method, path = request["method"], request["path"]
    parts = path.split("/")
    if system == "basware":
        if len(parts) > 2 and parts[1] == "v1":
            if parts[2] == "tokens":
                return "token"
            if parts[2] == "accountingDocuments" and len(parts) > 4:
                return f"{method} {parts[2]}/{parts[4]}"  # acknowledge, transferResponses
            if parts[2] == "requestStatus" and method == "GET":
                return "GET requestStatus"
            return f"{method} {'/'.join(parts[2:4]) if method != 'GET' else parts[2]}"
        if path.startswith("/_s3/"):
            return f"{method} export page (pre-signed)"
        return f"{method} other"
    if path.endswith("$metadata"):
        return "GET $metadata"
    if path.startswith(SAGE_PATH + "/") and len(parts) > 6:
        return f"{method} {parts[5]}/{parts[6].split('(')[0]}"
    return f"{method} other"


def count_requests(sandbox: Sandbox, since: dict[str, int]) -> dict[str, Counter[str]]:
    """Every request each simulator logged after `since` (its last_seq before the run)."""
    return {system: Counter(classify(system, r)
                            for r in sandbox.requests_since(system, since[system]))
            for system in SYSTEMS}


def marks(sandbox: Sandbox) -> dict[str, int]:
    return {system: sandbox.last_seq(system) for system in SYSTEMS}


@dataclass
class LatencyRow:
    """One run: its requests per system, the bounds latency sets, and the wall time."""

    label: str
    data: str
    requests: dict[str, Counter[str]]
    wall: float
    latency_ms: dict[str, int]
    limits: dict[str, int] = field(default_factory=lambda: {s: 1 for s in SYSTEMS})
    cpu: float = 0.0  # CPU seconds of Meltano, the plugins and the simulators during the run

    def count(self, system: str) -> int:
        return sum(self.requests[system].values())

    def sequential(self, system: str) -> float:
        return self.count(system) * self.latency_ms[system] / 1000

    def cells(self) -> list[Any]:
        sage, basware = self.sequential("sage300"), self.sequential("basware")
        c_sage, c_basware = self.limits["sage300"], self.limits["basware"]
        conc_max = max(sage / c_sage, basware / c_basware)
        conc_sum = sage / c_sage + basware / c_basware
        return [self.label, self.data, self.count("sage300"), self.count("basware"),
                f"{sage:,.1f}", f"{basware:,.1f}", f"{max(sage, basware):,.1f} / "
                f"{sage + basware:,.1f}", f"{c_sage} / {c_basware}",
                f"{conc_max:,.1f} / {conc_sum:,.1f}", f"{self.wall:,.1f}",
                f"{self.wall - conc_sum:+,.1f}"]


HEADERS = ["run", "data", "Sage requests", "Basware requests", "Sage seq. s",
           "Basware seq. s", "bound s, max / sum", "C Sage / Basware",
           "bound / C s, max / sum", "measured wall s", "wall - sum / C s"]


def breakdown(rows: Iterable[LatencyRow]) -> list[str]:
    """One line per run: what its requests were, per system."""
    lines = []
    for row in rows:
        parts = []
        for system in SYSTEMS:
            kinds = ", ".join(f"{kind} {n:,}" for kind, n in
                              sorted(row.requests[system].items(), key=lambda kv: -kv[1]))
            parts.append(f"{NAMES[system]}: {kinds or 'none'}")
        lines.append(f"- {row.label}, {row.data}: " + "; ".join(parts))
    return lines


def latency_table(title: str, rows: Sequence[LatencyRow], job_plugins: dict[str, str],
                  notes: Iterable[str] = ()) -> str:
    limits = in_flight_limits()
    sources = "; ".join(f"{plugin} C={limits[plugin][0]} ({limits[plugin][1]})"
                        for plugin in job_plugins.values() if plugin in limits)
    latency = rows[0].latency_ms if rows else {"sage300": 0, "basware": 0}
    return table(title, HEADERS, [row.cells() for row in rows], [
        f"Latency added to every request: Sage {latency['sage300']} ms, Basware "
        f"{latency['basware']} ms (the sandbox's `slow` fault at rate 1.0). Requests: every "
        "request in the simulator's log during the run. Sequential bound: requests x "
        "latency per system; the tap and the target of a job run at once, so the job's bound "
        "is max(Sage, Basware) if the two overlap perfectly, Sage + Basware if they never "
        f"do. C: requests in flight at once per system, from the plugins' settings: {sources}. "
        "wall - sum / C: what latency does not explain (CPU of the plugins, the simulators "
        "and Meltano; negative where the two systems' requests overlapped).",
        "", "Requests by kind:", "", *breakdown(rows), *notes])


def job_limits(job: str) -> dict[str, int]:
    limits = in_flight_limits()
    return {system: limits.get(plugin, (1, ""))[0]
            for system, plugin in JOB_PLUGINS[job].items()}
