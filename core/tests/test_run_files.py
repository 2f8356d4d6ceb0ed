"""Secrets at rest (ml_connector_core.run_files): the configuration files Meltano writes for
each plugin run are made their owner's only by the plugin, and removed by `ml-connector run`
once no Meltano process of the system directory is alive.

The SDK behaviour the plugins rely on is guarded here with a minimal SDK tap and target: the
SDK's command line reads `--config` in the option's callback `cb_config` (the paths never
reach `__init__`), so that is where the mixin sees them. The four plugins through Meltano,
killed or not: tests/test_secrets_at_rest.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from singer_sdk import Stream, Tap, Target
from singer_sdk import typing as th
from singer_sdk.sinks import RecordSink

from ml_connector_core.run_files import (
    PrivateConfigFiles,
    make_private,
    meltano_alive,
    protect_config_files,
    remove_stale_config_files,
)

SECRET = "pl4nted-s3cret"  # noqa: S105 - a test value


class _Sink(RecordSink):
    def process_record(self, record: dict, context: dict) -> None:
        return None


class _Stream(Stream):
    name = "things"
    schema = th.PropertiesList(th.Property("id", th.StringType)).to_dict()

    def get_records(self, context: Any) -> Iterator[dict[str, Any]]:
        yield {"id": "1"}


class SeenConfig:
    """What __init__ was handed, per class."""

    configs: list[Any] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        SeenConfig.configs.append(kwargs.get("config"))
        super().__init__(*args, **kwargs)


class GuardTap(PrivateConfigFiles, SeenConfig, Tap):
    name = "tap-guard"
    config_jsonschema = th.PropertiesList(th.Property("password", th.StringType,
                                                      secret=True)).to_dict()

    def discover_streams(self) -> list[Stream]:
        return [_Stream(self)]


class GuardTarget(PrivateConfigFiles, SeenConfig, Target):
    name = "target-guard"
    default_sink_class = _Sink
    config_jsonschema = th.PropertiesList(th.Property("password", th.StringType,
                                                      secret=True)).to_dict()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def meltano_run_folder(root: Path, plugin: str) -> tuple[Path, Path]:
    """A run folder as Meltano leaves it under umask 022: folders 0755, the plugin's config
    file 0644 with a secret in it. Returns (the run folder, the config file)."""
    run = root / "run"
    folder = run / plugin
    folder.mkdir(parents=True)
    for path in (root, run, folder):
        path.chmod(0o755)
    kind = "tap" if plugin.startswith("tap") else "target"
    config = folder / f"{kind}.{uuid.uuid4()}.config.json"
    config.write_text(json.dumps({"password": SECRET}))
    config.chmod(0o644)
    return run, config


@pytest.mark.parametrize("plugin", [GuardTap, GuardTarget])
def test_the_sdk_reads_config_paths_in_cb_config(plugin: type, tmp_path: Path) -> None:
    """The SDK behaviour PrivateConfigFiles relies on: `--config` paths reach the option's
    callback `cb_config` (and __init__ gets the merged dict, not the paths)."""
    option = next(p for p in plugin.cli.params if p.name == "config")
    assert option.callback == plugin.cb_config
    run, config = meltano_run_folder(tmp_path, plugin.name)
    SeenConfig.configs.clear()

    args = ["--config", str(config), *(["--discover"] if plugin is GuardTap else [])]
    result = CliRunner().invoke(plugin.cli, args, input="", catch_exceptions=False)

    assert result.exit_code == 0, result.output
    (handed,) = SeenConfig.configs
    assert isinstance(handed, dict) and handed["password"] == SECRET
    assert mode(config) == 0o600
    assert mode(config.parent) == mode(run) == 0o700
    assert mode(tmp_path) == 0o755  # above the run folder: not the plugin's to change


def test_a_plugin_makes_the_whole_run_folder_private(tmp_path: Path) -> None:
    run, mine = meltano_run_folder(tmp_path, "tap-basware")
    _, left = meltano_run_folder(tmp_path / "other", "target-sage300")
    left_by_a_kill = run / "target-sage300"
    left.parent.rename(left_by_a_kill)
    left = left_by_a_kill / left.name
    killed_earlier = mine.with_name(f"tap.{uuid.uuid4()}.config.json")
    killed_earlier.write_text("{}")
    killed_earlier.chmod(0o644)
    catalog = mine.with_name("tap.properties.json")  # no secret: left as Meltano made it
    catalog.write_text("{}")
    catalog.chmod(0o644)
    outside = tmp_path / "meltano-executable"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (run / "bin").symlink_to(outside)  # Meltano's own link: never followed

    changed = protect_config_files([str(mine), "ENV"])

    assert {mode(p) for p in (mine, killed_earlier, left)} == {0o600}
    assert {mode(p) for p in (run, mine.parent, left.parent)} == {0o700}
    assert mode(catalog) == 0o644
    assert mode(outside) == 0o755
    assert set(changed) == {mine, killed_earlier, left, run, mine.parent, left.parent}
    assert protect_config_files([str(mine)]) == []  # nothing left to change


def test_a_config_file_outside_meltano_is_made_private_alone(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    config = folder / "config.json"
    config.write_text("{}")
    config.chmod(0o644)

    assert protect_config_files([config, tmp_path / "missing.json"]) == [config]

    assert mode(config) == 0o600
    assert mode(folder) == 0o755


def test_make_private_creates_the_run_folder_private(tmp_path: Path) -> None:
    run = tmp_path / "sys" / "run"

    make_private(run, create=True)

    assert mode(run) == 0o700


@pytest.fixture
def fake_meltano(tmp_path: Path) -> Iterator[Any]:
    """Start a process that looks like `meltano` (its script is named meltano) with an
    environment of its own."""
    script = tmp_path / "bin" / "meltano"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nsleep 300\n")
    script.chmod(0o700)
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["/bin/sh", str(script)], cwd=cwd,
                                   env={"PATH": os.environ["PATH"], **env})
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def _wait_until_visible(system_dir: Path) -> None:
    """psutil sees a new process once it runs; a bound, never a pass/fail criterion."""
    deadline = time.monotonic() + 30
    while meltano_alive(system_dir) is not True and time.monotonic() < deadline:
        time.sleep(0.05)


def test_stale_config_files_are_removed_only_when_no_meltano_uses_the_system_dir(
        tmp_path: Path, fake_meltano: Any) -> None:
    system_dir = tmp_path / "sys"
    run, config = meltano_run_folder(system_dir, "tap-basware")
    other_project = tmp_path / "other"
    other_project.mkdir()
    (other_project / "meltano.yml").write_text("project_id: other\n")

    # A Meltano of another system directory (its project's .meltano) changes nothing.
    fake_meltano({}, other_project)
    # One of this system directory, named by MELTANO_SYS_DIR_ROOT relative to its folder.
    ours = fake_meltano({"MELTANO_SYS_DIR_ROOT": "sys"}, tmp_path)
    _wait_until_visible(system_dir)

    assert meltano_alive(system_dir) is True
    assert remove_stale_config_files(system_dir) is None
    assert config.exists()

    ours.kill()
    ours.wait()

    assert meltano_alive(system_dir) is False
    assert remove_stale_config_files(system_dir) == [config]
    assert not config.exists()
    assert (run / "tap-basware").is_dir()
    assert remove_stale_config_files(system_dir) == []


def test_a_meltano_found_by_its_project_folder(tmp_path: Path, fake_meltano: Any) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "meltano.yml").write_text("project_id: p\n")
    meltano_run_folder(project / ".meltano", "target-basware")
    fake_meltano({}, project / "sub")  # Meltano finds the project upwards from its folder
    _wait_until_visible(project / ".meltano")

    assert remove_stale_config_files(project / ".meltano") is None


def test_this_python_is_not_a_meltano(tmp_path: Path) -> None:
    assert Path(sys.executable).name != "meltano"
    assert meltano_alive(tmp_path) is False
