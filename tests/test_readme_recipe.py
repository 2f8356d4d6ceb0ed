"""README.md's "Setting it up, step by step" runs as written against the sandbox.

The fenced bash block is read from README.md itself (the README cannot drift from this test)
and run by `bash -eu` in a copy of the project, step after step (split at its `# N.`
comments, so each step's exit code and output are its own), as an operator types them; a
step that fails fails the test with its output. Only what the README says stands for the
customer's systems is replaced: the Sage URL `https://erp.example.com/Sage300WebApi/v1.0/-`
by the Sage simulator's, `region eu` by `base_url <the Basware simulator's URL>`, and
`CLIENT-ID` by the simulator's client. The secrets are typed at the `read -rs` prompts
(stdin).

The Sage password is typed UPPERCASED (`SANDBOX-PASS1`): the simulator accepts it (legacy
installs compare uppercased passwords, and the connector sends it uppercased anyway), and it
differs from the `Sandbox-Pass1` of the sandbox environment in meltano.yml, so where each
environment's password comes from shows. (The Basware simulator has one client secret, the
sandbox environment's: for Basware, the sandbox environment is shown to keep its own URL.)

The copy has its own meltano.yml, `.env`, Meltano system database (state included) and
ledger; only the virtualenv and the installed plugin environments are shared (symlinks, as
`meltano install` built them). Its `.meltano/` starts with the mode an install leaves
(0755). The child's environment has no variable that would point a plugin or Meltano
elsewhere (TAP_*, TARGET_*, MELTANO_*, ML_CONNECTOR_*, PROD_*, ...).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from e2e import (
    RUN_TIMEOUT,
    basware_tenant,
    duplicates,
    planted_secrets,
    project_copy,
    snapshot,
)

from mlc_sandbox.data import BASWARE_CLIENT_ID, P2P_REFUSALS, SAGE_PASSWORD, build_dataset
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
README_SAGE_URL = "https://erp.example.com/Sage300WebApi/v1.0/-"
#: Variables a test run or a developer's shell may carry that would point the copy elsewhere.
LEAKING_PREFIXES = ("TAP_", "TARGET_", "MELTANO_", "ML_CONNECTOR_", "PROD_", "BASWARE_",
                    "SAGE", "BASH_ENV", "ENV", "PYTHON", "VIRTUAL_ENV", "REQUESTS_CA_BUNDLE")
UNKNOWN_ACCOUNT = "6999-200"  # the demo's one invoice coded to a GL account Sage lacks
MASTER_DATA_ENDPOINTS = {"vendors", "accounts", "costCenters", "paymentTerms", "taxCodes",
                         "matchingOrders", "matchingOrderLines"}


def readme_recipe() -> str:
    """The bash block under "### Setting it up, step by step" in README.md."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Setting it up, step by step", 1)[1]
    found = re.search(r"^```bash\n(.*?)^```", section, re.M | re.S)
    assert found, "README.md: no bash block under 'Setting it up, step by step'"
    return found.group(1)


def for_the_sandbox(recipe: str, sandbox: Sandbox) -> str:
    """The recipe with the customer's systems replaced by the simulators, nothing else."""
    info = sandbox.info()
    assert recipe.count(README_SAGE_URL) == 2  # tap-sage300 and target-sage300
    recipe = recipe.replace(README_SAGE_URL, info["sage300"]["base_url"])
    recipe, regions = re.subn(r"(?m)^(\$P (?:tap|target)-basware) region eu$",
                              rf"\1 base_url {info['basware']['base_url']}", recipe)
    assert regions == 2  # tap-basware and target-basware
    assert recipe.count("CLIENT-ID") == 2
    recipe = recipe.replace("CLIENT-ID", info["basware"]["client_id"])
    assert "example.com" not in recipe and "region" not in recipe
    return recipe


def steps(recipe: str) -> dict[int, str]:
    """Step number -> its lines (the comment that starts it included)."""
    parts = re.split(r"(?m)^(?=# (\d+)\. )", recipe)
    assert not parts[0].strip(), f"lines before step 1: {parts[0]!r}"
    numbered = {int(number): text for number, text in zip(parts[1::2], parts[2::2], strict=True)}
    assert list(numbered) == [1, 2, 3, 4, 5], list(numbered)
    return numbered


