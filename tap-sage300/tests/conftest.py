"""Fixtures for tap-sage300 tests: the Sage 300 simulator over HTTP (see the test kit)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tap_sage300_testkit import SageSandbox  # noqa: E402


@pytest.fixture
def sage(fresh_sandbox: Any, tmp_path: Path) -> SageSandbox:
    """The Sage 300 simulator, reseeded with the demo data, faults off, request log empty."""
    return SageSandbox(fresh_sandbox.sage300, tmp_path)
