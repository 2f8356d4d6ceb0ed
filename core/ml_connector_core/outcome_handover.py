"""How target-sage300 hands each invoice's outcome to tap-basware, which answers it to Basware.

target-sage300 records every invoice's outcome in the audit ledger, as the `reply` of that
invoice's entry, and names its ledger run in the STATE it emits:
``{"transfer_outcome_runs": {"<ledger run id>": 0}}``. Meltano hands that state to tap-basware
on the next run, which answers the run's replies a page at a time (``Ledger.replies``), keeps
the id of the last entry answered as the run's cursor in its state, and drops the run from the
state once every reply is answered.

So the STATE stays a few hundred bytes whatever the size of a run, and neither plugin holds a
run's outcomes in memory. Both plugins must use one ledger (by default the Meltano project's
``.ml-connector/ledger.sqlite``). The state also names the ledger each run is in
(``transfer_outcome_ledgers``: {run id: the ledger's identity, ``restore.ledger_identity``}),
so when tap-basware's ledger does not know a run the state names, it can tell why:

- the run is in an older copy of this same ledger (restored from a backup taken before the
  run): its outcomes are lost with the newer ledger, but the invoices they answer are still
  ``TransferInProgress`` in Basware, read again by this same run, found in Sage 300 by their
  ``BWINVID`` (never created twice) and answered. tap-basware drops the run from the state,
  says so, and goes on (:func:`recoverable_runs`);
- otherwise (another ledger, or a state from a release that did not name the ledger) it
  fails loudly, keeping the state, naming both causes and the command that clears the
  state (:func:`missing_runs_message`).

Releases before ledger schema v4 put the outcomes themselves in the state
(``transfer_outcomes``: ``{invoice_id: outcome}``); tap-basware still answers those, and
target-sage300 carries them over until it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from ml_connector_core.ledger import Entry, Ledger

#: {target-sage300 ledger run id: id of the last ledger entry already answered (0: none)}.
RUNS_KEY = "transfer_outcome_runs"
#: {target-sage300 ledger run id: identity of the ledger that holds it}.
LEDGERS_KEY = "transfer_outcome_ledgers"
#: {invoice id: outcome}: the outcomes themselves, as releases before ledger v4 left them.
INLINE_KEY = "transfer_outcomes"
#: Replies answered per page; the cursor moves (and the state goes out) after each page.
PAGE = 100


def pending_runs(state: Mapping[str, Any]) -> dict[str, int]:
    """The runs a state names, with their cursors. A cursor that is not a whole number counts
    as 0: answering again is safe (Basware refuses a second answer), skipping is not."""
    runs = state.get(RUNS_KEY)
    if not isinstance(runs, Mapping):
        return {}
    return {str(run_id): cursor if isinstance(cursor, int) and not isinstance(cursor, bool)
            and cursor >= 0 else 0 for run_id, cursor in runs.items()}


def run_ledgers(state: Mapping[str, Any]) -> dict[str, str]:
    """The ledger identity the state gives for each run it names (runs named by an older
    release have none)."""
    named = state.get(LEDGERS_KEY)
    if not isinstance(named, Mapping):
        return {}
    return {str(run_id): identity for run_id, identity in named.items()
            if isinstance(identity, str)}


def with_run(state: dict[str, Any], run_id: str, ledger: Ledger | None = None
             ) -> dict[str, Any]:
    """The state, also naming `run_id` (from its first reply on) and the ledger that holds
    it, keeping what it names."""
    from ml_connector_core.restore import ledger_identity

    runs = pending_runs(state)
    runs.setdefault(run_id, 0)
    named = {**state, RUNS_KEY: runs}
    identity = ledger_identity(ledger) if ledger is not None else None
    if identity is not None:
        named[LEDGERS_KEY] = {**run_ledgers(state), run_id: identity}
    return named


def without_runs(state: Mapping[str, Any], run_ids: Iterable[str]) -> dict[str, Any]:
    """The state no longer naming `run_ids` (nor their ledgers); empty maps left out."""
    dropped = set(run_ids)
    result = dict(state)
    for key, value in ((RUNS_KEY, pending_runs(state)), (LEDGERS_KEY, run_ledgers(state))):
        kept = {run_id: v for run_id, v in value.items() if run_id not in dropped}
        if kept:
            result[key] = kept
        else:
            result.pop(key, None)
    return result


def pending_replies(ledger: Ledger, runs: Mapping[str, int]) -> Iterator[Entry]:
    """Every reply the named runs still owe, run by run, oldest first (read a page at a
    time). A run the ledger does not know yields nothing: see `missing_runs`."""
    for run_id, cursor in runs.items():
        after = cursor
        while page := ledger.replies(run_id, after=after, limit=PAGE):
            yield from page
            after = page[-1].id or after


def missing_runs(ledger: Ledger, runs: Mapping[str, int]) -> list[str]:
    """The named runs this ledger does not know: the two plugins' ledgers differ."""
    return [run_id for run_id in runs if ledger.run(run_id) is None]


