"""Fixtures: a fresh SQLite file per test, and `ledger_url` on both backends (`pg_url` is in
the root conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Spawned worker processes import helpers by module name; they inherit this sys.path.
sys.path.insert(0, str(Path(__file__).parent))

@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
