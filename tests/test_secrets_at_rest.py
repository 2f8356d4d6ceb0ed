"""Secrets at rest: after any run, killed or not, however it was started, no file holding a
secret is readable by another user (docs/decisions.md, "Secrets at rest").

Meltano writes each plugin's configuration, secrets included, to
`<system dir>/run/<plugin>/*.config.json` (mode 0644 in folders 0755 under umask 022) and
deletes it only when a run ends normally. Here the system directory is elsewhere
(MELTANO_SYS_DIR_ROOT, as Meltano creates it: 0755), and the project is a copy whose
meltano.yml holds no secret (they come from the environment, as in production). Both jobs are
started by hand (`meltano run`) and SIGKILLed mid-run, so all four plugins' files are left
behind; then the next runs are started with `ml-connector run`, and a last one by hand again.
After each step, every file under the test's folder (system directory, project copy, logs,
state, ledger) is scanned: a file holding a planted secret must not be readable by group or
others, judged by what a reader needs: the file's read bit and the search bit of every
folder on its path (from the test's folder, made 0755 as a home folder others may enter).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from e2e import (
    RUN_TIMEOUT,
    Project,
    basware_tenant,
    connector_batches,
    kill,
    project_copy,
    set_faults,
    wait_until,
)

from mlc_sandbox.data import BASWARE_CLIENT_SECRET, SAGE_PASSWORD
from mlc_sandbox.serve import Sandbox

WEBHOOK_TOKEN = "wh00k-at-r3st-T0ken-77c1"  # noqa: S105 - a planted test value
CLI = [sys.executable, "-m", "ml_connector.cli"]
PLUGINS = ("tap-sage300", "target-basware", "tap-basware", "target-sage300")
HOLD = 300  # stall_after seconds: the answer never comes before the kill
#: Sage creates the invoice batch and holds its answer; Basware stores the vendors import and
#: holds its answer: each job is then mid-run, both its plugins started.
HELD_SAGE = {"stall_seconds": HOLD, "schedule": [
    {"nth": 1, "fault": "stall_after", "method": "POST", "path": "APInvoiceBatches$"}]}
HELD_BASWARE = {"stall_seconds": HOLD, "schedule": [
    {"nth": 1, "fault": "stall_after", "method": "POST", "path": "^/v1/vendors$"}]}


def secret_forms() -> list[str]:
    forms = set()
    for secret in (SAGE_PASSWORD, BASWARE_CLIENT_SECRET, WEBHOOK_TOKEN):
        forms |= {secret, secret.upper(), json.dumps(secret)[1:-1]}
    return sorted(forms)


def readable_by_others(path: Path, boundary: Path) -> list[str]:
    """Who besides the owner can read `path`: 'group' and/or 'others', when the file grants
    them read and every folder from `boundary` down to it lets them through."""
    who = []
    folders = [boundary, *reversed([p for p in path.parents if p.is_relative_to(boundary)
                                    and p != boundary])]
    mode = path.stat().st_mode
    for name, read, search in (("group", stat.S_IRGRP, stat.S_IXGRP),
                               ("others", stat.S_IROTH, stat.S_IXOTH)):
        if mode & read and all(folder.stat().st_mode & search for folder in folders):
            who.append(name)
    return who


def scan(boundary: Path) -> tuple[list[Path], list[str]]:
    """(files holding a planted secret, those of them other users can read, described)."""
    forms = secret_forms()
    holders: list[Path] = []
    exposed: list[str] = []
    for folder, dirs, files in os.walk(boundary):  # symlinks (venv, plugins) not followed
        dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            text = path.read_bytes().decode("latin-1")
            if not any(form in text for form in forms):
                continue
            holders.append(path)
            if who := readable_by_others(path, boundary):
                exposed.append(f"{path.relative_to(boundary)} "
                               f"({stat.filemode(path.stat().st_mode)}) by {' and '.join(who)}")
    return holders, exposed


def config_files(system_dir: Path) -> list[Path]:
    return sorted((system_dir / "run").glob("*/*.config.json"))


def secretless_copy(base: Path) -> Path:
    """A project copy whose meltano.yml holds no secret: the sandbox environment's password
    and client secret lines removed (they come from the environment instead)."""
    project = project_copy(base)
    yml = project / "meltano.yml"
    text = re.sub(r"^\s+(password|client_secret): (Sandbox|sandbox-).*\n", "", yml.read_text(),
                  flags=re.MULTILINE)
    yml.write_text(text)
    assert not any(form in text for form in secret_forms())
    return project


def connector_run(project: Project, job: str) -> subprocess.CompletedProcess[str]:
    """`ml-connector run <job>` in the project copy, as a scheduler starts it."""
    return subprocess.run([*CLI, "run", job], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def test_no_secret_readable_by_others_after_any_run(fresh_sandbox: Sandbox,
                                                    tmp_path: Path) -> None:
    sandbox = fresh_sandbox
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)  # others may enter, as a home or /srv folder
    root = secretless_copy(home)
    project = Project.create(sandbox, home / "work", root=root, extra_env={
        "TARGET_SAGE300_PASSWORD": SAGE_PASSWORD,
        "TAP_BASWARE_CLIENT_SECRET": BASWARE_CLIENT_SECRET,
        "TARGET_BASWARE_CLIENT_SECRET": BASWARE_CLIENT_SECRET,
        "TAP_BASWARE_WEBHOOK_TOKEN": WEBHOOK_TOKEN})
    system_dir = Path(project.env["MELTANO_SYS_DIR_ROOT"])
    for folder in (project.workdir, system_dir, project.workdir / "logs"):
        folder.chmod(0o755)  # as Meltano and the harness create them under umask 022

    # 1. Both jobs started by hand and SIGKILLed mid-run: every plugin's file stays behind.
    assert project.meltano("state", "list").returncode == 0  # the system database, once
    set_faults(sandbox, HELD_SAGE, HELD_BASWARE)
    master = project.start("master-data", name="master-data-killed")
    invoices = project.start("invoices", name="invoices-killed")
    try:
        wait_until(lambda: [r for r in basware_tenant(sandbox)["request_status"]
                            if r["entityType"] == "Vendor"], master,
                   "Basware stored the vendors import")
        wait_until(lambda: connector_batches(sandbox), invoices, "Sage created a batch")
    finally:
        kill(master)
        kill(invoices)
    project.finish(master)
    project.finish(invoices)
    set_faults(sandbox, None, None)

    holders, exposed = scan(home)
    left = config_files(system_dir)
    assert {path.parent.name for path in left} == set(PLUGINS), left
    assert set(left) <= set(holders)  # the scan sees the secrets in them
    assert exposed == []
    assert stat.S_IMODE(system_dir.stat().st_mode) == 0o755  # not ours to change
    assert {stat.S_IMODE(path.stat().st_mode) for path in left} == {0o600}

    # 2. The next runs, as a scheduler starts them: the killed runs' files are removed first.
    for job in ("master-data", "invoices"):
        result = connector_run(project, job)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        if job == "master-data":
            assert re.search(r"removed \d+ plugin configuration file\(s\) that killed runs "
                             r"left in ", result.stderr), result.stderr[-4000:]
        assert config_files(system_dir) == []
        assert scan(home)[1] == []

    # 3. And by hand again, after which nothing holds a secret but the environment.
    again = project.run("invoices", name="invoices-by-hand")
    assert again.ok, again.output[-4000:]
    holders, exposed = scan(home)
    assert exposed == []
    assert holders == []
    assert stat.S_IMODE((system_dir / "run").stat().st_mode) == 0o700
