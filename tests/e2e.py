"""The end-to-end harness: real `meltano run` jobs against both simulators, and a canonical
snapshot of what the simulators hold afterwards.

Shared by the root e2e tests (put on sys.path by tests/conftest.py) and `bench/soak.py`.

- :class:`Project` is one test's Meltano view of the repository: its own system directory
  (run files, system database), state backend and ledger, sharing the plugin environments
  `meltano install` built under `.meltano/`, and env vars pointing every plugin at the
  sandbox's free ports. It runs jobs (`meltano run [--force] <job>`) with a bound, or starts
  one in its own process group so it can be SIGKILLed whole.
- :func:`snapshot` reduces both simulators' `/_sandbox/state` to what the pipelines are
  answerable for, without volatile fields (timestamps, request ids, batch and entry numbers),
  and, given the project's ledger, each record's latest outcome there, so a run under faults
  can be compared with a fault-free run of the same data seed. :func:`duplicates`,
  :func:`missing` and :func:`differences` say how two snapshots differ;
  :func:`hidden_rejections` names records Basware refused that the ledger calls delivered.
- :func:`chaos_faults` is the per-seed fault configuration of each simulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ml_connector_core.httppolicy import DEFAULT_MAX_TRIES
from ml_connector_core.ledger import FAILURE, Action, normalize_cause
from mlc_sandbox.data import BASWARE_CLIENT_ID, SAGE_PASSWORD, SAGE_USER
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).with_name("meltano"))
RUN_TIMEOUT = 600  # a bound for a hung run, never a pass/fail criterion
JOBS = ("master-data", "invoices")
#: Master data, then invoices (whose second task answers Basware with the outcomes).
SEQUENCE = ("master-data", "invoices")
#: About how many requests each step of SEQUENCE makes to both simulators together when
#: nothing fails (demo data); random kill points are drawn below these.
REQUESTS_PER_STEP = (80, 148)
STATE_IDS = {"master-data": "sandbox:tap-sage300-to-target-basware",
             "invoices": "sandbox:tap-basware-to-target-sage300",
             "payments": "sandbox:tap-sage300--payments-to-target-basware"}


# -- one test's Meltano project ----------------------------------------------------------------

@dataclass
class JobRun:
    """One `meltano run` that ended (or was killed)."""

    job: str
    name: str
    returncode: int
    output: str  # stdout and stderr together, as an operator's log shows them
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class RunningJob:
    """A `meltano run` started by :meth:`Project.start`, in a process group of its own."""

    process: subprocess.Popen[str]
    job: str
    log: Path
    started: float

    def ended(self) -> bool:
        return self.process.poll() is not None


def project_copy(tmp_path: Path) -> Path:
    """A copy of the Meltano project for a test that changes it (`meltano config set`,
    `meltano select`, `.env`): meltano.yml and its own `.meltano/` (system database, run files,
    state); the venv and the installed plugin environments shared as `meltano install`
    built them."""
    project = tmp_path / "ml-connector"
    (project / ".meltano").mkdir(parents=True)
    (project / ".meltano").chmod(0o755)  # as `meltano install` leaves it (umask 022)
    shutil.copy(ROOT / "meltano.yml", project / "meltano.yml")
    (project / ".venv").symlink_to(ROOT / ".venv")
    for kind in ("extractors", "loaders"):
        (project / ".meltano" / kind).symlink_to(ROOT / ".meltano" / kind)
    return project


@dataclass
class Project:
    sandbox: Sandbox
    workdir: Path
    env: dict[str, str]
    runs: list[JobRun] = field(default_factory=list)
    root: Path = ROOT  # the Meltano project the commands run in (project_copy for another)

    @classmethod
    def create(cls, sandbox: Sandbox, workdir: Path,
               extra_env: dict[str, str] | None = None, root: Path = ROOT) -> Project:
        """A Meltano system directory of its own under `workdir`, sharing the installed
        plugin environments: meltano runs elsewhere in the project cannot collide with it."""
        system_dir = workdir / "meltano"
        system_dir.mkdir(parents=True, exist_ok=True)
        for kind in ("extractors", "loaders", "mappers", "utilities"):
            if (ROOT / ".meltano" / kind).is_dir() and not (system_dir / kind).exists():
                (system_dir / kind).symlink_to(ROOT / ".meltano" / kind)
        (workdir / "logs").mkdir(exist_ok=True)
        sage = sandbox.sage300.base_url
        basware = sandbox.basware.base_url
        env = {
            **os.environ,
            "MELTANO_SYS_DIR_ROOT": str(system_dir),
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_STATE_BACKEND_URI": f"file://{workdir / 'state'}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "ML_CONNECTOR_LEDGER_URL": f"sqlite:///{workdir / 'ledger.sqlite'}",
            "TAP_SAGE300_BASE_URL": f"{sage}/Sage300WebApi/v1.0/-",
            "TAP_SAGE300_COMPANY_IDS": '["SAMINC", "SAMLTD"]',
            "TAP_SAGE300_USERNAME": SAGE_USER,
            "TAP_SAGE300_PASSWORD": SAGE_PASSWORD,
            "TARGET_BASWARE_BASE_URL": basware,
            "TAP_BASWARE_BASE_URL": basware,
            "TARGET_SAGE300_BASE_URL": f"{sage}/Sage300WebApi/v1.0/-",
            **(extra_env or {}),
        }
        return cls(sandbox, workdir, env, root=root)

    @property
    def ledger_url(self) -> str:
        return self.env["ML_CONNECTOR_LEDGER_URL"]

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{len(self.runs) + 1:02d}-{name}.log"

    def meltano(self, *args: str, timeout: float = RUN_TIMEOUT
                ) -> subprocess.CompletedProcess[str]:
        """Any meltano command in this project (check=False: the caller judges)."""
        return subprocess.run([MELTANO, *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def run(self, *task: str, force: bool = False, name: str | None = None,
            timeout: float = RUN_TIMEOUT) -> JobRun:
        """`meltano run [--force] <job or plugins>`, to its end; the log is kept on disk."""
        running = self.start(*task, force=force, name=name)
        try:
            running.process.wait(timeout=timeout)
        except BaseException:  # a hung run, Ctrl-C, SIGTERM: nothing may outlive the caller
            kill(running)
            raise
        return self.finish(running)

    def start(self, *task: str, force: bool = False, name: str | None = None) -> RunningJob:
        """`meltano run` in its own process group (see :func:`kill`), output to a log file."""
        name = name or "-".join(task)
        log = self._log(name)
        handle = log.open("w")
        args = [MELTANO, "run", *(["--force"] if force else []), *task]
        process = subprocess.Popen(args, cwd=self.root, env=self.env, stdout=handle,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        handle.close()  # the child holds its own copy
        return RunningJob(process, " ".join(task), log, time.monotonic())

    def finish(self, running: RunningJob) -> JobRun:
        """Wait for a job started by :meth:`start` to end (or be killed) and record it."""
        running.process.wait()
        run = JobRun(running.job, running.log.stem, running.process.returncode,
                     running.log.read_text(errors="replace"),
                     time.monotonic() - running.started)
        self.runs.append(run)
        return run

    def run_until_success(self, job: str, max_attempts: int) -> list[JobRun]:
        """Run `job` again after every failure (as a scheduler would), at most `max_attempts`
        times; `--force` because a failed or killed run may have left its run record open."""
        attempts: list[JobRun] = []
        while len(attempts) < max_attempts:
            run = self.run(job, force=True, name=f"{job}-{len(attempts) + 1}")
            attempts.append(run)
            if run.ok:
                return attempts
        tail = attempts[-1].output[-4000:]
        raise AssertionError(f"{job} failed {max_attempts} times in a row; last log:\n{tail}")

    def run_killed_after(self, job: str, requests_made: int) -> JobRun:
        """`meltano run --force <job>`, SIGKILLed once both simulators together have served
        `requests_made` more requests (a run that makes fewer simply ends)."""
        servers = (self.sandbox.sage300.base_url, self.sandbox.basware.base_url)
        before = sum(requests_served(url) for url in servers)
        running = self.start(job, force=True, name=f"{job}-killed-after-{requests_made}")
        try:
            while (not running.ended()
                   and sum(requests_served(url) for url in servers) - before < requests_made):
                time.sleep(0.02)
        finally:
            kill(running)
        return self.finish(running)

    def state(self, job: str) -> str:
        """The job's Meltano state as stored (JSON text), '' if there is none."""
        result = self.meltano("state", "get", STATE_IDS[job])
        return result.stdout if result.returncode == 0 else ""


