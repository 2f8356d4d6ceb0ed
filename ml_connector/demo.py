"""`make demo`: the distributor's story, end to end, against the sandbox.

Both simulators start on the ports the `sandbox` Meltano environment points at; the demo then
shows each system answering and runs the jobs defined in meltano.yml: master data (goods
receipts on their order lines and tax codes among it), invoices, then a payment an AP clerk
makes in Sage 300 on an invoice the connector created, answered to Basware by the payments
job. Every demo run gets its own Meltano state and ledger under output/, so running it twice
tells the same story.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from mlc_sandbox.serve import Sandbox, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
SAGE_PORT, BASWARE_PORT = 47300, 47400
LATEST = "demo-latest"  # output/demo-latest: the newest demo's folder
#: What ml-connector and meltano need to find this demo's state and ledger (demo.env).
DEMO_SETTINGS = ("MELTANO_ENVIRONMENT", "MELTANO_STATE_BACKEND_URI", "ML_CONNECTOR_LEDGER_URL",
                 "MELTANO_SEND_ANONYMOUS_USAGE_STATS")
#: The plugins' base URL settings, set to where this demo's simulators answer.
SIMULATOR_URLS = {"TAP_SAGE300_BASE_URL": "sage300", "TARGET_SAGE300_BASE_URL": "sage300",
                  "TAP_BASWARE_BASE_URL": "basware", "TARGET_BASWARE_BASE_URL": "basware"}
READY = "   Serving."


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_connector.demo", description=__doc__)
    parser.add_argument("--serve", action="store_true",
                        help="after the story, keep both simulators serving (until Ctrl-C) so "
                             "the demo's failure can be fixed by hand (`make demo-serve`)")
    parser.add_argument("--sage-port", type=int, default=SAGE_PORT,
                        help="the Sage 300 simulator's port (0: any free one)")
    parser.add_argument("--basware-port", type=int, default=BASWARE_PORT,
                        help="the Basware simulator's port (0: any free one)")
    args = parser.parse_args(argv)
    run_dir = ROOT / "output" / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = ROOT / "output" / LATEST
    latest.unlink(missing_ok=True)
    latest.symlink_to(run_dir.name)  # relative: the recipes name output/demo-latest/
    step("Starting the Sage 300 and Basware simulators")
    sandbox = start_sandbox(sage_port=args.sage_port, basware_port=args.basware_port)
    sandbox.write_info(run_dir / "sandbox.json")
    try:
        info = sandbox.info()
        say(f"   Sage 300 Web API  {info['sage300']['base_url']}")
        say(f"   Basware API       {info['basware']['base_url']}")
        show_sage(info["sage300"])
        show_basware(info["basware"])
        jobs = meltano_jobs()
        if not jobs:
            say("\n(no Meltano jobs defined yet: the pipelines are still being built)")
            return 0
        env = demo_environment(run_dir, info)
        step("Connection check (`ml-connector check`)")
        if connector(["check"], env) != 0:
            say("   FAILED: the check above says what to fix")
            return 1
        step("What the first runs would do, without writing anything (`ml-connector plan`)")
        if connector(["plan"], env) != 0:
            say("   FAILED: the plan above names the plugin that could not run")
            return 1
        # The invoices job's second task answers Basware with the outcomes of its first.
        runs = [("master-data", "master data: Sage 300 -> Basware (goods receipts and tax "
                                "codes too)"),
                ("invoices", "approved invoices: Basware -> Sage 300 AP batches, and each "
                             "outcome answered back to Basware"),
                ("payments", "payment status: Sage 300's payments of the connector's "
                             "invoices -> Basware paymentResponses")]
        paid: list[str] = []
        for number, (job, story) in enumerate(runs, start=1):
            if job not in jobs:
                continue
            if job == "payments":
                paid = pay_in_sage(sandbox, run_dir, env)
                if not paid:
                    return 1
            step(f"Run {number}: {story}  (`meltano run {job}`)")
            log = run_dir / f"{number}-{job}.log"
            if not run_meltano(["run", job], env, log):
                say(f"   FAILED: see {log.relative_to(ROOT)}")
                return 1
            if job == "master-data":
                show_master_data(sandbox)
                show_goods_receipts(sandbox)
                show_tax_codes(info["basware"])
            elif job == "invoices":
                show_invoices(sandbox)
            else:
                show_payments(sandbox, paid)
        ending(env, run_dir)
        say(f"\nLogs, state, ledger and report.html of this demo: {run_dir.relative_to(ROOT)}")
        write_env_file(run_dir, env)
        if args.serve:
            serve_until_stopped()
        return 0
    finally:
        sandbox.stop()


def ending(env: dict[str, str], run_dir: Path) -> None:
    """The audit trail, then what an AP lead looks at first: `ml-connector status`, with the
    demo's one failed invoice (INV-18825, coded to GL account 6999-200, which Sage 300 lacks:
    intended), its reason and the command that fixes it. The demo still exits 0: status says
    the failure waits for someone, which is the story, not a fault of the demo."""
    step("The AP lead's report (`ml-connector audit report --html report.html`)")
    # Its text (every invoice created) is long for a demo: the page is the report.
    report = run_dir / "report.html"
    code = connector(["audit", "report", "--html", str(report)], env, quiet=True)
    say(f"   {'written to ' + str(report) if code == 0 else 'FAILED (exit ' + str(code) + ')'}")
    step("Is anything stuck? (`ml-connector status`: what waits, why, and the command that "
         "fixes it)")
    connector(["status"], env)
    say("\n   INV-18825 failed on purpose: Basware coded it to GL account 6999-200, which Sage "
        "300 company SAMINC lacks.\n   The fix: create the GL account in Sage 300, then "
        "`ml-connector retry INV-18825` (it is created once and Basware hears Transferred).\n"
        "   Try it: `make demo-serve` keeps the simulators serving and prints the commands.")


def write_env_file(run_dir: Path, env: dict[str, str]) -> None:
    """What `ml-connector` needs to work on this demo's Meltano state and ledger (no secret:
    the sandbox environment in meltano.yml holds the simulators' credentials)."""
    lines = [f"{name}={value}" for name, value in env.items()
             if name in DEMO_SETTINGS or name in SIMULATOR_URLS]
    (run_dir / "demo.env").write_text("\n".join(lines) + "\n")


