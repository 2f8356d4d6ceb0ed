"""The audit ledger: see docs/ledger.md. Everything plugin authors need is exported here.

The names load on first use (PEP 562): a plugin reads its settings, which name the default
ledger location, on every start, and the ledger's SQLAlchemy costs ~90 ms to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ml_connector_core.ledger.location import LEDGER_URL_ENV, default_ledger_url

if TYPE_CHECKING:
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
        OpenFailure,
        Replay,
        Report,
        ResolvedRecord,
        Run,
        Written,
        normalize_cause,
        payload_hash,
        to_jsonable,
    )
    from ml_connector_core.ledger._schema import LATEST_VERSION, LedgerVersionError, migrate

_MODULES = {
    **dict.fromkeys(["BASWARE_TO_SAGE", "FAILURE", "SAGE_TO_BASWARE", "SUCCESS", "Action",
                     "Entry", "FailureGroup", "KeyOutcome", "Ledger", "OpenFailure", "Replay",
                     "Report", "ResolvedRecord", "Run",
                     "Written", "normalize_cause", "payload_hash", "to_jsonable"], "_ledger"),
    **dict.fromkeys(["LATEST_VERSION", "LedgerVersionError", "migrate"], "_schema"),
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
    "OpenFailure",
    "Replay",
    "Report",
    "ResolvedRecord",
    "Run",
    "Written",
    "LEDGER_URL_ENV",
    "default_ledger_url",
    "migrate",
    "normalize_cause",
    "payload_hash",
    "to_jsonable",
]