def kill(running: RunningJob) -> None:
    """SIGKILL the whole process group: meltano, the tap and the target die at once."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(running.process.pid, signal.SIGKILL)
    running.process.wait(timeout=60)


# -- the simulators ------------------------------------------------------------------------------

def sandbox_get(base_url: str, action: str) -> Any:
    response = requests.get(f"{base_url}/_sandbox/{action}", timeout=60)
    response.raise_for_status()
    return response.json()


def set_faults(sandbox: Sandbox, sage: dict[str, Any] | None,
               basware: dict[str, Any] | None) -> None:
    """Replace both simulators' fault configuration (None: no faults)."""
    for server, config in ((sandbox.sage300, sage), (sandbox.basware, basware)):
        url = f"{server.base_url}/_sandbox/faults"
        response = (requests.put(url, json=config, timeout=10) if config
                    else requests.delete(url, timeout=10))
        response.raise_for_status()


def injected_faults(sandbox: Sandbox) -> dict[str, Counter[str]]:
    """Faults each simulator has injected since its configuration was last set."""
    return {name: Counter(sandbox_get(server.base_url, "faults")["injected"])
            for name, server in (("sage300", sandbox.sage300), ("basware", sandbox.basware))}


def request_log(base_url: str, since: int = 0) -> list[dict[str, Any]]:
    response = requests.get(f"{base_url}/_sandbox/requests", params={"since": since}, timeout=60)
    response.raise_for_status()
    return response.json()["requests"]


