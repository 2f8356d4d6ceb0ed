"""What `ml-connector retry` hands the plugins: the records to read again from their source.

The retry command runs a job as `ml-connector run` does, with one plugin setting more:

- ``retry_invoice_ids`` (tap-basware): Basware invoice ids to read again from Basware even
  though they are TransferFailed (no acknowledge: Basware allows none on TransferFailed).
  target-sage300 creates each one unless it finds it (ledger, BWINVID), and the job's second
  task answers Basware the new outcome.
- ``retry_keys`` (tap-sage300): ``{stream: [ledger source keys]}`` to read again from Sage
  300 whatever their bookmarks say; target-basware sends what it reads. What Basware refused
  with exactly this payload is not sent again (Basware answers an identical re-post
  `NotProcessed`; its FAQ: modify the record to resend), so the fix must change the record.

Settings reach the plugins as Meltano environment variables (``<PLUGIN>_<SETTING>``), so one
`meltano run` of the job carries them to every task. Both plugins use this module; neither
imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

#: target-sage300's invoice stream in the ledger (the invoices job's stream map alias).
INVOICE_STREAM = "ap_invoices"
INVOICE_IDS_ENV = "TAP_BASWARE_RETRY_INVOICE_IDS"
RETRY_KEYS_ENV = "TAP_SAGE300_RETRY_KEYS"


def invoice_ids_env(invoice_ids: Iterable[str]) -> dict[str, str]:
    """The environment that hands tap-basware the invoices to read again."""
    return {INVOICE_IDS_ENV: json.dumps(sorted(set(invoice_ids)))}


def retry_keys_env(keys: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """The environment that hands tap-sage300 the keys to read again."""
    return {RETRY_KEYS_ENV: json.dumps({stream: sorted(set(ks))
                                        for stream, ks in sorted(keys.items()) if ks})}


def string_list(value: Any) -> list[str]:
    """A setting given as a list (or a JSON list in a string) of ids; [] when unset."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings")
    return list(dict.fromkeys(value))


def keys_by_stream(value: Any) -> dict[str, list[str]]:
    """A setting given as {stream: [keys]} (or its JSON text); {} when unset."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be an object {stream: [keys]}")
    return {str(stream): string_list(keys) for stream, keys in value.items()}
