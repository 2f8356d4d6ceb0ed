"""`make demo`: the distributor's story, end to end, against the sandbox.

Both simulators start on the ports the `sandbox` Meltano environment points at; the demo then
shows each system answering and runs the jobs defined in meltano.yml. Every demo run gets its
own Meltano state and ledger under output/, so running it twice tells the same story.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from mlc_sandbox.serve import Sandbox, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
SAGE_PORT, BASWARE_PORT = 47300, 47400


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def main() -> int:
    run_dir = ROOT / "output" / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    step("Starting the Sage 300 and Basware simulators")
    sandbox = start_sandbox(sage_port=SAGE_PORT, basware_port=BASWARE_PORT)
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
        env = demo_environment(run_dir)
        for job in jobs:
            step(f"Running `meltano run {job}`")
            if not run_meltano(["run", job], env, run_dir / f"{job}.log"):
                say(f"   FAILED: see {run_dir / f'{job}.log'}")
                return 1
        show_outcome(sandbox)
        say(f"\nLogs, state and ledger of this run: {run_dir.relative_to(ROOT)}")
        return 0
    finally:
        sandbox.stop()


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
    return [job for job in ("master-data", "invoices") if f"name: {job}" in text]


def demo_environment(run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
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


def show_outcome(sandbox: Sandbox) -> None:
    step("What arrived")
    basware = requests.get(f"{sandbox.basware.base_url}/_sandbox/state", timeout=60).json()
    sage = requests.get(f"{sandbox.sage300.base_url}/_sandbox/state", timeout=60).json()
    say(json.dumps({"basware": summarize(basware), "sage300": summarize(sage)}, indent=2))


def summarize(state: Any) -> Any:
    """Counts instead of records, so the terminal shows the shape of the state."""
    if isinstance(state, list):
        return len(state)
    if isinstance(state, dict):
        return {key: summarize(value) for key, value in state.items()
                if isinstance(value, dict | list)}
    return state


if __name__ == "__main__":
    sys.exit(main())
