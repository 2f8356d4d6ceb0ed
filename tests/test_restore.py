"""Restore from backup: Meltano's state and the ledger restored apart, from copies taken
between runs with the commands docs/operations.md shows ("Restore from backup"), run as
written (`prod` read as the sandbox environment). After the recovery the docs describe, both
simulators end as a run without the restore leaves them (the session's baseline), with
nothing twice: an invoice whose outcome was lost with the ledger is found in Sage again by
BWINVID and answered, never created twice; a master-data record the restored ledger says
Basware has with an older payload is sent again.

Each test is a Meltano project copy whose ledger is at the default place
(`.ml-connector/ledger.sqlite`), as the docs' commands expect.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import requests
from e2e import (
    RUN_TIMEOUT,
    Project,
    Snapshot,
    differences,
    duplicates,
    hidden_rejections,
    project_copy,
    request_log,
    snapshot,
)

from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"
CLI = [sys.executable, "-m", "ml_connector.cli"]
ONE_TASK = ("tap-basware", "target-sage300")  # the invoices job's first task alone
RESEND_KEY = "resend_after_restore"
VENDOR = {"company": "SAMINC", "resource": "AP/APVendors", "key": "1210"}


# -- the docs' commands ------------------------------------------------------------------------

def doc_commands() -> list[str]:
    """The command lines of the "Restore from backup" section's bash blocks, in order."""
    text = DOC.read_text()
    section = text[text.index("\n## Restore from backup"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def command(*words: str) -> str:
    """The one docs command containing all `words`, for the sandbox environment."""
    (found,) = [line for line in doc_commands() if all(word in line for word in words)]
    return found.replace("--environment=prod", "--environment=sandbox").replace(
        " prod:", " sandbox:")


BACK_UP = ("mkdir -p backup", "state export", ".ml-connector/ledger.sqlite backup/")
RESTORE_STATE = ("state import",)
RESTORE_LEDGER = ("backup/ledger.sqlite .ml-connector/ledger.sqlite",)
CLEAR_STATE = ("state clear",)


def test_every_command_of_the_section_is_run_here() -> None:
    used = {command(word) for word in BACK_UP} | {command(*RESTORE_STATE),
                                                   command(*RESTORE_LEDGER),
                                                   command(*CLEAR_STATE)}
    assert len(used) == len(doc_commands()) == 6


def shell(project: Project, line: str) -> None:
    """A command typed in the project folder, with the project's virtualenv first on PATH."""
    env = {**project.env, "PATH": f"{project.root / '.venv' / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-eu", "-c", line], cwd=project.root, env=env,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"[-4000:]


def back_up(project: Project) -> None:
    for words in BACK_UP:
        shell(project, command(words))


# -- the project -------------------------------------------------------------------------------

def restore_project(sandbox: Sandbox, tmp_path: Path) -> Project:
    root = project_copy(tmp_path)
    (root / ".ml-connector").mkdir()
    return Project.create(sandbox, tmp_path / "work", root=root, extra_env={
        "ML_CONNECTOR_LEDGER_URL": f"sqlite:///{root / '.ml-connector' / 'ledger.sqlite'}"})


def ok(project: Project, *task: str) -> str:
    run = project.run(*task)
    assert run.ok, run.output[-4000:]
    return run.output


def same_as_baseline(baseline: Snapshot, project: Project, job: str) -> None:
    """Both simulators, and the ledger's failures, as the baseline run left them."""
    end = snapshot(project.sandbox, project.ledger_url)
    assert duplicates(end) == [] and hidden_rejections(end) == []
    assert differences(baseline.only((job,)), end.only((job,))) == []


def saved_state(project: Project, job: str) -> dict:
    text = project.state(job)
    state = json.loads(text) if text.strip() else {}
    return state.get("singer_state", state)


def rename_vendor(sandbox: Sandbox, name: str) -> None:
    """A Sage user changes vendor 1210's name (DateLastMaintained is today)."""
    touched = requests.post(f"{sandbox.sage300.base_url}/_sandbox/touch", timeout=30,
                            json={**VENDOR, "changes": {"VendorName": name}})
    assert touched.status_code == 200, touched.text


def vendor_name(sandbox: Sandbox) -> str:
    state = requests.get(f"{sandbox.sage300.base_url}/_sandbox/state", timeout=60).json()
    (vendor,) = [v for v in state["companies"]["SAMINC"]["AP/APVendors"]
                 if v["VendorNumber"] == VENDOR["key"]]
    return vendor["VendorName"]


# -- invoices ----------------------------------------------------------------------------------

def test_invoices_after_the_ledger_is_restored_older(fresh_sandbox: Sandbox, tmp_path: Path,
                                                      baseline: Snapshot) -> None:
    """The ledger is restored from a copy taken before the run whose outcomes the state still
    names: the run drops them and answers their invoices itself (found in Sage by BWINVID)."""
    sandbox = fresh_sandbox
    project = restore_project(sandbox, tmp_path)
    ok(project, "master-data")
    back_up(project)
    ok(project, *ONE_TASK)  # invoices created in Sage, their outcomes still to be answered
    created = sum(len(v) for v in snapshot(sandbox).ap_invoices.values())
    assert created == 27 and "transfer_outcome_runs" in saved_state(project, "invoices")

    shell(project, command(*RESTORE_LEDGER))

    plan = subprocess.run([*CLI, "plan", "--job", "invoices"], cwd=project.root,
                          env=project.env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)
    assert plan.returncode == 0, (plan.stdout + plan.stderr)[-4000:]
    assert "read again: 28 invoice(s)" in plan.stdout, plan.stdout[-3000:]

    output = ok(project, "invoices")

    assert "is older than Meltano's state sandbox:tap-basware-to-target-sage300" in output
    assert "The runs are dropped from the state" in output
    assert "27 already there" in output, output[-4000:]
    same_as_baseline(baseline, project, "invoices")


def test_invoices_after_the_state_is_restored_older(fresh_sandbox: Sandbox, tmp_path: Path,
                                                     baseline: Snapshot) -> None:
    """The state is restored from a copy that still names outcomes answered since: answered
    again, Basware refuses them, nothing changes."""
    sandbox = fresh_sandbox
    project = restore_project(sandbox, tmp_path)
    ok(project, *ONE_TASK)
    back_up(project)
    ok(project, "invoices")  # answers them; its second task is handed a later state

    shell(project, command(*RESTORE_STATE))

    output = ok(project, "invoices")
    assert "Meltano's state sandbox:tap-basware-to-target-sage300 is older than the ledger" \
        in output
    assert "'already_answered': 28" in output, output[-4000:]
    same_as_baseline(baseline, project, "invoices")


def test_invoices_with_a_replaced_ledger_stop_naming_the_command_that_recovers(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    """The ledger is lost and a new one starts: the job cannot tell this from two plugins set
    to different ledgers, so it stops, naming the command; typed as shown, it recovers."""
    sandbox = fresh_sandbox
    project = restore_project(sandbox, tmp_path)
    ok(project, *ONE_TASK)
    for lost in (project.root / ".ml-connector").iterdir():
        lost.unlink()

    stopped = project.run("invoices")

    assert not stopped.ok
    assert "another ledger" in stopped.output and "give both the same ledger_url" in \
        stopped.output
    (typed,) = set(re.findall(r"`(meltano [^`]*state clear[^`]*)`", stopped.output))
    assert f".venv/bin/{typed}" == command(*CLEAR_STATE)
    shell(project, typed)

    ok(project, "invoices")
    same_as_baseline(baseline, project, "invoices")


# -- master data -------------------------------------------------------------------------------

def test_master_data_after_the_ledger_is_restored_older(fresh_sandbox: Sandbox,
                                                         tmp_path: Path,
                                                         baseline: Snapshot) -> None:
    """Vendor 1210 is renamed and delivered after the backup; the ledger is restored, and the
    name changed back in Sage: the restored ledger says Basware has exactly that, while
    Basware has the new name. The next two runs send everything they read (the second reads
    everything): Basware ends as without the restore; the run after them is ordinary."""
    sandbox = fresh_sandbox
    project = restore_project(sandbox, tmp_path)
    original = vendor_name(sandbox)
    ok(project, "master-data")
    back_up(project)
    rename_vendor(sandbox, "Renamed After The Backup")
    ok(project, "master-data")

    shell(project, command(*RESTORE_LEDGER))
    rename_vendor(sandbox, original)

    detected = ok(project, "master-data")
    assert "is older than Meltano's state sandbox:tap-sage300-to-target-basware" in detected
    state = saved_state(project, "master-data")
    assert state.get(RESEND_KEY) is True and "bookmarks" not in state, state
    everything = ok(project, "master-data")
    assert "this run reads every record from Sage 300 and sends each one" in everything
    state = saved_state(project, "master-data")
    assert RESEND_KEY not in state and state.get("bookmarks"), state

    since = request_log(sandbox.basware.base_url)[-1]["seq"] if request_log(
        sandbox.basware.base_url) else 0
    ordinary = ok(project, "master-data")
    assert "older" not in ordinary
    posts = [r for r in request_log(sandbox.basware.base_url, since)
             if r["method"] == "POST" and r["path"] != "/v1/tokens"]
    assert posts == []
    same_as_baseline(baseline, project, "master-data")


def test_master_data_after_the_state_is_restored_older(fresh_sandbox: Sandbox,
                                                        tmp_path: Path,
                                                        baseline: Snapshot) -> None:
    sandbox = fresh_sandbox
    project = restore_project(sandbox, tmp_path)
    ok(project, "master-data")
    back_up(project)
    ok(project, "master-data")
    ok(project, "master-data")  # handed the state the one before saved

    shell(project, command(*RESTORE_STATE))

    output = ok(project, "master-data")
    assert "Meltano's state sandbox:tap-sage300-to-target-basware is older than the ledger" \
        in output
    assert RESEND_KEY not in saved_state(project, "master-data")
    same_as_baseline(baseline, project, "master-data")