def serve_until_stopped() -> None:
    """`make demo-serve`: the simulators keep this demo's data until Ctrl-C, so the failure
    can be fixed the way README.md shows ("Fix the demo's failed invoice yourself")."""
    step("The simulators keep serving this demo's data (Ctrl-C to stop). In another terminal:")
    say(f"   set -a; . output/{LATEST}/demo.env; set +a")
    say(f"   .venv/bin/ml-connector sandbox gl-account --info-file output/{LATEST}/sandbox.json "
        "--company SAMINC 6999-200")
    say("   .venv/bin/ml-connector retry INV-18825")
    say(f"   .venv/bin/ml-connector sandbox pay --info-file output/{LATEST}/sandbox.json "
        "INV-18825")
    say("   .venv/bin/ml-connector run payments")
    say(READY)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def show_sage(sage: dict[str, Any]) -> None:
    step("Sage 300 answers (HTTP Basic, OData paging)")
    auth = (sage["username"].upper(), sage["password"].upper())
    for company in sage["company_ids"]:
        url: str | None = f"{sage['base_url']}/{company}/AP/APVendors"
        params: dict[str, str] | None = {"$select": "VendorNumber,VendorName,Status",
                                         "$count": "true"}
        pages = vendors = 0
        while url:
            body = requests.get(url, params=params, auth=auth, timeout=30).json()
            pages, vendors = pages + 1, vendors + len(body["value"])
            url, params = body.get("@odata.nextLink"), None
        say(f"   {company}: {vendors} vendors read in {pages} page(s)")


