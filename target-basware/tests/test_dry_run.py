"""`dry_run: true`: every record gets the verdict a real run would reach; nothing is written.

Nothing means: no request to Basware at all (not even a token), no STATE on stdout (a bookmark
must not move past records never delivered), no run or entry in the ledger.
"""

from __future__ import annotations

from pathlib import Path

from ml_connector_core.dryrun import read_verdicts
from ml_connector_core.ledger import Ledger

MASTER_DATA = {"FIX-US01-FX30", "FIX-CA01-FX30", "FIX-6100100", "FIX-6100900", "FIX-6200200",
               "FIX-CC100", "FIX-CC200", "FIX-V100", "FIX-V200", "FIX-PO1", "FIX-PO2",
               "FIX-PO1-1000", "FIX-PO1-2000"}


def _dry_run(run_target, report: Path, fixture: str) -> dict[str, tuple[str, str | None]]:
    report.unlink(missing_ok=True)
    run = run_target(fixture, dry_run=True, dry_run_report=str(report))
    assert run.returncode == 0, run.stderr
    assert run.states == []
    assert "target-basware dry run: nothing written" in run.stderr
    return {v.key: (v.verdict, v.reason) for v in read_verdicts(report)}


def test_dry_run_says_create_update_skip_and_writes_nothing(run_target, basware,
                                                           ledger: Ledger, tmp_path: Path):
    report = tmp_path / "verdicts.jsonl"

    first = _dry_run(run_target, report, "master_data.singer")

    assert first == {**{key: ("create", None) for key in MASTER_DATA},
                     "FIX-PO2": ("skip", "closed in Sage and never sent to Basware")}
    assert basware.requests() == []
    assert ledger.report().runs == []

    assert run_target("master_data.singer").returncode == 0  # the real run delivers all
    basware.clear_log()

    changed = _dry_run(run_target, report, "changed_vendor.singer")

    assert changed == {"FIX-V100": ("update", None),
                       "FIX-V200": ("skip", "already delivered with this payload")}
    assert basware.requests() == []
    assert len(ledger.report().runs) == 1  # only the real run's
    assert ledger.latest_outcome("vendors", "FIX-V100").action == "created"
    assert basware.records("vendors")["FIX-V100"]["contacts"][0]["telephone"] != "5559990000"


def test_dry_run_rejects_what_a_real_run_rejects_with_the_same_reason(run_target, basware,
                                                                     ledger: Ledger,
                                                                     tmp_path: Path):
    verdicts = _dry_run(run_target, tmp_path / "verdicts.jsonl", "contract_violations.singer")

    assert verdicts["CV-V301"] == ("reject", "field 'name': must be string (got None)")
    assert verdicts["CV-PO1-2000"] == ("reject", "field 'quantity': must be number (got 'ten')")
    assert verdicts["CV-V302"][0] == verdicts["CV-V303"][0] == "reject"
    assert basware.requests() == []

    real = run_target("contract_violations.singer")

    assert real.returncode == 0, real.stderr
    for key, (verdict, reason) in verdicts.items():
        latest = ledger.latest_outcome(
            next(e.stream for e in ledger.trace(key)), key)
        assert latest is not None
        if verdict == "reject":
            assert (latest.action, latest.error) == ("rejected", reason), key
        else:
            assert latest.action == "created", key
