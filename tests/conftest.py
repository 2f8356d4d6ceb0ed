"""Root e2e tests: the shared harness (tests/e2e.py) on sys.path, and the fault-free baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e import (  # noqa: E402
    SEQUENCE,
    Project,
    Snapshot,
    duplicates,
    hidden_rejections,
    rejections,
    reset_sandbox,
    snapshot,
)

from mlc_sandbox.data import P2P_REFUSALS  # noqa: E402
from mlc_sandbox.serve import Sandbox  # noqa: E402


@pytest.fixture(scope="session")
def baseline(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """What a fault-free master-data, invoices, invoices sequence leaves in both simulators.

    The demo data is deterministic (data seed 0), so one fault-free run per session is the
    baseline for every fault seed and crash point; the tests compare their end state with it.
    (That the fault-free result itself is right is checked field by field in
    test_master_data_pipeline.py and test_invoice_pipeline.py.) It includes the ledger's
    failures: the demo's records Basware's P2P refuses, rejected with its reasons, and the
    invoice coded to a GL account Sage does not have.
    """
    reset_sandbox(sandbox)
    project = Project.create(sandbox, tmp_path_factory.mktemp("baseline"))
    for job in SEQUENCE:
        run = project.run(job, name=f"baseline-{job}")
        assert run.ok, run.output[-4000:]
    result = snapshot(sandbox, project.ledger_url)
    reset_sandbox(sandbox)
    assert duplicates(result) == [] and hidden_rejections(result) == []
    assert {key for key, status in result.master_status.items() if status != "Success"} \
        == set(P2P_REFUSALS)
    failed = rejections(result)
    assert {key for plugin, _, key in failed if plugin == "target-basware"} == {
        code for _, code in P2P_REFUSALS}
    # ...and the invoice coded to a GL account Sage does not have.
    assert [plugin for plugin, _, _ in failed if plugin != "target-basware"] == [
        "target-sage300"]
    assert sum(len(copies) for copies in result.ap_invoices.values()) == 27
    assert all(invoice["responses"] for invoice in result.invoices.values())
    return result