def requests_served(base_url: str) -> int:
    """How many requests the simulator has logged since it started (a running count)."""
    response = requests.get(f"{base_url}/_sandbox/requests", params={"since": 2**62},
                            timeout=60)
    response.raise_for_status()
    return int(response.json()["last_seq"])


def reset_sandbox(sandbox: Sandbox, seed: int = 0) -> None:
    """Both simulators back to the demo data of `seed`: no faults, empty request logs."""
    for server in (sandbox.sage300, sandbox.basware):
        admin = f"{server.base_url}/_sandbox"
        requests.delete(f"{admin}/faults", timeout=10).raise_for_status()
        requests.post(f"{admin}/reset", json={"seed": seed, "data": "demo"},
                      timeout=60).raise_for_status()


def wait_until(condition: Callable[[], Any], running: RunningJob, what: str,
               timeout: float = RUN_TIMEOUT) -> Any:
    """Poll `condition` until it is truthy; fails if the run ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if running.ended():
            raise AssertionError(f"the run ended (exit {running.process.returncode}) before "
                                 f"{what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting {timeout:g}s for {what}")
        time.sleep(0.1)


def connector_batches(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The AP invoice batches target-sage300 created, in both companies."""
    return [batch for tables in sandbox_get(sandbox.sage300.base_url, "state")["companies"]
            .values() for batch in tables["AP/APInvoiceBatches"]
            if str(batch.get("Description", "")).startswith("ml-connector")]


def sage_entries(sandbox: Sandbox) -> dict[str, list[dict[str, Any]]]:
    """Every AP invoice entry in both Sage companies by its BWINVID, with its ``company`` and
    ``batch`` (a list per id: a duplicate shows)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for company, tables in sandbox_get(sandbox.sage300.base_url, "state")["companies"].items():
        for batch in tables["AP/APInvoiceBatches"]:
            for entry in batch["Invoices"]:
                for optional in entry["InvoiceOptionalFields"]:
                    if optional["OptionalField"] == "BWINVID":
                        found.setdefault(optional["Value"], []).append(
                            {**entry, "company": company, "batch": batch})
    return found


def basware_tenant(sandbox: Sandbox) -> dict[str, Any]:
    return sandbox_get(sandbox.basware.base_url, "state")["tenants"][BASWARE_CLIENT_ID]


# -- goods receipts and payments (issue 18: three-way matching) ---------------------------

#: Requests that change something (a token request is not one).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def log_marks(sandbox: Sandbox) -> dict[str, int]:
    """Where each simulator's request log stands now (for :func:`write_requests`)."""
    return {server.base_url: requests_served(server.base_url)
            for server in (sandbox.sage300, sandbox.basware)}


def write_requests(sandbox: Sandbox, since: dict[str, int]) -> list[str]:
    """Every write either simulator was asked for after `since` (:func:`log_marks`), as
    'METHOD path'; Basware token requests are not writes."""
    return [f"{r['method']} {r['path']}" for base_url, seq in since.items()
            for r in request_log(base_url, seq)
            if r["method"] in WRITE_METHODS and r["path"] != "/v1/tokens"]


def misplaced_receipts(sandbox: Sandbox) -> list[str]:
    """Every way Basware's matching order lines differ from Sage's PO receipts: each receipt
    line must be one goodsReceipts[] entry of the order line it received, exactly once in the
    whole tenant (a cancelled receipt: its entry and the cancelling one, `<entry>-C`), and no
    entry Sage has no receipt for."""
    expected: dict[str, str] = {}  # entry externalCode -> its line's externalCode
    for company, tables in sandbox_get(sandbox.sage300.base_url, "state")["companies"].items():
        for receipt in tables.get("PO/POGetReceipts", []):
            for line in receipt["ReceiptLine2s"]:
                order_line = (f"{company}-{receipt['PurchaseOrderNumber']}-"
                              f"{line['PurchaseOrderLineNumber']}")
                code = f"{company}-{receipt['ReceiptNumber']}-{line['LineNumber']}"
                expected[code] = order_line
                if receipt.get("Cancelled") == "Yes":
                    expected[f"{code}-C"] = order_line
    found: dict[str, list[str]] = {}
    for line in basware_tenant(sandbox)["master_data"]["matchingOrderLines"]:
        for entry in line.get("goodsReceipts") or []:
            found.setdefault(entry["externalCode"], []).append(line["externalCode"])
    problems = [f"goods receipt {code} is on no order line (expected on {line})"
                for code, line in expected.items() if code not in found]
    for code, lines in sorted(found.items()):
        if code not in expected:
            problems.append(f"goods receipt {code} on {lines}: Sage has no such receipt line")
        elif lines != [expected[code]]:
            problems.append(f"goods receipt {code} is on {lines}, expected once on "
                            f"{expected[code]}")
    return problems


