"""Restores: Meltano's state and the ledger restored from backups of different times.

The two are kept apart (Meltano's system database or state backend; the ledger), so a restore
can leave one older than the other:

- **the ledger older than the state**: the state names runs, outcomes or deliveries the
  ledger no longer holds;
- **the state older than the ledger**: the state is handed to a run although a newer state
  of the same pipeline was handed to an earlier run;
- **another ledger**: the state was written by runs that used another ledger (a new, empty
  one after the old was lost, a copy of another, or a changed ``ledger_url``).

Each state a pipeline's checking plugin emits carries a **mark** (``ledger_mark``): the
identity of its ledger (when that ledger was created, from its ``ledger_schema_version``
table: a copy restored from a backup keeps it, another ledger has its own), the ledger run
that wrote the state, and a lineage (a random id, kept from state to state) with a sequence
number that each run increases. Each run records in the ledger the lineage and number of
the state it was handed (stream ``state_marks``), so the next run can tell:

- the run that wrote the state is not in the ledger (same identity): the ledger is older;
- a run was already handed a later state of the same lineage: the state is older; the run
  starts a new lineage, so the runs after it do not say it again;
- another identity: another ledger.

tap-basware checks the invoices job's state (and, from the transfer outcome runs the state
names, recovers by itself: ``outcome_handover``), target-basware the master-data job's
(docs/operations.md, "Restore from backup").
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ml_connector_core.ledger._ledger import MARKS_STREAM  # `read` entries, never an outcome

if TYPE_CHECKING:
    from ml_connector_core.ledger import Ledger

#: STATE key: where the state comes from (see the module docstring).
MARK_KEY = "ledger_mark"
LEDGER_OLDER = "ledger older than the state"
STATE_OLDER = "state older than the ledger"
OTHER_LEDGER = "another ledger"
_SEQ_DIGITS = 12  # the sequence number as target_key text, zero-padded: ordered as text


def ledger_identity(ledger: Ledger) -> str | None:
    """When this ledger was created (its first schema version's time, UTC, to the
    microsecond): what a restored copy keeps and another ledger does not share."""
    from ml_connector_core.ledger._schema import schema_version

    with ledger.engine.connect() as conn:
        created = conn.execute(select(schema_version.c.applied_at)
                               .order_by(schema_version.c.version).limit(1)).scalar()
    if created is None:
        return None
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    return created.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Mark:
    """Where a state comes from: its ledger, the ledger run that wrote it, its lineage and
    sequence number."""

    ledger: str | None
    run: str | None
    lineage: str
    seq: int

    def as_state(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "run": self.run, "lineage": self.lineage,
                "seq": self.seq}


def read_mark(state: Mapping[str, Any] | None) -> Mark | None:
    """The mark of a state, None when it has none (or not a well-formed one)."""
    raw = state.get(MARK_KEY) if isinstance(state, Mapping) else None
    if not isinstance(raw, Mapping):
        return None
    lineage, seq = raw.get("lineage"), raw.get("seq")
    if not isinstance(lineage, str) or not lineage or isinstance(seq, bool) \
            or not isinstance(seq, int) or seq < 0:
        return None
    ledger, run = raw.get("ledger"), raw.get("run")
    return Mark(ledger if isinstance(ledger, str) else None,
                run if isinstance(run, str) else None, lineage, seq)


def stamped(state: Mapping[str, Any], mark: Mark | None) -> dict[str, Any]:
    """The state with the mark of the run that emits it."""
    return {**state, MARK_KEY: mark.as_state()} if mark is not None else dict(state)


@dataclass(frozen=True)
class Finding:
    """What a run found out about the state it was handed and its ledger."""

    kind: str  # LEDGER_OLDER, STATE_OLDER or OTHER_LEDGER
    handed: Mark
    identity: str | None
    later_seq: int | None = None  # STATE_OLDER: the latest number already handed

    def describe(self, ledger_label: str, state_id: str) -> str:
        """One paragraph for the log: what happened, in the words an operator knows."""
        if self.kind == LEDGER_OLDER:
            return (f"The ledger {ledger_label} is older than Meltano's state {state_id}: "
                    f"the state was written by ledger run {self.handed.run}, which this "
                    "ledger does not hold (the ledger was restored from a backup taken "
                    "before that run?)")
        if self.kind == STATE_OLDER:
            return (f"Meltano's state {state_id} is older than the ledger {ledger_label}: "
                    f"this run was handed state number {self.handed.seq} of its lineage, "
                    f"and an earlier run was handed number {self.later_seq} already "
                    "(Meltano's system database or state backend was restored from an older "
                    "backup, or the state was set by hand?)")
        return (f"Meltano's state {state_id} was written by runs that used another ledger "
                f"(created {self.handed.ledger or 'at an unknown time'}) than {ledger_label} "
                f"(created {self.identity or 'just now'}): the ledger was replaced (a new "
                "one after the old was lost, a copy of another) or ledger_url changed")


def check_state(ledger: Ledger, run_id: str, state: Mapping[str, Any] | None
                ) -> tuple[Mark, Finding | None]:
    """Compare the state handed to run `run_id` with the ledger, record the state's mark
    as handed to this run, and return the mark the states this run emits carry, with what
    was found (None: the state and the ledger agree, or the state has no mark yet)."""
    from ml_connector_core.ledger import Action, Entry
    from ml_connector_core.ledger._schema import entries

    identity = ledger_identity(ledger)
    handed = read_mark(state)
    finding: Finding | None = None
    if handed is not None:
        if handed.ledger is not None and handed.ledger != identity:
            finding = Finding(OTHER_LEDGER, handed, identity)
        elif handed.run is not None and ledger.run(handed.run) is None:
            finding = Finding(LEDGER_OLDER, handed, identity)
        else:
            c = entries.c
            with ledger.engine.connect() as conn:
                later = conn.execute(
                    select(c.target_key).where(
                        c.stream == MARKS_STREAM, c.source_key == handed.lineage,
                        c.target_key > _seq_text(handed.seq))
                    .order_by(c.target_key.desc()).limit(1)).scalar()
            if later is not None:
                finding = Finding(STATE_OLDER, handed, identity, later_seq=int(later))
    if handed is None or (finding is not None and finding.kind == STATE_OLDER):
        lineage, seq = uuid.uuid4().hex, 0  # a new lineage: the runs after it compare to it
    else:
        lineage, seq = handed.lineage, handed.seq
    ledger.record(Entry(run_id=run_id, stream=MARKS_STREAM, source_key=lineage,
                        action=Action.READ, target_key=_seq_text(seq)))
    return Mark(identity, run_id, lineage, seq + 1), finding


def pipeline_state_id(extractor: str, loader: str) -> str:
    """The Meltano state id of this run's pipeline as `meltano run` names it
    (`<environment>:<extractor>-to-<loader>`), from the variables Meltano gives its plugins
    (a tap is not told its loader; the defaults name the plugins of this project's jobs)."""
    extractor = os.environ.get("MELTANO_EXTRACTOR_NAME") or extractor
    loader = os.environ.get("MELTANO_LOADER_NAME") or loader
    environment = os.environ.get("MELTANO_ENVIRONMENT")
    pair = f"{extractor}-to-{loader}"
    return f"{environment}:{pair}" if environment else pair


def _seq_text(seq: int) -> str:
    return str(seq).zfill(_SEQ_DIGITS)
