"""Root e2e tests: the shared harness (tests/e2e.py) on sys.path, and the fault-free baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e import SEQUENCE, Project, Snapshot, duplicates, reset_sandbox, snapshot  # noqa: E402

from mlc_sandbox.serve import Sandbox  # noqa: E402


@pytest.fixture(scope="session")
def baseline(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """What a fault-free master-data, invoices, invoices sequence leaves in both simulators.

    The demo data is deterministic (data seed 0), so one fault-free run per session is the
    baseline for every fault seed and crash point; the tests compare their end state with it.
    (That the fault-free result itself is right is checked field by field in
    test_master_data_pipeline.py and test_invoice_pipeline.py.)
    """
    reset_sandbox(sandbox)
    project = Project.create(sandbox, tmp_path_factory.mktemp("baseline"))
    for job in SEQUENCE:
        run = project.run(job, name=f"baseline-{job}")
        assert run.ok, run.output[-4000:]
    result = snapshot(sandbox)
    reset_sandbox(sandbox)
    assert duplicates(result) == []
    assert set(result.master_status.values()) == {"Success"}
    assert sum(len(copies) for copies in result.ap_invoices.values()) == 27
    assert all(invoice["responses"] for invoice in result.invoices.values())
    return result
