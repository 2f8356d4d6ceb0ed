"""Both pipelines under faults on both simulators, run again until they succeed, end exactly
where a fault-free run ends.

Per seed (chaos_faults in e2e.py, a pure function of the seed): random 429 (Retry-After),
500, 503, dropped connections, stalls beyond every plugin's read timeout, and "processed, the
answer lost" (drop_after, stall_after) on both Sage 300 and Basware; Basware tokens expiring
every few calls; one fault of every kind at seed-chosen requests; faults on the writes that
exactly-once depends on (Sage's batch POST, Basware's bulk imports, acknowledgements and
transfer responses); and an outage long enough to exhaust the retry policy, so a run fails
and is run again. master-data, invoices and the answering invoices run are each repeated
until they succeed (a scheduler would), and the simulators must then hold what the
fault-free baseline holds: the same Basware records and import outcomes, the same AP invoices
in Sage (none twice, none missing), every Basware invoice answered once, and the same
failures in the ledger (every record Basware refused rejected there, none hidden).

The sequence of faults is deterministic per seed; exactly which request meets which fault
can vary slightly between runs (Basware's requestStatus polling depends on timing).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import (
    FAULT_KINDS,
    SEQUENCE,
    Project,
    Snapshot,
    chaos_env,
    chaos_faults,
    differences,
    injected_faults,
    outputs,
    planted_secrets,
    secrets_in,
    set_faults,
    snapshot,
)

from mlc_sandbox.serve import Sandbox

SEEDS = [1, 2, 3]
#: The lightest rate profile keeps CI short; the scheduled faults still make every kind fire
#: on both systems. bench/soak.py runs the heavier profiles over many seeds.
PROFILE = "light"
MAX_ATTEMPTS = 8  # per job; a job that needs more is a finding, not bad luck


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_ends_where_a_fault_free_run_ends(seed: int, fresh_sandbox: Sandbox,
                                                tmp_path: Path, baseline: Snapshot) -> None:
    sage_faults, basware_faults = chaos_faults(seed, PROFILE)
    set_faults(fresh_sandbox, sage_faults, basware_faults)
    project = Project.create(fresh_sandbox, tmp_path, chaos_env())

    for job in SEQUENCE:
        project.run_until_success(job, MAX_ATTEMPTS)

    fired = injected_faults(fresh_sandbox)
    set_faults(fresh_sandbox, None, None)
    for system, counts in fired.items():  # every kind really fired, on both systems
        assert all(counts[kind] >= 1 for kind in FAULT_KINDS), (system, counts)
    # Stalls outlasted the clients' read timeouts on both systems (not just closed sockets).
    logs = "".join(run.output for run in project.runs)
    for server in (fresh_sandbox.sage300, fresh_sandbox.basware):
        assert f"port={server.port}): Read timed out" in logs
    # The outage failed a run, loudly (non-zero exit), and the next run recovered.
    assert any(not run.ok for run in project.runs), \
        [(run.name, run.returncode) for run in project.runs]

    assert differences(baseline, snapshot(fresh_sandbox, project.ledger_url)) == []
    assert secrets_in(outputs(project), planted_secrets(fresh_sandbox)) == []