def recoverable_runs(ledger: Ledger, missing: Iterable[str], state: Mapping[str, Any]
                     ) -> list[str]:
    """Of the named runs this ledger lacks, those the state says are in this very ledger:
    it is an older copy of it (restored from a backup taken before them)."""
    from ml_connector_core.restore import ledger_identity

    identity = ledger_identity(ledger)
    named = run_ledgers(state)
    return [run_id for run_id in missing
            if identity is not None and named.get(run_id) == identity]


def invoices_state_id() -> str:
    """The invoices job's Meltano state id as `meltano run` names it for this plugin run
    (`<environment>:<extractor>-to-target-sage300`)."""
    from ml_connector_core.restore import pipeline_state_id

    return pipeline_state_id("tap-basware", "target-sage300")


def clear_state_command(state_id: str) -> str:
    """The command that clears a job's state, in the state id's environment."""
    environment, _, _ = state_id.rpartition(":")
    where = f" --environment={environment}" if environment else ""
    return f"meltano{where} state clear --force {state_id}"


def _shown(ledger_url: str) -> str:
    parts = urlsplit(ledger_url)
    if parts.password:  # the message goes to logs and exceptions: never the password
        ledger_url = urlunsplit(parts._replace(
            netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return ledger_url


def lost_outcomes_message(lost: list[str], ledger_url: str, state_id: str) -> str:
    """What tap-basware says when it drops runs an older copy of its ledger lacks."""
    return (f"The ledger {_shown(ledger_url)} is older than Meltano's state {state_id}: it "
            f"does not hold target-sage300 ledger run(s) {', '.join(lost)}, which the state "
            "names, so their transfer outcomes are lost with the newer ledger (it was restored "
            "from a backup taken before them?). Nothing is lost in Basware: the invoices "
            "still waiting for those outcomes are TransferInProgress, this run reads them "
            "again, target-sage300 finds each one already in Sage 300 by BWINVID (none is "
            "created twice) and they are answered. The runs are dropped from the state.")


def missing_runs_message(missing: list[str], ledger_url: str, state_id: str | None = None,
                         elsewhere: Mapping[str, str] | None = None) -> str:
    """Why tap-basware stops: the state names runs this ledger does not hold and does not
    say they are in an older copy of it. `elsewhere`: the ledger identity the state gives."""
    state_id = state_id or invoices_state_id()
    named = sorted(set((elsewhere or {}).values()))
    where = (f"the state says they are in the ledger created {', '.join(named)}"
             if named else "the state does not say which ledger holds them")
    return (f"The state names target-sage300 ledger run(s) {', '.join(missing)}, which the "
            f"ledger {_shown(ledger_url)} does not hold ({where}). Either tap-basware and "
            "target-sage300 use different ledgers: give both the same ledger_url or "
            "ML_CONNECTOR_LEDGER_URL, and their transfer outcomes are answered on the next "
            "run. Or this ledger replaced the one that holds them (restored from another "
            "ledger's backup, or a new one after the old was lost): then clear the job's "
            f"state with `{clear_state_command(state_id)}`; that is safe: the invoices "
            "waiting for those outcomes are TransferInProgress in Basware, the next run "
            "reads them again, target-sage300 finds each one in Sage 300 by BWINVID (none "
            "is created twice) and they are answered. Until then the outcomes stay in the "
            "state.")
