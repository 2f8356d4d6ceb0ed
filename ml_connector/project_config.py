"""The Meltano project as `meltano run` sees it: root, active environment, plugin settings.

Shared by `ml-connector check`, `plan` and `webhooks`: every command reads the settings
through Meltano itself (`meltano.yml`, the active environment, `.env`, environment variables
such as TAP_SAGE300_BASE_URL), so what they test or predict is what a run would use.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class MeltanoError(Exception):
    """Meltano could not tell us what we asked (a plugin's configuration, a state)."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr  # Meltano's log, to look for a known cause; never shown whole


def find_project_root(start: Path | None = None) -> Path:
    """The Meltano project: $MELTANO_PROJECT_ROOT, else the nearest meltano.yml upwards."""
    if os.environ.get("MELTANO_PROJECT_ROOT"):
        return Path(os.environ["MELTANO_PROJECT_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "meltano.yml").is_file():
            return folder
    raise MeltanoError(f"no meltano.yml in {here} or above; run from the Meltano project or "
                       "set MELTANO_PROJECT_ROOT")


def active_environment(project_root: Path, explicit: str | None = None) -> str | None:
    """As `meltano run` picks it: --environment, $MELTANO_ENVIRONMENT, else default_environment.

    `meltano config` ignores default_environment, so we pass the environment explicitly.
    """
    if explicit:
        return explicit
    if os.environ.get("MELTANO_ENVIRONMENT"):
        return os.environ["MELTANO_ENVIRONMENT"]
    text = (project_root / "meltano.yml").read_text()
    match = re.search(r"^default_environment:\s*[\"']?([\w.-]+)", text, re.MULTILINE)
    return match.group(1) if match else None


def add_project_arguments(parser: argparse.ArgumentParser) -> None:
    """--environment and --project-root, as every command that reads the project takes them."""
    parser.add_argument("--environment", help="Meltano environment (default: as `meltano run`)")
    parser.add_argument("--project-root", type=Path,
                        help="Meltano project (default: $MELTANO_PROJECT_ROOT or the nearest "
                             "meltano.yml upwards)")


def project_from_args(args: argparse.Namespace) -> tuple[Path, str | None]:
    """(project root, active environment) from add_project_arguments' options; MeltanoError
    or OSError when there is no readable project."""
    root = find_project_root(args.project_root)
    return root, active_environment(root, args.environment)


def meltano_executable() -> str:
    """The meltano next to this Python (the project venv), else the one on PATH."""
    sibling = Path(sys.executable).with_name("meltano")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("meltano")
    if not found:
        raise MeltanoError("meltano is not installed in this environment (pip install meltano)")
    return found


def meltano_command(environment: str | None, *args: str) -> list[str]:
    """`meltano [--environment=X] args...`."""
    command = [meltano_executable()]
    if environment:
        command.append(f"--environment={environment}")
    return [*command, *args]


def meltano_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a meltano child, plus `overrides` (plugin settings)."""
    return {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **(overrides or {})}


def run_meltano(project_root: Path, environment: str | None, args: list[str], *,
                what: str, timeout: float = 120,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run meltano to completion; MeltanoError with Meltano's last error line if it fails.

    The output may hold secrets (`config --unsafe`, `--dump=config`): callers parse it and
    never show it. Meltano's own error lines quote no setting values.
    """
    try:
        result = subprocess.run(meltano_command(environment, *args), cwd=project_root,
                                env=meltano_env(env), capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MeltanoError(f"`meltano {what}` did not finish in {timeout:g} s") from None
    if result.returncode != 0:
        # Meltano ends every failure with the same "Need help fixing this problem?" line.
        last = [line for line in result.stderr.splitlines()
                if line.strip() and "Need help fixing this problem" not in line][-1:] or ["?"]
        raise MeltanoError(f"`meltano {what}` failed (exit {result.returncode}): "
                           f"{last[0][:300]}", stderr=result.stderr)
    return result


def meltano_config(project_root: Path, plugin: str, environment: str | None
                   ) -> dict[str, Any] | None:
    """The plugin's resolved config (secrets included), or None if meltano.yml lacks the plugin.

    `meltano config --unsafe print` gives what the plugin will receive, without needing the
    plugin's own virtualenv. The output holds secrets: it is parsed here and never shown.
    """
    try:
        result = run_meltano(project_root, environment,
                             ["config", "--unsafe", "print", plugin, "--format=json"],
                             what=f"config print {plugin}")
    except MeltanoError as exc:
        if re.search(r"is not known to Meltano|cannot find plugin", exc.stderr, re.I):
            return None
        raise
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise MeltanoError(f"`meltano config print {plugin}` did not print JSON") from exc


def prepare_system_database(project_root: Path, environment: str | None) -> None:
    """Let one Meltano process create the project's system database before several start at
    once: two opening a new one race to create its tables ("table alembic_version already
    exists"), as a fresh install's first `check` or `plan` would."""
    run_meltano(project_root, environment, ["state", "list"], what="state list")


def read_plugin_configs(project_root: Path, environment: str | None, plugins: Iterable[str]
                        ) -> dict[str, dict[str, Any] | None]:
    """Every plugin's config, read in parallel (each `meltano` start costs most of a second)."""
    names = list(plugins)
    if len(names) > 1:
        prepare_system_database(project_root, environment)
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        results = list(pool.map(lambda name: meltano_config(project_root, name, environment),
                                names))
    return dict(zip(names, results, strict=True))


def as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def as_list(value: Any) -> list[str]:
    """A list setting as Meltano may hand it over: a list, or JSON / a comma list typed into an
    environment variable; items stripped, empty ones dropped."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else value.split(",")
    return [str(item).strip() for item in value or [] if str(item).strip()]