def operator_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(LEAKING_PREFIXES)}
    home.mkdir()
    return {**env, "HOME": str(home)}


def own_files(project: Path) -> dict[str, str]:
    """Every file the recipe left in the copy (not the shared venv and plugins), as text."""
    shared = {project / ".venv", project / ".meltano" / "extractors",
              project / ".meltano" / "loaders"}
    texts = {}
    for path in sorted(project.rglob("*")):
        if any(path == s or s in path.parents for s in shared) or not path.is_file():
            continue
        texts[str(path.relative_to(project))] = path.read_bytes().decode("latin-1")
    return texts


def without_sandbox_environment(meltano_yml: dict[str, Any]) -> dict[str, Any]:
    return {**meltano_yml, "environments": [e for e in meltano_yml["environments"]
                                            if e["name"] != "sandbox"]}


def settings_documented(meltano_yml: dict[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """plugin -> setting -> (label, description)."""
    return {plugin["name"]: {s["name"]: (s.get("label"), s.get("description"))
                             for s in plugin.get("settings", [])}
            for kind in ("extractors", "loaders") for plugin in meltano_yml["plugins"][kind]}


def config_print(project: Path, env: dict[str, str], environment: str,
                 plugin: str) -> str:
    result = subprocess.run(
        [".venv/bin/meltano", f"--environment={environment}", "config", "--unsafe", "print",
         plugin], cwd=project, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_readme_recipe_runs_as_written(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    info = fresh_sandbox.info()
    sage_password = SAGE_PASSWORD.upper()  # what the operator types; see the module doc
    assert sage_password != SAGE_PASSWORD
    client_secret = info["basware"]["client_secret"]
    project = project_copy(tmp_path)
    original_yml = (project / "meltano.yml").read_text()
    env = operator_env(tmp_path / "home")

    recipe = steps(for_the_sandbox(readme_recipe(), fresh_sandbox))
    results: dict[int, subprocess.CompletedProcess[str]] = {}
    for number, text in recipe.items():
        typed = f"{sage_password}\n{client_secret}\n" if "read -rs" in text else ""
        results[number] = result = subprocess.run(
            ["bash", "-eu", "-c", text], cwd=project, env=env, input=typed,
            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
        assert result.returncode == 0, (
            f"step {number} exited {result.returncode}:\n{text}\n--- stdout\n"
            f"{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
        if number == 4:  # check and plan wrote nothing in either system
            counts = snapshot(fresh_sandbox).counts()
            assert counts["sage ap invoices"] == counts["basware invoices answered"] == 0
            assert [name for name, n in counts.items() if n] == [], counts
    assert "read -rs" in recipe[2] and "ml-connector check" in recipe[3]
    assert "ml-connector plan" in recipe[4]  # both exited 0 (above)
    assert "run master-data" in recipe[5] and "run invoices" in recipe[5]
    check = results[3].stdout
    assert "VERDICT: PASS" in check
    assert [line for line in check.splitlines() if line.startswith(("WARN", "FAIL"))] == []
    assert "secrets at rest" in check and (project / ".meltano").stat().st_mode & 0o777 == 0o700
    assert re.search(r"^  ap_invoices +27 +0 +0 +1$", results[4].stdout, re.M)  # the plan

    # -- Sage: every approved invoice once, except the one coded to an unknown account ----
    snap = snapshot(fresh_sandbox)
    assert duplicates(snap) == []
    entries = [copy for copies in snap.ap_invoices.values() for copy in copies]
    assert len(entries) == 27
    assert all(entry["connector_batch"] and entry["BWINVID"] for entry in entries)

    # -- Basware: every invoice answered once, 27 Transferred and the rejected one ---------
    invoices = {i["invoiceId"]: i for i in basware_tenant(fresh_sandbox)["invoices"]}
    assert len(invoices) == 28
    assert Counter(i["processingStatus"] for i in invoices.values()) == {
        "Transferred": 27, "TransferFailed": 1}
    assert all(len(answer["responses"]) == 1 for answer in snap.invoices.values())
    (failed,) = [i for i in invoices.values() if i["processingStatus"] == "TransferFailed"]
    assert [r["accountCode"] for r in failed["codingRows"]].count(UNKNOWN_ACCOUNT) >= 1
    assert UNKNOWN_ACCOUNT in failed["transferResponses"][0]["responseMessage"]
    assert {e["BWINVID"] for e in entries} == {
        i for i, invoice in invoices.items() if invoice["processingStatus"] == "Transferred"}

    # -- master data arrived in Basware -------------------------------------------------------
    assert set(snap.master_data) == MASTER_DATA_ENDPOINTS
    assert all(snap.master_data[endpoint] for endpoint in MASTER_DATA_ENDPOINTS)
    # P2P took everything but the demo's records it refuses (mlc_sandbox.data.P2P_REFUSALS).
    assert snap.master_status and {key for key, status in snap.master_status.items()
                                   if status != "Success"} == set(P2P_REFUSALS)
    sage = build_dataset("demo", seed=0).sage
    assert set(snap.master_data["vendors"]) == {
        f"{company}-{vendor['VendorNumber']}" for company, tables in sage.items()
        for vendor in tables["AP/APVendors"]}

    # -- the secrets: never in what the recipe printed or left, .env readable by you alone --
    planted = planted_secrets(fresh_sandbox)
    assert sage_password in planted and client_secret in planted
    printed = {f"step {n} {stream}": getattr(result, stream) for n, result in results.items()
               for stream in ("stdout", "stderr")}
    assert [name for name, text in printed.items() if any(s in text for s in planted)] == []
    dotenv = project / ".env"
    assert dotenv.stat().st_mode & 0o777 == 0o600
    assert dotenv.read_text().split() == [f"PROD_SAGE300_PASSWORD='{sage_password}'",
                                          f"PROD_BASWARE_CLIENT_SECRET='{client_secret}'"]
    files = own_files(project)
    assert ".ml-connector/ledger.sqlite" in files and ".meltano/meltano.db" in files
    assert [name for name, text in files.items() if name != ".env"
            and any(s in text for s in (sage_password, client_secret))
            and name != "meltano.yml"] == []
    # meltano.yml: the prod environment refers to the secrets, never holds them; the only
    # secret in the file is the sandbox's own demo one, as before the recipe.
    after_yml = (project / "meltano.yml").read_text()
    after = yaml.safe_load(after_yml)
    assert sage_password not in after_yml
    assert after_yml.count(client_secret) == original_yml.count(client_secret)
    outside_sandbox = yaml.safe_dump(without_sandbox_environment(after))
    assert [s for s in planted if s in outside_sandbox] == []
    (prod,) = [e for e in after["environments"] if e["name"] == "prod"]
    prod_plugins = {p["name"]: p["config"] for kind in ("extractors", "loaders")
                    for p in prod["config"]["plugins"][kind]}
    assert prod_plugins["tap-sage300"]["password"] == "${PROD_SAGE300_PASSWORD}"
    assert prod_plugins["target-sage300"]["password"] == "${PROD_SAGE300_PASSWORD}"
    assert prod_plugins["tap-basware"]["client_secret"] == "${PROD_BASWARE_CLIENT_SECRET}"
    assert prod_plugins["target-basware"]["client_secret"] == "${PROD_BASWARE_CLIENT_SECRET}"
    assert prod_plugins["tap-sage300"]["base_url"] == info["sage300"]["base_url"]
    assert prod_plugins["tap-basware"]["base_url"] == info["basware"]["base_url"]
    assert prod_plugins["tap-basware"]["client_id"] == BASWARE_CLIENT_ID

    # -- meltano.yml still documents every setting (`meltano config set` kept them) ---------
    before = yaml.safe_load(original_yml)
    assert settings_documented(after) == settings_documented(before)
    assert all(label and description for plugin in settings_documented(after).values()
               for label, description in plugin.values())

    # -- the sandbox environment is as it was: its own settings, not prod's secrets ----------
    sandbox_before = [e for e in before["environments"] if e["name"] == "sandbox"]
    assert [e for e in after["environments"] if e["name"] == "sandbox"] == sandbox_before
    sandbox_sage = config_print(project, env, "sandbox", "tap-sage300")
    assert f'"password": "{SAGE_PASSWORD}"' in sandbox_sage
    assert sage_password not in sandbox_sage and info["sage300"]["base_url"] not in sandbox_sage
    sandbox_basware = config_print(project, env, "sandbox", "target-basware")
    assert info["basware"]["base_url"] not in sandbox_basware
    prod_sage = config_print(project, env, "prod", "target-sage300")
    assert f'"password": "{sage_password}"' in prod_sage
