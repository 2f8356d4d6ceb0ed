"""How target-sage300 hands each invoice's outcome to tap-basware, which answers it to Basware.

target-sage300 records every invoice's outcome in the audit ledger, as the `reply` of that
invoice's entry, and names its ledger run in the STATE it emits:
``{"transfer_outcome_runs": {"<ledger run id>": 0}}``. Meltano hands that state to tap-basware
on the next run, which answers the run's replies a page at a time (``Ledger.replies``), keeps
the id of the last entry answered as the run's cursor in its state, and drops the run from the
state once every reply is answered.

So the STATE stays a few hundred bytes whatever the size of a run, and neither plugin holds a
run's outcomes in memory. Both plugins must use one ledger (by default the Meltano project's
``.ml-connector/ledger.sqlite``); tap-basware fails loudly, keeping the state, if its ledger
does not know a run the state names.

Releases before ledger schema v4 put the outcomes themselves in the state
(``transfer_outcomes``: ``{invoice_id: outcome}``); tap-basware still answers those, and
target-sage300 carries them over until it does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from ml_connector_core.ledger import Entry, Ledger

#: {target-sage300 ledger run id: id of the last ledger entry already answered (0: none)}.
RUNS_KEY = "transfer_outcome_runs"
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


def with_run(state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The state, also naming `run_id` (from its first reply on), keeping what it names."""
    runs = pending_runs(state)
    runs.setdefault(run_id, 0)
    return {**state, RUNS_KEY: runs}


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


def missing_runs_message(missing: list[str], ledger_url: str) -> str:
    parts = urlsplit(ledger_url)
    if parts.password:  # the message goes to logs and exceptions: never the password
        ledger_url = urlunsplit(parts._replace(
            netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return (f"The state names target-sage300 ledger run(s) {', '.join(missing)}, which the "
            f"ledger {ledger_url} does not hold: tap-basware and target-sage300 must use one "
            f"ledger (ledger_url or ML_CONNECTOR_LEDGER_URL the same for both). Their transfer "
            f"outcomes stay in the state until then.")
