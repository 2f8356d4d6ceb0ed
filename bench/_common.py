"""What every benchmark shares: the sandbox process, plugin configs, timing, RSS, tables.

Benchmarks print figures; they are not tests and never part of `make test`. Each runs the
simulators in a process of their own (``ml-connector sandbox serve``), so the bench script's
own work never competes with them for the GIL, and the simulators' CPU time can be read from
``/proc``. Every measured program runs as a child process, timed with ``os.wait4``: wall time,
CPU time and peak RSS of that one child.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PEER_BIN = ROOT / ".venv-bench-peer" / "bin"
SAGE_PATH = "/Sage300WebApi/v1.0/-"
COMPANIES = ["SAMINC", "SAMLTD"]
COMPANY_CODES = {"SAMINC": "US01", "SAMLTD": "CA01"}
# What Basware gets (meltano.yml, job master-data): reference data, vendors, POs and lines.
MASTER_DATA_STREAMS = ["gl_accounts", "cost_centers", "payment_terms", "vendors",
                       "purchase_orders", "purchase_order_lines"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


# -- the simulators ----------------------------------------------------------------------------

class Sandbox:
    """Both simulators in their own process on free loopback ports, with a light request log
    (no bodies: at 100,000 records a full log would cost the simulator memory and CPU)."""

    def __init__(self, data: str = "large", seed: int = 0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mlc-bench-")
        info_file = Path(self._dir.name) / "sandbox.json"
        self._log = open(Path(self._dir.name) / "sandbox.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(BIN / "ml-connector"), "sandbox", "serve", "--sage-port", "0",
             "--basware-port", "0", "--data", data, "--seed", str(seed),
             "--info-file", str(info_file)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not info_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start; see {self._log.name}")
            time.sleep(0.1)
        self.info = json.loads(info_file.read_text())
        self.sage_root = self.info["sage300"]["base_url"][: -len(SAGE_PATH)]
        self.basware_url = self.info["basware"]["base_url"]
        for system in ("sage300", "basware"):
            self.admin("PATCH", system, "requests", json={"bodies": False})

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._dir.cleanup()

    def admin(self, method: str, system: str, action: str, **kwargs: Any) -> Any:
        url = f"{self.info[system]['admin_url']}/{action}"
        response = requests.request(method, url, timeout=600, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self, data: str, seed: int = 0) -> None:
        for system in ("sage300", "basware"):
            self.admin("POST", system, "reset", json={"seed": seed, "data": data})

    def last_seq(self, system: str) -> int:
        return int(self.admin("GET", system, "requests", params={"since": 1 << 62})["last_seq"])

    def requests_since(self, system: str, seq: int) -> list[dict[str, Any]]:
        return self.admin("GET", system, "requests", params={"since": seq})["requests"]

    def cpu_seconds(self) -> float:
        return process_cpu(self.process.pid)


def process_start(pid: int) -> int:
    """When a process started, in clock ticks after boot (/proc/<pid>/stat field 22)."""
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[19])


def peak_rss_mb(pid: int) -> float:
    """A running process's own peak RSS in MB (VmHWM in /proc/<pid>/status); 0 if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- plugin configuration ----------------------------------------------------------------------

def tap_config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    """tap-sage300 on its own, without a ledger unless `extra` names one: the overhead, peer
    and memory benchmarks measure the read (bench/ledger_reads.py measures the ledger)."""
    sage = sandbox.info["sage300"]
    return {"base_url": sage["base_url"], "company_ids": COMPANIES,
            "username": sage["username"], "password": sage["password"], "ledger_url": "off",
            **extra}


def write_json(directory: Path, name: str, value: Any) -> Path:
    path = directory / name
    path.write_text(json.dumps(value))
    return path


def tap_catalog(config_path: Path, streams: Iterable[str]) -> dict[str, Any]:
    """tap-sage300's discovered catalog with exactly `streams` selected."""
    return discovered_catalog("tap-sage300", config_path, streams)


def discovered_catalog(executable: str, config_path: Path, streams: Iterable[str]
                       ) -> dict[str, Any]:
    """A tap's discovered catalog (``--discover``) with exactly `streams` selected."""
    wanted = set(streams)
    out = subprocess.run([str(BIN / executable), "--config", str(config_path), "--discover"],
                         cwd=ROOT, capture_output=True, check=True, text=True).stdout
    catalog = json.loads(out)
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if not meta["breadcrumb"]:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def basware_tap_config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    """tap-basware against the Basware simulator (meltano.yml's sandbox settings)."""
    basware = sandbox.info["basware"]
    return {"base_url": basware["base_url"], "client_id": basware["client_id"],
            "client_secret": basware["client_secret"],
            "company_codes": [COMPANY_CODES[company] for company in COMPANIES], **extra}


# -- measuring ---------------------------------------------------------------------------------

@dataclass
class Measured:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child (and its waited-for children)
    max_rss_mb: float  # peak resident set of the child
    returncode: int


def run_measured(command: Sequence[str], *, stdin: IO[Any] | int | None = subprocess.DEVNULL,
                 stdout: IO[Any] | int | None = subprocess.DEVNULL,
                 env: dict[str, str] | None = None, check: bool = True) -> Measured:
    """Run one child to completion; wall time, CPU and peak RSS from its own rusage."""
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=ROOT, stdin=stdin, stdout=stdout,
                                   stderr=stderr, env=env)
        peak = PeakRss(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        peak.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
        if check and process.returncode != 0:
            stderr.seek(0)
            tail = stderr.read()[-4000:].decode("utf-8", "replace")
            raise RuntimeError(f"{command[0]} exited {process.returncode}:\n{tail}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak.mb or usage.ru_maxrss / 1024,
                    process.returncode)


class PeakRss:
    """The child's own peak RSS (VmHWM), polled from /proc while it runs. Not ru_maxrss:
    Linux carries the parent's high-water mark over fork and exec, so a child of a large
    bench process would report the parent's size."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        import threading

        self.mb = 0.0
        self._pid, self._interval = pid, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, ValueError):  # it just ended
                self.mb = max(self.mb, peak_rss_mb(self._pid))
            self._done.wait(self._interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def alternate(contenders: dict[str, Callable[[], float]], repeats: int = REPEATS
              ) -> dict[str, list[float]]:
    """Run each contender `repeats` times, interleaved (A B C A B C ...), so machine load
    drifts hit all of them alike; returns every figure per contender."""
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(repeats):
        order = list(contenders)
        if round_number % 2:  # ...and alternate who goes first
            order.reverse()
        for name in order:
            figures[name].append(contenders[name]())
    return figures


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- output ------------------------------------------------------------------------------------

def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]],
          notes: Iterable[str] = ()) -> str:
    """A Markdown table (pasted as-is into docs/performance.md), printed at once."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = [f"### {title}", "", "| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    notes = list(notes)
    if notes:
        lines.append("")
        lines += notes
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def machine() -> str:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), "0")
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    return (f"{os.cpu_count()} CPU(s) ({model}), {int(memory) / 1024 / 1024:.1f} GiB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- Meltano -----------------------------------------------------------------------------------

class MeltanoProject:
    """The repository's Meltano project with its own system directory, database, state backend
    and ledger (sharing the plugin venvs `meltano install` built), pointed at `sandbox`."""

    def __init__(self, sandbox: Sandbox, workdir: Path) -> None:
        system_dir = workdir / "meltano"
        system_dir.mkdir()
        for kind in ("extractors", "loaders", "mappers", "utilities"):
            if (ROOT / ".meltano" / kind).is_dir():
                (system_dir / kind).symlink_to(ROOT / ".meltano" / kind)
        self.ledger_url = f"sqlite:///{workdir / 'ledger.sqlite'}"
        sage = sandbox.info["sage300"]
        self.env = {
            **os.environ,
            "MELTANO_SYS_DIR_ROOT": str(system_dir),
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_STATE_BACKEND_URI": f"file://{workdir / 'state'}",
            "ML_CONNECTOR_LEDGER_URL": self.ledger_url,
            "TAP_SAGE300_BASE_URL": sage["base_url"],
            "TAP_SAGE300_COMPANY_IDS": json.dumps(COMPANIES),
            "TAP_SAGE300_USERNAME": sage["username"],
            "TAP_SAGE300_PASSWORD": sage["password"],
            "TARGET_BASWARE_BASE_URL": sandbox.basware_url,
            # job invoices (bench/end_to_end.py's latency mode)
            "TAP_BASWARE_BASE_URL": sandbox.basware_url,
            "TARGET_SAGE300_BASE_URL": sage["base_url"],
            "TARGET_SAGE300_USERNAME": sage["username"],
            "TARGET_SAGE300_PASSWORD": sage["password"],
        }

    def run(self, *args: str, sampler: ProcessSampler | None = None) -> Measured:
        command = [str(BIN / "meltano"), *args]
        if sampler is None:
            return run_measured(command, env=self.env)
        with tempfile.TemporaryFile() as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=ROOT, env=self.env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=stderr)
            sampler.start(process.pid)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            sampler.stop()
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                stderr.seek(0)
                raise RuntimeError(f"meltano {' '.join(args)} exited {code}:\n"
                                   + stderr.read()[-4000:].decode("utf-8", "replace"))
        return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code)


class ProcessSampler:
    """Polls /proc for the descendants of one process and keeps, per process, its last CPU
    time and peak RSS (VmHWM), named by `classify(cmdline)`. The last poll interval of a
    process's life is lost (at most `interval` of CPU per process)."""

    def __init__(self, classify: Callable[[str], str], interval: float = 0.25) -> None:
        self.classify = classify
        self.interval = interval
        self.cpu: dict[tuple[int, int], tuple[str, float]] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self._stop = False
        self._thread: Any = None

    def start(self, root_pid: int) -> None:
        import threading

        self._stop = False
        self._thread = threading.Thread(target=self._loop, args=(root_pid,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()

    def by_name(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, seconds in self.cpu.values():
            totals[name] = totals.get(name, 0.0) + seconds
        return totals

    def _loop(self, root_pid: int) -> None:
        while not self._stop:
            for pid in _descendants(root_pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    name = self.classify(cmdline.decode("utf-8", "replace"))
                    # Keyed with the start time too: pids wrap (pid_max 32768 here), and a new
                    # process under a dead one's pid would overwrite its CPU time.
                    self.cpu[(pid, process_start(pid))] = (name, process_cpu(pid))
                    self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0),
                                                 peak_rss_mb(pid))
                except (OSError, ValueError, IndexError):
                    continue  # it just ended
            time.sleep(self.interval)


def _descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root_pid]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, ()))
    return found