def connector_documents(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Each AP entry target-sage300 created: company, batch, vendor, document number,
    Basware invoice id (its BWINVID)."""
    found = []
    for company, tables in sandbox_get(sandbox.sage300.base_url, "state")["companies"].items():
        for batch in tables["AP/APInvoiceBatches"]:
            if not str(batch.get("Description", "")).startswith("ml-connector"):
                continue
            for entry in batch["Invoices"]:
                (invoice_id,) = [f["Value"] for f in entry["InvoiceOptionalFields"]
                                 if f["OptionalField"] == "BWINVID"]
                found.append({"company": company, "batch": batch["BatchNumber"],
                              "vendor": entry["VendorNumber"],
                              "document": entry["DocumentNumber"], "invoice_id": invoice_id,
                              "total": entry["DocumentTotalIncludingTax"]})
    return found


def post_connector_batches(sandbox: Sandbox) -> list[dict[str, Any]]:
    """What the AP team does in Sage: post every batch the connector created (Sage's
    APPostInvoices); returns the documents posted (:func:`connector_documents`)."""
    documents = connector_documents(sandbox)
    for company, batch in sorted({(d["company"], d["batch"]) for d in documents}):
        post_batch(sandbox, company, batch)
    return documents


def post_batch(sandbox: Sandbox, company: str, batch: int) -> None:
    """What the AP team does in Sage: post one ready-to-post batch (APPostInvoices)."""
    url = (f"{sandbox.sage300.base_url}/Sage300WebApi/v1.0/-/{company}/AP/"
           "APPostInvoices('$process')")
    response = requests.post(url, json={"ProcessAllBatches": "Donotpostallbatches",
                                        "FromBatch": batch, "ToBatch": batch},
                             auth=(SAGE_USER.upper(), SAGE_PASSWORD.upper()), timeout=60)
    assert response.status_code == 204, response.text


def pay(sandbox: Sandbox, document: dict[str, Any], **body: Any) -> float:
    """A payment recorded in Sage against a posted document (the simulator's admin `pay`:
    `amount` defaults to the balance); returns the document's paid total now."""
    response = requests.post(f"{sandbox.sage300.base_url}/_sandbox/pay", timeout=60, json={
        "company": document["company"], "vendor": document["vendor"],
        "document": document["document"], **body})
    assert response.status_code == 200, response.text
    posted = response.json()
    return round(float(posted["OriginalDocumentAmount"]) - float(posted["CurrentBalance"]), 2)


def payment_problems(sandbox: Sandbox, states: dict[str, list[float]]) -> list[str]:
    """Every way Basware's paymentResponses differ from the payment states Sage had at each
    payments run (`states`: invoice id -> paid totals, in order): a state answered twice or
    not at all, a response for an invoice nobody paid, an externalCode reused, an invoice
    paid in full that is not Paid."""
    problems = []
    for invoice in basware_tenant(sandbox)["invoices"]:
        history = invoice.get("paymentResponses") or []
        want = states.get(invoice["invoiceId"], [])
        got = [round(float(r["paidTotal"]), 2) for r in history]
        if got != want:
            problems.append(f"invoice {invoice['invoiceId']}: paymentResponses paidTotal "
                            f"{got} instead of {want}")
        codes = Counter(r["externalCode"] for r in history)
        problems += [f"invoice {invoice['invoiceId']}: externalCode {c} {n} times"
                     for c, n in codes.items() if n > 1]
        if want and want[-1] == round(abs(float(invoice["grossSum"])), 2) \
                and invoice["processingStatus"] != "Paid":
            problems.append(f"invoice {invoice['invoiceId']} paid in full is "
                            f"{invoice['processingStatus']}")
    return problems


# -- faults per seed -------------------------------------------------------------------------

FAULT_KINDS = ("429", "500", "503", "drop", "stall", "drop_after", "stall_after")
#: Per-request probabilities of each kind, on every request to either simulator.
CHAOS_RATES: dict[str, dict[str, float]] = {
    "light": {"429": 0.02, "500": 0.01, "503": 0.02, "drop": 0.01, "stall": 0.005,
              "drop_after": 0.01, "stall_after": 0.005},
    "default": {"429": 0.03, "500": 0.02, "503": 0.03, "drop": 0.02, "stall": 0.01,
                "drop_after": 0.02, "stall_after": 0.01},
    "heavy": {"429": 0.06, "500": 0.04, "503": 0.05, "drop": 0.04, "stall": 0.02,
              "drop_after": 0.04, "stall_after": 0.02},
}
#: Every plugin's read timeout in chaos runs (seconds), and how long a stall lasts: beyond it,
#: so a stall is a real client timeout, short enough that stalls do not cost minutes.
CHAOS_READ_TIMEOUT = 2
STALL_SECONDS = CHAOS_READ_TIMEOUT + 1
#: Basware tokens stop working after this many API calls (Sage has Basic auth, no tokens).
TOKEN_EXPIRY_CALLS = 7
#: Requests each simulator serves in a fault-free master-data + invoices + invoices sequence
#: of the demo data (about 90 and 135): scheduled faults fall within them.
SCHEDULE_SPAN = {"sage300": 80, "basware": 120}
BASWARE_BULK_POST = r"^/v1/(vendors|accounts|costCenters|paymentTerms|matchingOrders" \
                    r"|matchingOrderLines)$"


def in_flight_env(in_flight: int | None) -> dict[str, str]:
    """Plugin settings for `in_flight` requests at once to each system (None: the plugins'
    defaults), for every plugin that has the setting."""
    if in_flight is None:
        return {}
    return {f"{plugin}_MAX_REQUESTS_IN_FLIGHT": str(in_flight)
            for plugin in ("TAP_SAGE300", "TAP_BASWARE", "TARGET_BASWARE")}


def chaos_env() -> dict[str, str]:
    """Plugin settings for chaos runs: short read timeouts (stalls cost seconds, not minutes)."""
    return {
        "TAP_SAGE300_READ_TIMEOUT": str(CHAOS_READ_TIMEOUT),
        "TARGET_SAGE300_TIMEOUTS": json.dumps({"connect": 5, "read": CHAOS_READ_TIMEOUT,
                                               "write": CHAOS_READ_TIMEOUT}),
        "TAP_BASWARE_READ_TIMEOUT": str(CHAOS_READ_TIMEOUT),
        "TARGET_BASWARE_READ_TIMEOUT": str(CHAOS_READ_TIMEOUT),
    }


def chaos_faults(seed: int, profile: str = "default"
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Sage, Basware) fault configurations for `seed`, a pure function of it.

    On top of the profile's random rates, each simulator gets, at request numbers the seed
    picks: one fault of every kind (so every kind really fires), a fault on the writes that
    exactly-once hinges on (Sage's batch POST; Basware's bulk import, acknowledge and
    transfer-response POSTs; mostly "processed, answer lost"), and on one of the two an
    outage: as many 503s in a row as the retry policy tries, so some run fails and is run
    again.
    """
    rng = random.Random(seed)
    outage_on = rng.choice(("sage300", "basware"))
    configs = []
    for system in ("sage300", "basware"):
        span = SCHEDULE_SPAN[system]
        schedule: list[dict[str, Any]] = []
        if system == "sage300":
            schedule.append({"nth": rng.randint(1, 2), "method": "POST",
                             "path": "APInvoiceBatches$",
                             "fault": rng.choice(("drop_after", "stall_after", "500"))})
        else:
            for path, count in ((BASWARE_BULK_POST, 6), ("/acknowledge$", 28),
                                ("/transferResponses$", 28)):
                schedule.append({"nth": rng.randint(1, count), "method": "POST",
                                 "path": path,
                                 "fault": rng.choice(("drop_after", "stall_after"))})
        numbers = rng.sample(range(1, span + 1), len(FAULT_KINDS) + DEFAULT_MAX_TRIES)
        if system == outage_on:  # consecutive requests from a random start
            start = rng.randint(1, span - DEFAULT_MAX_TRIES)
            outage = range(start, start + DEFAULT_MAX_TRIES)
            schedule += [{"nth": n, "fault": "503"} for n in outage]
            numbers = [n for n in numbers if n not in outage]
        schedule += [{"nth": n, "fault": kind}
                     for n, kind in zip(numbers, FAULT_KINDS, strict=False)]
        configs.append({"seed": rng.randrange(2**31), "rates": dict(CHAOS_RATES[profile]),
                        "retry_after": 1, "stall_seconds": STALL_SECONDS, "schedule": schedule,
                        **({"token_expiry_calls": TOKEN_EXPIRY_CALLS}
                           if system == "basware" else {})})
    return configs[0], configs[1]


#: The payments job's write (target-basware's paymentResponses).
PAYMENT_RESPONSE_POST = r"/v1/accountingDocuments/[^/]+/paymentResponses$"


def payment_faults(seed: int, profile: str = "default", phase: int = 1, outage: bool = True
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Sage, Basware) fault configurations for one run-until-success of the payments job
    (`phase`: which one in a test), a pure function of the arguments: the profile's random
    rates on both, Basware tokens expiring, on the paymentResponses POSTs one response
    processed with its answer dropped and one with its answer stalled beyond the read
    timeout, and with `outage` on one of the two systems an outage (as many 503s in a row as
    the retry policy tries: Sage's reads of the posted documents, or those POSTs), so a run
    fails midway and is run again."""
    rng = random.Random(f"payments:{seed}:{phase}")
    outage_on = rng.choice(("sage300", "basware"))
    lost = rng.sample(range(1, 5), 2)  # which POSTs lose their answer
    basware = [{"nth": lost[0], "method": "POST", "path": PAYMENT_RESPONSE_POST,
                "fault": "drop_after"},
               {"nth": lost[1], "method": "POST", "path": PAYMENT_RESPONSE_POST,
                "fault": "stall_after"}]
    sage: list[dict[str, Any]] = []
    if outage and outage_on == "basware":  # an entry per 503, each counting every POST
        start = max(lost) + rng.randint(2, 4)  # and retry: after the lost answers' retries
        basware += [{"nth": start + n, "method": "POST", "path": PAYMENT_RESPONSE_POST,
                     "fault": "503"} for n in range(DEFAULT_MAX_TRIES)]
    elif outage:
        start = rng.randint(1, 2)
        sage += [{"nth": start + n, "method": "GET", "path": "APPostedDocuments",
                  "fault": "503"} for n in range(DEFAULT_MAX_TRIES)]
    configs = []
    for system, schedule in (("sage300", sage), ("basware", basware)):
        configs.append({"seed": rng.randrange(2**31), "rates": dict(CHAOS_RATES[profile]),
                        "retry_after": 1, "stall_seconds": STALL_SECONDS, "schedule": schedule,
                        **({"token_expiry_calls": TOKEN_EXPIRY_CALLS}
                           if system == "basware" else {})})
    return configs[0], configs[1]


# -- snapshots ---------------------------------------------------------------------------------

#: Which plugins' ledger entries each job writes (Snapshot.only).
JOB_PLUGINS = {"master-data": ("tap-sage300", "target-basware"),
               "invoices": ("tap-basware", "target-sage300")}
#: target-basware's stream for each Basware entity type.
ENTITY_STREAMS = {"Vendor": "vendors", "Account": "accounts", "CostCenter": "cost_centers",
                  "PaymentTerm": "payment_terms", "MatchingOrder": "matching_orders",
                  "MatchingOrderLine": "matching_order_lines"}

# Fields that change from run to run whatever the connector does.
_VOLATILE = frozenset({"lastUpdated", "DateLastMaintained", "requestId", "LastMaintained"})


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@dataclass
class Snapshot:
    """What both simulators hold, reduced to what the pipelines are answerable for.

    - ``master_data``: Basware endpoint -> externalCode -> record (vendors, accounts, cost
      centers, payment terms, matching orders and lines), without timestamps.
    - ``master_status``: (entity type, externalCode) -> what P2P made of the record's last
      effective import (``Success``; an identical re-post, ``NotProcessed``, and a superseded
      one, ``RecordExpired``, do not change it).
    - ``p2p``: how many records of each entity type Basware's P2P has accepted.
    - ``ap_invoices``: Sage (company, vendor, document number) -> every AP invoice entry with
      that key (a list, so a duplicate shows), each with its amounts, GL coding, BWINVID and
      batch status; batch and entry numbers are left out (they depend on run history).
    - ``invoices``: Basware invoice id -> processing status and transfer responses, each
      response's voucher numbers replaced by the Sage entry they name (its key and BWINVID).
    - ``outcomes`` (when the snapshot was given the ledger): (plugin, stream, key) -> the
      key's latest outcome in the ledger, as (action, cause: the error's first line with
      numbers and ids collapsed, for failures only). target-basware's keys are Basware's
      externalCodes, as in ``master_status``. Only failures are compared (:func:`rejections`):
      whether a delivered record reads created, updated or unchanged depends on run history.
    """

    master_data: dict[str, dict[str, Any]]
    master_status: dict[tuple[str, str], str]
    p2p: dict[str, int]
    ap_invoices: dict[tuple[str, str, str], list[dict[str, Any]]]
    invoices: dict[str, dict[str, Any]]
    outcomes: dict[tuple[str, str, str], tuple[str, str | None]] = field(default_factory=dict)

    def only(self, jobs: tuple[str, ...]) -> Snapshot:
        """The parts the given jobs write (the jobs are independent of each other)."""
        master, invoices = "master-data" in jobs, "invoices" in jobs
        plugins = {plugin for job in jobs for plugin in JOB_PLUGINS.get(job, ())}
        return Snapshot(self.master_data if master else {},
                        self.master_status if master else {}, self.p2p if master else {},
                        self.ap_invoices if invoices else {},
                        self.invoices if invoices else {},
                        {k: v for k, v in self.outcomes.items() if k[0] in plugins})

    def counts(self) -> dict[str, int]:
        return {**{f"basware {k}": len(v) for k, v in sorted(self.master_data.items())},
                "basware refused": sum(s == "Error" for s in self.master_status.values()),
                "sage ap invoices": sum(len(v) for v in self.ap_invoices.values()),
                "basware invoices answered": sum(1 for i in self.invoices.values()
                                                 if i["responses"]),
                "ledger failures": len(rejections(self))}


def canonical_message(message: str) -> str:
    """A transfer response's text without what a fault or a kill may change: the numbers
    (compared through ``sage_entry``), and whether the entry was created by this run or found
    by a later one ("Already in Sage 300 ... (found by BWINVID ...)")."""
    message = re.sub(r"batch \d+ (entry|posted document) \d+", r"batch # \1 #", message)
    return re.sub(r"^Already in (Sage 300 company \S+, batch # entry #) \(found by .*\)$",
                  r"Created in \1 (ready to post)", message)


def snapshot(sandbox: Sandbox, ledger_url: str | None = None) -> Snapshot:
    """Both simulators' end state and, with `ledger_url`, each record's latest outcome in the
    ledger (compare two snapshots taken the same way)."""
    basware = basware_tenant(sandbox)
    sage = sandbox_get(sandbox.sage300.base_url, "state")["companies"]

    master_data = {endpoint: {r["externalCode"]: _stable(r) for r in records}
                   for endpoint, records in basware["master_data"].items()}
    master_status: dict[tuple[str, str], str] = {}
    for entry in basware["request_status"]:  # in the order the imports arrived
        if entry["entityType"] == "TransferResponse":  # random externalCodes; see `invoices`
            continue
        for system in entry["systems"]:
            for item in system["items"]:
                if item["status"] not in ("NotProcessed", "RecordExpired"):
                    master_status[(entry["entityType"], item["externalCode"])] = item["status"]

    ap_invoices: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    entries_by_number: dict[tuple[str, str, str], dict[str, Any]] = {}
    for company, tables in sage.items():
        for batch in tables["AP/APInvoiceBatches"]:
            for entry in batch["Invoices"]:
                optional = {o["OptionalField"]: o["Value"]
                            for o in entry.get("InvoiceOptionalFields", [])}
                key = (company, entry["VendorNumber"], entry["DocumentNumber"])
                canonical = {
                    "BWINVID": optional.get("BWINVID"),
                    "BatchStatus": batch["BatchStatus"],
                    "connector_batch": str(batch.get("Description", "")).startswith(
                        "ml-connector"),
                    **{f: entry.get(f) for f in (
                        "DocumentType", "DocumentDate", "DueDate", "CurrencyCode", "PONumber",
                        "Terms", "DocumentTotalIncludingTax", "InvoiceDescription")},
                    "details": [{f: d.get(f) for f in ("GLAccount", "DistributedAmount",
                                                        "Description", "DistributionCode")}
                                for d in entry.get("InvoiceDetails", [])],
                }
                ap_invoices.setdefault(key, []).append(canonical)
                entries_by_number[(company, str(batch["BatchNumber"]),
                                   str(entry["EntryNumber"]))] = {
                    "entry": key, "BWINVID": canonical["BWINVID"]}

    invoices: dict[str, dict[str, Any]] = {}
    for invoice in basware["invoices"]:
        responses = []
        for response in invoice.get("transferResponses", []):
            named = None
            if response.get("success"):
                named = next((v for (company, batch, number), v in entries_by_number.items()
                              if batch == str(response.get("voucherNumber1"))
                              and number == str(response.get("voucherNumber2"))
                              and v["BWINVID"] == invoice["invoiceId"]), "NO SUCH ENTRY")
            message = canonical_message(str(response.get("responseMessage", "")))
            responses.append({"success": response.get("success"), "message": message,
                              "sage_entry": named})
        invoices[invoice["invoiceId"]] = {"status": invoice["processingStatus"],
                                          "responses": responses}
    return Snapshot(master_data, master_status, dict(basware["p2p"]), ap_invoices, invoices,
                    ledger_outcomes(ledger_url) if ledger_url else {})


def ledger_outcomes(ledger_url: str) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    """(plugin, stream, key) -> (latest outcome, its cause if a failure), for every key with an
    outcome (a `read` is not one). target-basware's keys are externalCodes (the target key)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT plugin, stream, source_key, target_key, action, error "
                "FROM ledger_entries WHERE id IN (SELECT max(id) FROM ledger_entries "
                "WHERE action != 'read' GROUP BY plugin, stream, source_key, system)")).all()
    finally:
        engine.dispose()
    found: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    for plugin, stream, source_key, target_key, action, error in rows:
        key = target_key if plugin == "target-basware" and target_key else source_key
        failed = Action(action) in FAILURE
        found[(plugin, stream, key)] = (action, normalize_cause(error) if failed else None)
    return found


def rejections(snap: Snapshot) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    """The records whose latest ledger outcome is a failure (rejected or failed): what
    `ml-connector audit failures` lists and `audit replay --failed` offers."""
    return {key: outcome for key, outcome in snap.outcomes.items()
            if Action(outcome[0]) in FAILURE}


def hidden_rejections(snap: Snapshot) -> list[str]:
    """Records Basware's P2P refused (their last effective import ended Error) that the
    ledger does not call failed: no `audit failures`, no replay; the operator never learns."""
    found = []
    for (entity_type, code), status in sorted(snap.master_status.items()):
        if status != "Error":
            continue
        outcome = snap.outcomes.get(("target-basware", ENTITY_STREAMS.get(entity_type, ""),
                                     code))
        if outcome is None or Action(outcome[0]) not in FAILURE:
            found.append(f"Basware refused {entity_type} {code}; the ledger says "
                         f"{outcome[0] if outcome else 'nothing'}")
    return found


def duplicates(snap: Snapshot) -> list[str]:
    """Everything that exists twice: the same vendor + document number in a Sage company,
    the same BWINVID on two Sage entries, two transfer responses for one Basware invoice."""
    found = [f"Sage AP invoice {'/'.join(key)} exists {len(copies)} times"
             for key, copies in snap.ap_invoices.items() if len(copies) > 1]
    ids = Counter(c["BWINVID"] for copies in snap.ap_invoices.values() for c in copies
                  if c["BWINVID"])
    found += [f"BWINVID {i} is on {n} Sage entries" for i, n in ids.items() if n > 1]
    found += [f"Basware invoice {i} has {len(v['responses'])} transfer responses"
              for i, v in snap.invoices.items() if len(v["responses"]) > 1]
    return found


def missing(expected: Snapshot, actual: Snapshot) -> list[str]:
    """What `expected` has and `actual` lacks: Basware records, Sage invoices, answers."""
    lost = [f"Basware {endpoint} {code}" for endpoint, records in expected.master_data.items()
            for code in records if code not in actual.master_data.get(endpoint, {})]
    lost += [f"Sage AP invoice {'/'.join(key)}" for key in expected.ap_invoices
             if key not in actual.ap_invoices]
    lost += [f"transfer response for Basware invoice {i}" for i, v in expected.invoices.items()
             if v["responses"] and not actual.invoices.get(i, {}).get("responses")]
    return lost


def differences(expected: Snapshot, actual: Snapshot, limit: int = 20) -> list[str]:
    """Every way `actual` differs from `expected` (duplicates, losses and hidden rejections
    included), as text."""
    found = duplicates(actual) + missing(expected, actual)
    if actual.outcomes:
        found += hidden_rejections(actual)
    for endpoint in sorted(set(expected.master_data) | set(actual.master_data)):
        want, got = expected.master_data.get(endpoint, {}), actual.master_data.get(endpoint, {})
        found += [f"Basware {endpoint} {code} unexpected" for code in got if code not in want]
        found += [f"Basware {endpoint} {code} differs: {_diff(want[code], got[code])}"
                  for code in want if code in got and want[code] != got[code]]
    for key in sorted(set(expected.master_status) | set(actual.master_status)):
        if expected.master_status.get(key) != actual.master_status.get(key):
            found.append(f"Basware import status of {key}: "
                         f"{actual.master_status.get(key)} instead of "
                         f"{expected.master_status.get(key)}")
    if expected.p2p != actual.p2p:
        found.append(f"Basware P2P holds {actual.p2p} instead of {expected.p2p}")
    for key in sorted(set(expected.ap_invoices) | set(actual.ap_invoices)):
        want, got = expected.ap_invoices.get(key), actual.ap_invoices.get(key)
        if want and got and want[0] != got[0]:
            found.append(f"Sage AP invoice {'/'.join(key)} differs: {_diff(want[0], got[0])}")
        elif got and not want:
            found.append(f"Sage AP invoice {'/'.join(key)} unexpected")
    for invoice_id in sorted(set(expected.invoices) | set(actual.invoices)):
        want, got = expected.invoices.get(invoice_id), actual.invoices.get(invoice_id)
        if want != got:
            found.append(f"Basware invoice {invoice_id}: {got} instead of {want}")
    failed_want, failed_got = rejections(expected), rejections(actual)
    for key in sorted(set(failed_want) | set(failed_got)):
        if failed_want.get(key) != failed_got.get(key):
            found.append(f"ledger {' '.join(key)}: {_outcome(actual.outcomes.get(key))} "
                         f"instead of {_outcome(expected.outcomes.get(key))}")
    unique = list(dict.fromkeys(found))
    if len(unique) > limit:
        unique = [*unique[:limit], f"... and {len(unique) - limit} more"]
    return unique


def _outcome(outcome: tuple[str, str | None] | None) -> str:
    if outcome is None:
        return "no outcome"
    action, cause = outcome
    return f"{action} ({cause})" if cause else action


def _diff(want: Any, got: Any) -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        keys = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        return "; ".join(f"{k}: {got.get(k)!r} instead of {want.get(k)!r}" for k in keys)
    return f"{got!r} instead of {want!r}"


# -- secrets -----------------------------------------------------------------------------------

def outputs(project: Project) -> dict[str, str]:
    """Everything the pipelines left for people to read: run logs, Meltano state, the ledger
    (the database file's bytes) and both simulators' request logs."""
    texts = {f"log {path.name}": path.read_text(errors="replace")
             for path in sorted((project.workdir / "logs").glob("*.log"))}
    state_dir = project.workdir / "state"
    if state_dir.is_dir():
        texts.update({f"state {path.relative_to(state_dir)}": path.read_text(errors="replace")
                      for path in sorted(state_dir.rglob("*")) if path.is_file()})
    ledger = Path(project.ledger_url.removeprefix("sqlite:///"))
    for path in (ledger, ledger.with_name(ledger.name + "-wal")):
        if path.is_file():
            texts[f"ledger {path.name}"] = path.read_bytes().decode("latin-1")
    for name, server in (("sage300", project.sandbox.sage300),
                         ("basware", project.sandbox.basware)):
        texts[f"{name} request log"] = json.dumps(request_log(server.base_url))
    return texts


def planted_secrets(sandbox: Sandbox) -> list[str]:
    """Values that must never appear in any output: the sandbox's credentials (public demo
    values, planted as if they were real secrets) in every form a client sends them (Sage's
    password in any case, Basic headers, Basware's client secret) and every Basware access
    token issued since the last reset."""
    return [secret for server in (sandbox.sage300, sandbox.basware)
            for secret in server.simulator.secrets() if len(secret) >= 4]


def secrets_in(texts: dict[str, str], secrets: list[str]) -> list[str]:
    """Which texts contain one of `secrets` (by name, never the secret itself)."""
    return [name for name, text in texts.items() if any(secret in text for secret in secrets)]
