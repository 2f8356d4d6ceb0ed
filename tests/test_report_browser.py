"""`ml-connector audit report` as an AP lead sees it: the report of real runs of both jobs
against the sandbox (the demo data), in the terminal and as HTML in a real headless Chromium
at a phone's width and a desktop's.

What a person sees is asserted from the page's visible text (`document.body.innerText`, over
the Chrome DevTools Protocol) and its layout (the failure above what was created, no sideways
scrolling on the phone), not from the HTML source. Screenshots are kept in
output/test-artifacts/ for a person to look at. Chromium is Debian's package, which `make test`
installs when it is missing; without it these tests fail (never skip) saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websocket  # websocket-client: test-only, to talk to Chromium (docs/decisions.md)
from e2e import ROOT, RUN_TIMEOUT, Project, reset_sandbox

from ml_connector_core.ledger import Ledger
from mlc_sandbox.serve import Sandbox

CLI = str(Path(sys.executable).with_name("ml-connector"))
ARTIFACTS = ROOT / "output" / "test-artifacts"
FAILED_INVOICE = "INV-18825"
FAILED_REASON = "GL account 6999-200 does not exist in Sage 300 company SAMINC"
#: A bound for a hung browser, never a pass/fail criterion.
BROWSER_TIMEOUT = 120
PHONE, DESKTOP = (390, 844), (1280, 900)


@pytest.fixture(scope="module")
def project(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The demo's two jobs, once for the whole module: master-data through `ml-connector run`
    (its plugin runs share the Meltano run id it gives the job run), invoices through a plain
    `meltano run` (no shared id: its plugin runs are grouped by time)."""
    reset_sandbox(sandbox)
    project = Project.create(sandbox, tmp_path_factory.mktemp("report"))
    done = subprocess.run([CLI, "run", "master-data", "--environment", "sandbox"], cwd=ROOT,
                          env=project.env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    run = project.run("invoices")
    assert run.ok, run.output[-4000:]
    yield project
    reset_sandbox(sandbox)


def audit(project: Project, *args: str, cwd: Path | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "audit", *args], cwd=cwd or project.workdir, env=project.env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def test_text_report_failures_first(project: Project) -> None:
    done = audit(project, "report")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    # The section order an AP lead reads: what needs attention, what was created, master
    # data, totals.
    order = [text.index(heading) for heading in (
        "NEEDS ATTENTION (6)", "CREATED IN SAGE 300 (27 invoices, ready to post)",
        "MASTER DATA SENT TO BASWARE", "TOTALS")]
    assert order == sorted(order), text
    attention = text[order[0]:order[1]]
    assert (f"Invoice {FAILED_INVOICE}  Polaris Office Group (1400)  454.16 USD  "
            "Sage company SAMINC") in attention
    assert f"Reason:     {FAILED_REASON}" in attention
    assert f"ml-connector retry {FAILED_INVOICE}" in attention
    for record in ("Vendors SAMLTD/1600  Rheinland Industrietechnik GmbH",
                   "Vendors SAMLTD/1610  Lakeshore Pallet Recovery Ltd.",
                   "Purchase orders SAMLTD/PO200161", "PO lines SAMLTD/PO200161/1000",
                   "PO lines SAMLTD/PO200161/2000"):
        assert record in attention
    created = text[order[1]:order[2]]
    rows = [line for line in created.splitlines() if "created ready to post" in line]
    assert len(rows) == 27 and FAILED_INVOICE not in created
    assert "Posted" not in text and "posted by now, Sage 300 says" in created
    totals = dict(line.strip().rsplit("  ", 1) for line in text[order[3]:].splitlines()[1:])
    assert {key.strip(): value.strip() for key, value in totals.items()}.items() >= {
        "Invoices received from Basware": "28",
        "Invoices created in Sage 300, ready to post": "27 (149,212.06 CAD, 227,462.80 USD)",
        "Invoices that need attention": "1",
        "Outcomes answered to Basware": "28",
        "Master-data records rejected": "5",
    }.items()
    # The latest run of each job: master-data's plugin runs by the Meltano run id
    # `ml-connector run` gave them, invoices' (a plain `meltano run`) by time, its tap's two
    # tasks and the target together.
    with Ledger.open(project.ledger_url) as ledger:
        runs = ledger.runs_between()
    master = {run.job_id for run in runs if run.plugin in ("tap-sage300", "target-basware")}
    assert len(master) == 1 and None not in master
    assert "master-data: success, " in text and f"Meltano run {master.pop()}" in text
    assert "invoices: success, " in text and "(tap-basware, target-sage300)" in text
    assert sum(run.plugin == "tap-basware" for run in runs) == 2


def test_text_report_periods_and_runs(project: Project, tmp_path: Path) -> None:
    """`--since`, `--from`/`--to` and `--run`; the commands of README.md and docs/ledger.md
    as they are written there."""
    day = audit(project, "report", "--since", "1d", "--html", "report.html", cwd=tmp_path)
    assert day.returncode == 0 and "Runs started from " in day.stdout
    assert "NEEDS ATTENTION (6)" in day.stdout and "(27 invoices" in day.stdout
    assert "Needs attention (6)" in (tmp_path / "report.html").read_text()
    documented = audit(project, "report", "--from", "2026-12-01", "--to", "2026-12-02")
    assert documented.returncode == 0, documented.stderr
    assert "Runs started from 2026-12-01 00:00:00 UTC until 2026-12-02 00:00:00 UTC" \
        in documented.stdout
    before = datetime.now(UTC) - timedelta(days=30)
    empty = audit(project, "report", "--from", before.date().isoformat(), "--to",
                  (before + timedelta(days=1)).date().isoformat())
    assert empty.returncode == 0 and "  no runs" in empty.stdout
    assert "NEEDS ATTENTION (0)" in empty.stdout
    with Ledger.open(project.ledger_url) as ledger:
        target = next(run for run in ledger.runs_between() if run.plugin == "target-sage300")
    one = audit(project, "report", "--run", target.run_id)
    assert one.returncode == 0 and "invoices: success" in one.stdout
    assert "master-data:" not in one.stdout and "NEEDS ATTENTION (1)" in one.stdout
    missing = audit(project, "report", "--run", "no-such-run")
    assert missing.returncode == 1 and "no run found" in missing.stderr


# -- in a real browser ---------------------------------------------------------------------

def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is missing: run `make test` (it installs Debian's chromium "
                    "package), or `apt-get install -y --no-install-recommends chromium`")
    return found


class Browser:
    """One headless Chromium on a page, driven over the DevTools Protocol."""

    def __init__(self, url: str, size: tuple[int, int], profile: Path) -> None:
        self.process = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
             "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._port(profile)
        deadline = time.monotonic() + BROWSER_TIMEOUT
        page = None
        while page is None:
            assert time.monotonic() < deadline, "Chromium opened no page"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                page = next((t for t in json.load(r) if t.get("type") == "page"), None)
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"],
                                                  timeout=BROWSER_TIMEOUT)
        self.next_id = 0
        # A phone: its width, touch, and the page's viewport meta honoured.
        self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=size[0] < 600)
        self.call("Page.reload")
        while self.evaluate("document.readyState") != "complete":
            assert time.monotonic() < deadline, "the report never finished loading"
            time.sleep(0.1)

    def _port(self, profile: Path) -> int:
        """Chromium writes its DevTools port into the profile once it listens."""
        marker = profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while not marker.exists() or not marker.read_text().strip():
            if self.process.poll() is not None:
                pytest.fail(f"Chromium exited {self.process.returncode}: "
                            f"{self.process.stderr.read()[-2000:] if self.process.stderr else ''}")
            assert time.monotonic() < deadline, "Chromium never opened its DevTools port"
            time.sleep(0.1)
        return int(marker.read_text().split()[0])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        import base64

        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(png)
        return png

    def close(self) -> None:
        self.socket.close()
        self.process.kill()
        self.process.wait(timeout=60)
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture(scope="module")
def report_page(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page written as the docs say: `ml-connector audit report --html report.html`."""
    folder = tmp_path_factory.mktemp("page")
    done = audit(project, "report", "--html", "report.html", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "report.html"


def total(text: str, label: str) -> str:
    """The value shown after a totals label: beside it on a desktop, under it on a phone."""
    found = re.search(re.escape(label) + r"\s*([^\n]+)", text)
    assert found, (label, text[-1500:])
    return found.group(1).strip()


@pytest.mark.parametrize("name,size", [("phone", PHONE), ("desktop", DESKTOP)])
def test_report_in_a_browser(report_page: Path, name: str, size: tuple[int, int]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(report_page.as_uri(), size, Path(profile))
        try:
            text = browser.evaluate("document.body.innerText")
            layout = browser.evaluate("""(() => {
                const top = id => document.getElementById(id).getBoundingClientRect().top;
                const failed = [...document.querySelectorAll('#attention td')]
                    .find(td => td.innerText.includes('INV-18825'));
                return {attention: top('attention'), created: top('created'),
                        masterData: top('master-data'), totals: top('totals'),
                        failedRowTop: failed ? failed.getBoundingClientRect().top : null,
                        failedRowVisible: failed ? failed.getClientRects().length > 0 : false,
                        scrollWidth: document.documentElement.scrollWidth,
                        width: window.innerWidth, height: window.innerHeight,
                        external: [...document.querySelectorAll('[src],[href],script,link')]
                            .length};
            })()""")
            png = browser.screenshot(ARTIFACTS / f"report-{name}.png")
        finally:
            browser.close()
    # The failure, first, as a person reads it.
    assert layout["attention"] < layout["created"] < layout["masterData"] < layout["totals"]
    assert layout["failedRowVisible"], text
    assert "Needs attention (6)" in text
    for seen in ("INV-18825", "Polaris Office Group (1400)", "454.16 USD", FAILED_REASON,
                 "ml-connector retry INV-18825", "SAMLTD/1600", "Rheinland Industrietechnik "
                 "GmbH", "Basware: Currency EUR is not active in P2P"):
        assert seen in text, seen
    # What was created, worded as the ledger knows it: ready to post, never "posted".
    assert "Created in Sage 300 (27 invoices, ready to post)" in text
    assert text.count("created ready to post") == 27
    assert "Posted" not in text and "It does not post it" in text
    # Totals.
    assert total(text, "Invoices created in Sage 300, ready to post") \
        == "27 (149,212.06 CAD, 227,462.80 USD)"
    assert total(text, "Invoices that need attention") == "1"
    assert total(text, "Invoices received from Basware") == "28"
    assert total(text, "Master-data records rejected") == "5"
    assert layout["external"] == 0  # self-contained: nothing fetched, no script
    # Readable at this width: nothing to scroll sideways; on a phone the failure is on the
    # first screen.
    assert layout["scrollWidth"] <= layout["width"], layout
    if name == "phone":
        assert layout["failedRowTop"] is not None
        assert 0 < layout["failedRowTop"] < layout["height"], layout
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == size and len(png) > 20_000, (width, height, len(png))
