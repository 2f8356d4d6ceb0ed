"""Where the ledger lives by default. Kept apart from the ledger itself so that reading
settings does not import SQLAlchemy (a third of a plugin's start-up when no ledger is used)."""

from __future__ import annotations

import os
from pathlib import Path

LEDGER_URL_ENV = "ML_CONNECTOR_LEDGER_URL"


def default_ledger_url() -> str:
    """``$ML_CONNECTOR_LEDGER_URL`` if set (one ledger for every plugin of a deployment), else
    `sqlite:///<MELTANO_PROJECT_ROOT or cwd>/.ml-connector/ledger.sqlite`; creates the dir."""
    if os.environ.get(LEDGER_URL_ENV):
        return os.environ[LEDGER_URL_ENV]
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path.cwd())
    directory = root / ".ml-connector"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(directory / 'ledger.sqlite').resolve()}"
