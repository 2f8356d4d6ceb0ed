"""RunKeys: the on-disk key sets the targets keep per run."""

from __future__ import annotations

import pytest

from ml_connector_core.run_keys import RunKeys


def test_keys_keep_their_first_value_and_type() -> None:
    keys = RunKeys("sources", "documents")
    try:
        keys.add("sources", "INV-1", 7)
        keys.add("sources", "INV-1", 9)  # a repeat keeps the first value
        keys.add("documents", "INV-1", "other kind, other table")
        keys.add_all("sources", ["INV-2", "INV-1"])
        assert keys.first("sources", "INV-1") == 7
        assert keys.first("documents", "INV-1") == "other kind, other table"
        assert keys.has("sources", "INV-2") and keys.first("sources", "INV-2") is None
        assert not keys.has("documents", "INV-2")
        assert keys.first("sources", "INV-3") is None
    finally:
        keys.close()


def test_many_keys_stay_exact() -> None:
    keys = RunKeys("references")
    try:
        keys.add_all("references", (f"vendors:SAMINC/V{n:06d}" for n in range(50_000)))
        assert all(keys.has("references", f"vendors:SAMINC/V{n:06d}") for n in range(0, 50_000, 97))
        assert not keys.has("references", "vendors:SAMINC/V050000")
        assert not keys.has("references", "vendors:SAMLTD/V000001")
    finally:
        keys.close()


def test_a_kind_is_a_plain_name_and_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="lowercase names"):
        RunKeys("sources; DROP TABLE x")
    keys = RunKeys("sources")
    try:
        with pytest.raises(KeyError, match="unknown kind of key 'documents'"):
            keys.has("documents", "x")
    finally:
        keys.close()
