"""Fixtures: tap-basware run as Meltano runs it (a process with --config/--state) against the
Basware simulator over HTTP, and helpers to read what the simulator received and holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ml_connector_core.ledger import Ledger
from ml_connector_core.ledger._schema import entries, runs
from mlc_sandbox.data import BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET
from mlc_sandbox.serve import Sandbox

sys.path.insert(0, str(Path(__file__).parent))

from tap_basware_testkit import COMPANIES, TAP_EXECUTABLE, BaswareAdmin, TapRun  # noqa: E402


@pytest.fixture
def basware(fresh_sandbox: Sandbox) -> BaswareAdmin:
    return BaswareAdmin(fresh_sandbox.basware.base_url)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def tap_config(basware: BaswareAdmin, ledger_url: str) -> dict[str, Any]:
    config = {"base_url": basware.base_url, "client_id": BASWARE_CLIENT_ID,
              "client_secret": BASWARE_CLIENT_SECRET, "company_codes": list(COMPANIES),
              "ledger_url": ledger_url}
    # The whole suite once more with one request in flight (as Meltano maps the variable).
    if in_flight := os.environ.get("TAP_BASWARE_MAX_REQUESTS_IN_FLIGHT"):
        config["max_requests_in_flight"] = int(in_flight)
    return config


@pytest.fixture
def run_tap(tmp_path: Path) -> Callable[..., TapRun]:
    """Run the tap's CLI in its own process, as `meltano run` does."""
    counter = iter(range(1, 1000))

    def run(config: dict[str, Any], state: dict[str, Any] | None = None,
            catalog: dict[str, Any] | None = None, check: bool = True,
            env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> TapRun:
        n = next(counter)
        config_file = tmp_path / f"config-{n}.json"
        config_file.write_text(json.dumps(config))
        args = [str(TAP_EXECUTABLE), "--config", str(config_file), *extra]
        if state is not None:
            state_file = tmp_path / f"state-{n}.json"
            state_file.write_text(json.dumps(state))
            args += ["--state", str(state_file)]
        if catalog is not None:
            catalog_file = tmp_path / f"catalog-{n}.json"
            catalog_file.write_text(json.dumps(catalog))
            args += ["--catalog", str(catalog_file)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, env={**os.environ, **(env or {})})
        run = TapRun(done.returncode, done.stdout, done.stderr,
                     [json.loads(line) for line in done.stdout.splitlines() if line.strip()])
        if check and done.returncode != 0:
            raise AssertionError(f"tap-basware failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return run

    return run


@pytest.fixture
def ledger_rows(ledger_url: str) -> Callable[[], list[dict[str, Any]]]:
    """Every ledger entry the tap wrote, oldest first, as plain dicts."""

    def rows() -> list[dict[str, Any]]:
        with Ledger.open(ledger_url) as ledger, ledger.engine.connect() as conn:
            return [dict(row._mapping)
                    for row in conn.execute(select(entries).order_by(entries.c.id))]

    return rows


@pytest.fixture
def ledger_runs(ledger_url: str) -> Callable[[], list[dict[str, Any]]]:
    """Every run the tap registered in the ledger, oldest first."""

    def rows() -> list[dict[str, Any]]:
        with Ledger.open(ledger_url) as ledger, ledger.engine.connect() as conn:
            return [dict(row._mapping)
                    for row in conn.execute(select(runs).order_by(runs.c.started_at))]

    return rows
