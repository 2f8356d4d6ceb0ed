"""Secrets at rest: the configuration files Meltano writes for every plugin it runs.

Meltano writes each plugin's configuration, passwords, client secrets and tokens included, to
``<system dir>/run/<plugin>/<tap|target|mapper>.<uuid>.config.json`` (``<system dir>`` is
``MELTANO_SYS_DIR_ROOT``, else the project's ``.meltano``), with the process's umask (0644
under the usual 022) in folders it creates 0755, and deletes the file when the run ends
normally. A killed run (SIGKILL, a reboot, a cancelled CI job) leaves it behind.

The rule (docs/decisions.md, "Secrets at rest"): after any run, killed or not, however it was
started, no file holding a secret is readable by another user.

- Every plugin, as the SDK parses ``--config`` (before the plugin reads anything else), makes
  each configuration file it is handed its owner's only (0600). When the file is one of
  Meltano's run files, it also makes the whole run folder private: ``run/`` and every plugin
  folder in it 0700, every configuration file in them 0600 (those a killed run left too), so
  the files Meltano writes there next are out of other users' reach from the moment they
  exist. :class:`PrivateConfigFiles` does it for the four plugins.
- ``ml-connector run`` makes the run folder private before Meltano writes anything into it,
  and removes the configuration files killed runs left, when no Meltano process of the
  system directory is alive (:func:`remove_stale_config_files`).

A symlink is never followed or changed (the run folder holds Meltano's ``bin`` link to its
own executable), nor is a file or folder of another user.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The name Meltano gives a plugin's generated configuration (``instance_uuid`` is a UUID).
MELTANO_CONFIG_FILE = re.compile(r"^(?:tap|target|mapper)\.[0-9a-fA-F-]{36}\.config\.json$")
RUN_FOLDER = "run"
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def _own(path: Path) -> os.stat_result | None:
    """The path's lstat if it is this user's file or folder (never a symlink), else None."""
    try:
        info = path.lstat()
    except OSError:
        return None
    me = os.geteuid() if hasattr(os, "geteuid") else info.st_uid  # Windows: no owners
    if stat.S_ISLNK(info.st_mode) or info.st_uid != me:
        return None
    return info


def _restrict(path: Path, mode: int) -> bool:
    """chmod `path` to `mode` when it is ours and more open than that; True if changed."""
    info = _own(path)
    if info is None or stat.S_IMODE(info.st_mode) & ~mode == 0:
        return False
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
        return True
    return False


def is_meltano_run_file(path: Path) -> bool:
    """``<system dir>/run/<plugin>/<tap|target|mapper>.<uuid>.config.json``."""
    return bool(MELTANO_CONFIG_FILE.match(path.name)) and path.parent.parent.name == RUN_FOLDER


def config_files(run_folder: Path) -> list[Path]:
    """Meltano's plugin configuration files in a run folder (``run/<plugin>/``), not following
    symlinks."""
    found: list[Path] = []
    try:
        plugins = [p for p in run_folder.iterdir() if _own(p) and p.is_dir()]
    except OSError:
        return found
    for plugin in plugins:
        with contextlib.suppress(OSError):
            found += [f for f in plugin.iterdir() if MELTANO_CONFIG_FILE.match(f.name)
                      and _own(f) is not None and f.is_file()]
    return sorted(found)


def make_private(run_folder: Path, *, create: bool = False) -> list[Path]:
    """Make Meltano's run folder its owner's only: the folder and each plugin folder in it
    0700, each configuration file 0600. `create`: make the folder (0700) when missing.
    Returns what was changed. Never raises: a path it may not change is left as it is."""
    if os.name != "posix":  # Windows: permissions are ACLs, inherited from the folder
        return []
    if create:
        with contextlib.suppress(OSError):
            run_folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    changed = [run_folder] if _restrict(run_folder, FOLDER_MODE) else []
    with contextlib.suppress(OSError):
        for child in run_folder.iterdir():
            if _own(child) is not None and child.is_dir() and _restrict(child, FOLDER_MODE):
                changed.append(child)
    changed += [path for path in config_files(run_folder) if _restrict(path, FILE_MODE)]
    return changed


def protect_config_files(values: Iterable[Any]) -> list[Path]:
    """What a plugin does with the ``--config`` values it is handed (paths, or ``ENV``):
    each file its owner's only (0600); a Meltano run file's whole run folder private
    (:func:`make_private`). Returns what was changed; never raises."""
    if os.name != "posix":
        return []
    changed: list[Path] = []
    for value in values or ():
        if not isinstance(value, str | os.PathLike) or str(value) == "ENV":
            continue
        path = Path(value)
        if _restrict(path, FILE_MODE):
            changed.append(path)
        if is_meltano_run_file(path):
            changed += make_private(path.parent.parent)
    return changed


class PrivateConfigFiles:
    """Mixin for a Singer SDK plugin (first in its bases): its configuration files are made
    private as soon as the SDK's command line parses ``--config``, before the plugin starts.

    The SDK (singer-sdk 0.54) reads the files in ``cb_config``, the ``--config`` option's
    callback, and hands ``__init__`` the merged dict, never the paths (core/tests/
    test_run_files.py guards that this is where the paths are).
    """

    @classmethod
    def cb_config(cls, ctx: Any, param: Any, value: tuple[str, ...]) -> Any:
        protect_config_files(value)
        return super().cb_config(ctx, param, value)  # type: ignore[misc]


# -- ml-connector run: config files left by killed runs ------------------------------------------

def _meltano_program(cmdline: list[str]) -> bool:
    """The command line of a `meltano` process (its console script, or python running it)."""
    return any(Path(arg).name == "meltano" for arg in cmdline[:2])


def _system_dir_of(process: Any) -> Path | None:
    """The Meltano system directory a `meltano` process uses, as Meltano finds it."""
    environ = process.environ()
    if environ.get("MELTANO_SYS_DIR_ROOT"):  # resolved from its working folder, as Meltano does
        return (Path(process.cwd()) / environ["MELTANO_SYS_DIR_ROOT"]).resolve()
    if environ.get("MELTANO_PROJECT_ROOT"):
        return (Path(environ["MELTANO_PROJECT_ROOT"]) / ".meltano").resolve()
    here = Path(process.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "meltano.yml").is_file():
            return folder / ".meltano"
    return None


def meltano_alive(system_dir: Path) -> bool | None:
    """Whether a `meltano` process of this user that uses `system_dir` is alive (a run, an
    invoke, `ml-connector plan` or `check`); None when this cannot be told (no psutil, a
    process that cannot be read): then nothing is removed."""
    if os.name != "posix":
        return None
    try:
        import psutil  # Meltano's own dependency
    except ImportError:
        return None
    target = system_dir.resolve()
    me = os.getpid()
    try:
        processes = list(psutil.process_iter(["pid", "uids", "cmdline"]))
    except psutil.Error:
        return None
    for process in processes:
        info = process.info
        if info["pid"] == me or not info.get("cmdline") or not info.get("uids"):
            continue
        if info["uids"].real != os.getuid() or not _meltano_program(info["cmdline"]):  # POSIX
            continue
        try:
            if _system_dir_of(process) in (target, None):
                return True
        except psutil.NoSuchProcess:
            continue
        except (psutil.Error, OSError):
            return None
    return False


def remove_stale_config_files(system_dir: Path) -> list[Path] | None:
    """Remove the plugin configuration files under ``<system_dir>/run/`` when no `meltano`
    process of this system directory is alive: then no run owns them (Meltano deletes its
    own at the end of a run, and a plugin reads its file only as it starts). Returns what was
    removed, or None when a Meltano process may be alive (nothing removed)."""
    # Listed first: a file listed exists already, so the Meltano that wrote it, if it is
    # still going, is alive when asked next.
    found = config_files(system_dir / RUN_FOLDER)
    if not found or meltano_alive(system_dir) is not False:
        return None if found else []
    removed = []
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed
