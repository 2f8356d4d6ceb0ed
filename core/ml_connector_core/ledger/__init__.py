"""The audit ledger: see docs/ledger.md. Everything plugin authors need is exported here."""

from ml_connector_core.ledger._ledger import (
    BASWARE_TO_SAGE,
    FAILURE,
    SAGE_TO_BASWARE,
    SUCCESS,
    Action,
    Entry,
    FailureGroup,
    KeyOutcome,
    Ledger,
    Replay,
    Report,
    Run,
    normalize_cause,
    payload_hash,
    to_jsonable,
)
from ml_connector_core.ledger._schema import (
    LATEST_VERSION,
    LEDGER_URL_ENV,
    LedgerVersionError,
    default_ledger_url,
    migrate,
)

__all__ = [
    "BASWARE_TO_SAGE",
    "FAILURE",
    "LATEST_VERSION",
    "SAGE_TO_BASWARE",
    "SUCCESS",
    "Action",
    "Entry",
    "FailureGroup",
    "KeyOutcome",
    "Ledger",
    "LedgerVersionError",
    "Replay",
    "Report",
    "Run",
    "LEDGER_URL_ENV",
    "default_ledger_url",
    "migrate",
    "normalize_cause",
    "payload_hash",
    "to_jsonable",
]
