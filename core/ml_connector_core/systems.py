"""Which system a plugin talks to: the identity the ledger and the state key everything by.

Everything the connector remembers (what was delivered, what an invoice became, what is still to
be answered) is about one named system (docs/decisions.md, "System identity"):

- a **Basware tenant**: its API base URL and the API client (each client belongs to one
  tenant), e.g. ``basware https://api.basware.com client acme-p2p``;
- a **Sage 300 database**: the Web API base URL and the company (org id), e.g.
  ``sage300 https://erp.example.com/sage300webapi/v1.0/- company SAMINC``.

A new tenant or database starts from nothing; the same one keeps exactly-once. Identities
hold no secret (client ids and URLs without credentials) and are stable text: scheme and host
lower-cased, no trailing slash, no user or password in the URL.

The STATE of the master-data pipeline carries the identities too (tap-sage300 writes the Sage
system it read from, target-basware the Basware tenant it delivered to), so a run pointed at
another system sees that the bookmarks describe another system: see :func:`read_from` and
:func:`delivered_to`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .basware_api import resolve_base_url

#: STATE key: the Sage 300 Web API (base URL) tap-sage300's bookmarks were read from.
READ_FROM_KEY = "read_from"
#: STATE key: the Basware tenant target-basware delivered the records before it to.
DELIVERED_TO_KEY = "delivered_to"


def canonical_url(url: str) -> str:
    """``url`` with scheme and host lower-cased, credentials and trailing slashes removed."""
    parts = urlsplit(str(url).strip())
    host = (parts.hostname or "").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def basware_system(config: Mapping[str, Any]) -> str:
    """The Basware tenant a plugin's settings point at (base URL, else region, + client id)."""
    base = resolve_base_url(config.get("region"), config.get("base_url"))
    return f"basware {canonical_url(base)} client {config.get('client_id') or '?'}"


def sage300_base(config: Mapping[str, Any]) -> str:
    """The Sage 300 Web API a plugin's settings point at, without a company."""
    return f"sage300 {canonical_url(str(config.get('base_url') or ''))}"


def sage300_system(config: Mapping[str, Any], company: str) -> str:
    """One Sage 300 company database: the Web API base URL and the company (org) id."""
    return f"{sage300_base(config)} company {str(company).strip().upper()}"


def read_from(state: Mapping[str, Any]) -> str | None:
    value = state.get(READ_FROM_KEY)
    return value if isinstance(value, str) and value else None


def delivered_to(state: Mapping[str, Any]) -> str | None:
    value = state.get(DELIVERED_TO_KEY)
    return value if isinstance(value, str) and value else None