def show_basware(basware: dict[str, Any]) -> None:
    step("Basware answers (OAuth2 token, approved-invoice queue)")
    token = requests.post(
        basware["token_url"], auth=(basware["client_id"], basware["client_secret"]),
        data={"grant_type": "client_credentials", "scope": "accountingDocuments.read"},
        timeout=30,
    ).json()
    say(f"   token issued, expires in {token['expires_in']} s, scope {token['scope']}")
    for company_code in basware["company_codes"].values():
        response = requests.get(
            f"{basware['base_url']}/v1/accountingDocuments",
            params={"ProcessingStatus": "WaitingForTransfer", "companyCode": company_code},
            headers={"Authorization": f"Bearer {token['access_token']}"},
            allow_redirects=False, timeout=30,
        )
        if response.status_code == 302:  # pre-signed URL: fetched without Authorization
            response = requests.get(response.headers["Location"], timeout=30)
        count = len(response.json()["accountingDocuments"]) if response.status_code == 200 else 0
        say(f"   {company_code}: {count} approved invoices waiting for transfer")


def meltano_jobs() -> list[str]:
    text = (ROOT / "meltano.yml").read_text()
    return [job for job in ("master-data", "invoices", "payments") if f"name: {job}" in text]


def demo_environment(run_dir: Path, info: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    # Where the simulators really answer: the sandbox environment's URLs name the default
    # ports, and a demo on other ports (--sage-port, --basware-port) must still be found.
    for name, system in SIMULATOR_URLS.items():
        env[name] = info[system]["base_url"]
    env.update({
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_STATE_BACKEND_URI": f"file://{run_dir / 'state'}",
        "ML_CONNECTOR_LEDGER_URL": f"sqlite:///{run_dir / 'ledger.sqlite'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    })
    return env


def run_meltano(args: list[str], env: dict[str, str], log: Path) -> bool:
    started = time.monotonic()
    meltano = str(Path(sys.executable).with_name("meltano"))
    with log.open("w") as handle:
        result = subprocess.run([meltano, *args], cwd=ROOT, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, check=False)
    say(f"   {'ok' if result.returncode == 0 else 'exit ' + str(result.returncode)} "
        f"in {time.monotonic() - started:.1f} s")
    return result.returncode == 0


def show_master_data(sandbox: Sandbox) -> None:
    state = requests.get(f"{sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    for tenant in state["tenants"].values():
        for endpoint, records in tenant["master_data"].items():
            say(f"   Basware {endpoint:<20} {len(records):>5} records")
        statuses: dict[str, int] = {}
        for request in _values(tenant["request_status"]):
            statuses[request["requestStatus"]] = statuses.get(request["requestStatus"], 0) + 1
        say(f"   Basware requestStatus: {statuses}")


def show_invoices(sandbox: Sandbox) -> None:
    sage = requests.get(f"{sandbox.sage300.base_url}/_sandbox/state", timeout=60).json()
    for company, resources in sage["companies"].items():
        batches = [b for b in resources["AP/APInvoiceBatches"]
                   if str(b.get("Description", "")).startswith("ml-connector")]
        entries = sum(len(b.get("Invoices", [])) for b in batches)
        say(f"   Sage 300 {company}: {entries} AP invoices in {len(batches)} connector batch(es), "
            f"status {sorted({b['BatchStatus'] for b in batches}) or '-'}")
    basware = requests.get(f"{sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    for tenant in basware["tenants"].values():
        statuses: dict[str, int] = {}
        for invoice in _values(tenant["invoices"]):
            statuses[invoice["processingStatus"]] = statuses.get(invoice["processingStatus"], 0) + 1
            if invoice["processingStatus"] == "TransferFailed":
                say(f"   Basware invoice {invoice['invoiceNumber']} TransferFailed: "
                    f"{invoice['transferResponses'][-1]['responseMessage']}")
        say(f"   Basware invoices by status: {statuses}")


def show_goods_receipts(sandbox: Sandbox) -> None:
    """The goods receipts Basware holds on its matching order lines (three-way matching): how
    many, on how many lines, which lines are received in part and which receipts cancelled."""
    state = requests.get(f"{sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    lines = [line for tenant in state["tenants"].values()
             for line in _values(tenant["master_data"].get("matchingOrderLines", []))
             if line.get("goodsReceipts")]
    entries = partial = cancelled = 0
    for line in lines:
        receipts = line["goodsReceipts"]
        gone = {r["referenceGRExternalCode"] for r in receipts if r.get("referenceGRExternalCode")}
        cancelled += len(gone)
        kept = [r for r in receipts if not r.get("referenceGRExternalCode")
                and r["externalCode"] not in gone]
        entries += len(kept)
        received = sum(float(r.get("quantity") or 0) for r in kept)
        if 0 < received < float(line.get("quantity") or 0):
            partial += 1
            say(f"   Basware order line {line['externalCode']}: {received:g} of "
                f"{float(line['quantity']):g} received (partial)")
    say(f"   Basware goods receipts: {entries} on {len(lines)} matching order lines "
        f"({partial} partially received, {cancelled} cancelled)")


def show_tax_codes(basware: dict[str, Any]) -> None:
    """Tax codes in Basware, as its API lists them (GET /v1/taxCodes, every page)."""
    from ml_connector_core.basware_api import BaswareClient, BaswareError

    client = BaswareClient(client_id=basware["client_id"],
                           client_secret=basware["client_secret"], scopes="taxCodes.read",
                           base_url=basware["base_url"])
    try:
        count = sum(len(page) for page in client.get_pages("/v1/taxCodes", {"pageSize": 500},
                                                            "taxCodes"))
    except (BaswareError, requests.RequestException) as exc:
        say(f"   Basware tax codes: not readable ({exc})")
        return
    say(f"   Basware tax codes (GET /v1/taxCodes): {count}")


def pay_in_sage(sandbox: Sandbox, run_dir: Path, env: dict[str, str]) -> list[str]:
    """What the AP team does next in Sage 300: post a batch the connector created and pay an
    invoice of it (`ml-connector sandbox pay`). Returns the invoice numbers paid."""
    step("In Sage 300, the AP team posts a connector batch and pays an invoice of it")
    state = requests.get(f"{sandbox.sage300.base_url}/_sandbox/state", timeout=60).json()
    created = sorted(entry["DocumentNumber"]  # an invoice, not a credit note: one to pay
                     for resources in state["companies"].values()
                     for batch in resources["AP/APInvoiceBatches"]
                     if str(batch.get("Description", "")).startswith("ml-connector")
                     for entry in batch.get("Invoices", [])
                     if entry.get("DocumentType") == "Invoice")
    if not created:
        say("   FAILED: the invoices job created no AP invoice to pay")
        return []
    document = created[0]
    command = ["sandbox", "pay", "--info-file", str(run_dir / "sandbox.json"), document]
    say(f"   ml-connector {' '.join(command)}")
    if connector(command, env) != 0:
        say("   FAILED: the payment above could not be made")
        return []
    return [document]


def show_payments(sandbox: Sandbox, paid: list[str]) -> None:
    """The paid invoices as Basware holds them now: status, paid total, payment responses."""
    state = requests.get(f"{sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    for tenant in state["tenants"].values():
        for invoice in _values(tenant["invoices"]):
            if invoice["invoiceNumber"] not in paid:
                continue
            responses = invoice.get("paymentResponses") or []
            last = responses[-1] if responses else {}
            say(f"   Basware invoice {invoice['invoiceNumber']}: {invoice['processingStatus']}, "
                f"paid {float(invoice.get('paidTotal') or 0):.2f} of "
                f"{float(invoice['grossSum']):.2f} "
                f"{invoice.get('currencyCode', '')} ({len(responses)} payment response(s), "
                f"check {last.get('checkNumber', '-')})")


def _values(collection: Any) -> list[Any]:
    return list(collection.values()) if isinstance(collection, dict) else list(collection)


def connector(args: list[str], env: dict[str, str], quiet: bool = False) -> int:
    """One `ml-connector` command, its output shown as is (errors only if `quiet`); returns
    its exit status."""
    cli = str(Path(sys.executable).with_name("ml-connector"))
    result = subprocess.run([cli, *args], cwd=ROOT, env=env, check=False,
                            capture_output=quiet, text=True)
    if quiet and result.returncode != 0:
        say(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
