"""Reuse in another ELT stack: tap-sage300 piped into a third-party Singer target.

target-jsonl (PyPI, singer-python based, validates every record against the SCHEMA with its
own jsonschema) writes one file per stream; its STATE output feeds the next run. This is how a
warehouse load would use the tap, without Meltano and without any ml-connector code downstream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tap_sage300_testkit import TAP, SageSandbox

# In its own virtualenv: it pins jsonschema 2.6 / singer-python 5.8, which the SDK cannot share.
# Found as $TARGET_JSONL, as a link in the project venv, or as a Meltano loader's venv.
_CANDIDATES = [os.environ.get("TARGET_JSONL", ""),
               str(Path(sys.executable).with_name("target-jsonl")),
               str(Path(__file__).parents[2] / ".meltano/loaders/target-jsonl/venv/bin/target-jsonl")]
TARGET_JSONL = next((c for c in _CANDIDATES if c and Path(c).exists()), _CANDIDATES[1])


def pipe(config: dict, state: dict | None, workdir: Path, name: str) -> tuple[Path, list[dict]]:
    """`tap-sage300 --config c [--state s] | target-jsonl --config t`; returns the output dir
    and the STATE lines the target printed."""
    out = workdir / name
    out.mkdir()
    (workdir / f"{name}-tap.json").write_text(json.dumps(config))
    (workdir / f"{name}-target.json").write_text(json.dumps(
        {"destination_path": str(out), "do_timestamp_file": False}))
    tap_args = [TAP, "--config", str(workdir / f"{name}-tap.json")]
    if state is not None:
        (workdir / f"{name}-state.json").write_text(json.dumps(state))
        tap_args += ["--state", str(workdir / f"{name}-state.json")]
    assert Path(TARGET_JSONL).exists(), (
        f"target-jsonl not found ({_CANDIDATES}): install target-jsonl==0.1.4 in its own venv "
        "(see tap-sage300/README.md)")
    log = workdir / f"{name}-tap.log"  # a file, not a pipe: nobody reads it while both run
    with log.open("w") as tap_log, subprocess.Popen(tap_args, stdout=subprocess.PIPE,
                                                     stderr=tap_log, cwd=workdir) as tap:
        target = subprocess.run([TARGET_JSONL, "--config", str(workdir / f"{name}-target.json")],
                                stdin=tap.stdout, capture_output=True, text=True, timeout=300,
                                cwd=workdir, check=False)
    assert tap.returncode == 0, log.read_text()[-3000:]
    assert target.returncode == 0, target.stderr[-3000:]
    states = [json.loads(line) for line in target.stdout.splitlines() if line.strip()]
    return out, states


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_tap_into_target_jsonl_and_incremental_rerun_from_its_state(sage: SageSandbox) -> None:
    out, states = pipe(sage.config(), None, sage.tmp_path, "first")

    tables = sage.state()["companies"]
    vendors = read_jsonl(out / "vendors.jsonl")
    assert sorted((v["company_id"], v["VendorNumber"]) for v in vendors) == sorted(
        (company, v["VendorNumber"]) for company, data in tables.items()
        for v in data["AP/APVendors"])
    lines = read_jsonl(out / "purchase_order_lines.jsonl")
    assert len(lines) == sum(len(po["PurchaseOrderLines"]) for data in tables.values()
                             for po in data["PO/POPurchaseOrders"])
    assert all(line["cost_center"] for line in lines)
    for stream in ("gl_accounts", "cost_centers", "payment_terms", "purchase_orders",
                   "customers"):
        assert read_jsonl(out / f"{stream}.jsonl"), stream
    # The deletion signals are plain Singer: target-jsonl takes the ACTIVATE_VERSION messages
    # (it has no use for them) and writes vendor_keys and line_keys like any other field.
    assert sorted((v["company_id"], v["VendorNumber"])
                  for v in read_jsonl(out / "vendor_keys.jsonl")) == sorted(
        (v["company_id"], v["VendorNumber"]) for v in vendors)
    assert all(po["line_keys"] for po in read_jsonl(out / "purchase_orders.jsonl"))
    state = states[-1]
    assert "vendors" in state["bookmarks"]

    sage.touch("SAMINC", "AP/APVendors", "1250", VendorName="Changed For The Warehouse Inc.")
    out2, _ = pipe(sage.config(), state, sage.tmp_path, "second")
    changed = {(v["company_id"], v["VendorNumber"]): v for v in read_jsonl(out2 / "vendors.jsonl")}
    assert changed[("SAMINC", "1250")]["VendorName"] == "Changed For The Warehouse Inc."
    assert len(changed) < len(vendors)
