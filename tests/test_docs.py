"""The operator docs say what the code does: plugin settings tables, schedules, variable names.

- each plugin README's settings table is what the plugin's `--about` prints (`make docs`);
- the CI workflow example is valid YAML whose cron triggers and jobs are meltano.yml's
  schedules and jobs, and whose secrets reach real settings;
- every Meltano or plugin environment variable named in docs/operations.md, README.md and the
  workflow is one Meltano or the plugins actually read.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "deploy" / "github-actions" / "ml-connector-sync.yml"
DOCS = [ROOT / "docs" / "operations.md", ROOT / "README.md", WORKFLOW]
PLUGINS = ("tap-sage300", "tap-basware", "target-basware", "target-sage300")
# Read by Meltano's CLI or by ml-connector itself, not settings in `meltano config list`.
CLI_VARIABLES = {"MELTANO_ENVIRONMENT", "MELTANO_PROJECT_ROOT", "MELTANO_SYS_DIR_ROOT",
                 "MELTANO_RUN_ID", "MELTANO_STATE_ID"}


@cache
def meltano_yml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "meltano.yml").read_text())


def schedules() -> dict[str, str]:
    """interval -> job, from meltano.yml."""
    return {s["interval"]: s["job"] for s in meltano_yml()["schedules"]}


def plugin_settings() -> dict[str, set[str]]:
    plugins = meltano_yml()["plugins"]
    return {p["name"]: {s["name"] for s in p.get("settings", [])}
            for kind in ("extractors", "loaders") for p in plugins[kind]}


@cache
def meltano_setting_variables() -> set[str]:
    result = subprocess.run([str(Path(sys.executable).with_name("meltano")), "config", "list",
                             "meltano", "--all"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    return set(re.findall(r"\[env: (MELTANO_[A-Z0-9_]+)\]", result.stdout))


def test_plugin_readmes_show_the_settings_the_plugins_accept() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "plugin_docs.py"),
                             "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr  # "... out of date in X: run `make docs`"


def test_ci_workflow_runs_meltano_yml_jobs_on_meltano_yml_schedules() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on") or workflow[True]  # YAML 1.1 reads a bare `on` as true
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert sorted(crons) == sorted(schedules())
    jobs = {job["name"] for job in meltano_yml()["jobs"]}
    assert set(triggers["workflow_dispatch"]["inputs"]["job"]["options"]) == jobs

    (sync,) = workflow["jobs"].values()
    # Each cron picks the job meltano.yml schedules with it, wherever the job is chosen.
    for field in (sync["name"], sync["concurrency"]["group"], sync["env"]["ML_CONNECTOR_JOB"]):
        picked = dict(re.findall(r"github\.event\.schedule == '([^']+)' && '([^']+)'", field))
        assert picked == schedules(), field
        assert field.endswith("inputs.job }}"), field
    assert sync["concurrency"]["cancel-in-progress"] is False
    assert any(step.get("run") == '.venv/bin/ml-connector run "$ML_CONNECTOR_JOB"'
               for step in sync["steps"])

    # Secrets come from the CI's store, into variables that are declared settings.
    settings = plugin_settings()
    for name, value in sync["env"].items():
        prefix = next((p for p in PLUGINS if name.startswith(p.upper().replace("-", "_") + "_")),
                      None)
        if prefix is not None:
            setting = name.removeprefix(prefix.upper().replace("-", "_") + "_").lower()
            assert setting in settings[prefix], name
        if re.search(r"PASSWORD|SECRET|DATABASE_URI|LEDGER_URL", name):
            assert value.startswith("${{ secrets."), name


def test_operations_doc_schedules_are_meltano_yml_schedules() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    table = dict(re.findall(r"^\| `[\w-]+` \| `([\w-]+)` \| `([^`]+)` \|", text, re.M))
    assert {interval: job for job, interval in table.items()} == schedules()
    cron_lines = re.findall(r"^(\S+\s+\S+)\s+\*\s+\*\s+(\S+)\s+cd .* run ([\w-]+) ", text, re.M)
    assert {f"{minute_hour.split()[0]} {minute_hour.split()[1]} * * {dow}": job
            for minute_hour, dow, job in cron_lines} == schedules()


def test_documented_variables_exist() -> None:
    settings = plugin_settings()
    known_meltano = meltano_setting_variables() | CLI_VARIABLES
    for doc in DOCS:
        text = doc.read_text()
        for name in set(re.findall(r"\b(MELTANO_[A-Z0-9_]*[A-Z0-9])\b", text)):
            assert name in known_meltano, f"{doc.name}: {name}"
        for prefix, setting in set(re.findall(
                r"\b(TAP_SAGE300|TAP_BASWARE|TARGET_BASWARE|TARGET_SAGE300)_([A-Z0-9_]+)\b",
                text)):
            plugin = prefix.lower().replace("_", "-")
            assert setting.lower() in settings[plugin], f"{doc.name}: {prefix}_{setting}"
