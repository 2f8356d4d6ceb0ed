"""`dry_run: true`: each invoice gets the verdict a real run would reach (create, skip as
already there, reject with the reason), from the same look-ups; nothing is written.

Nothing means: only GETs reach Sage 300, no STATE is emitted (no bookmark moves and no
transfer outcome goes back to Basware), no run or entry lands in the ledger.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests
from target_sage300_testkit import (
    SCHEMA_MESSAGE,
    invoice,
    record_message,
    run_target,
    sage_config,
    sage_requests,
    singer_lines,
)

from ml_connector_core.dryrun import read_verdicts
from ml_connector_core.ledger import Ledger
from mlc_sandbox.serve import Sandbox

GOOD, UNKNOWN_GL, NO_VENDOR, LATER = (f"d{n}{'0' * 31}" for n in range(1, 5))
UNKNOWN_GL_REASON = "GL account 6999-999 does not exist in Sage 300 company SAMINC"


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def _dry_run(sandbox: Sandbox, tmp_path: Path, messages: str) -> dict[str, tuple[str, str]]:
    report = tmp_path / "verdicts.jsonl"
    report.unlink(missing_ok=True)
    since = requests.get(f"{sandbox.sage300.base_url}/_sandbox/requests",
                         timeout=60).json()["last_seq"]
    run = run_target(sage_config(sandbox, tmp_path, dry_run=True,
                                 dry_run_report=str(report)), messages)
    assert run.error is None
    assert run.states == []
    writes = [r for r in sage_requests(sandbox, since) if r["method"] != "GET"]
    assert writes == []
    return {v.key: (v.verdict, v.reason or "") for v in read_verdicts(report)}


def test_dry_run_gives_the_real_runs_verdicts_without_writing(fresh_sandbox: Sandbox,
                                                             tmp_path: Path) -> None:
    first = singer_lines(
        SCHEMA_MESSAGE,
        record_message(invoice(GOOD, "DRY-1")),
        record_message(invoice(UNKNOWN_GL, "DRY-2", gl_account="6999-999")),
        record_message(invoice(NO_VENDOR, "DRY-3", vendor=None)),
        {"type": "STATE", "value": {"bookmarks": {"accounting_documents": {"n": 3}}}},
    )

    verdicts = _dry_run(fresh_sandbox, tmp_path, first)

    assert verdicts[GOOD] == ("create", "")
    assert verdicts[UNKNOWN_GL] == ("reject", UNKNOWN_GL_REASON)
    assert verdicts[NO_VENDOR][0] == "reject" and "vendor_number" in verdicts[NO_VENDOR][1]
    with Ledger.open(sage_config(fresh_sandbox, tmp_path)["ledger_url"]) as ledger:
        assert ledger.report().runs == []

    # The real run agrees, record by record, and creates the good invoice.
    real = run_target(sage_config(fresh_sandbox, tmp_path), first)
    assert real.error is None
    assert real.outcomes[GOOD]["success"] is True
    assert real.outcomes[UNKNOWN_GL] == {**real.outcomes[UNKNOWN_GL], "success": False,
                                         "message": UNKNOWN_GL_REASON}
    assert real.outcomes[NO_VENDOR]["success"] is False

    # Next time the same invoice is already there; a new one would be created.
    again = _dry_run(fresh_sandbox, tmp_path, singer_lines(
        SCHEMA_MESSAGE, record_message(invoice(GOOD, "DRY-1")),
        record_message(invoice(LATER, "DRY-4"))))

    assert again[GOOD][0] == "skip" and again[GOOD][1].startswith("Already in Sage 300")
    assert again[LATER] == ("create", "")
