"""HTTP Basic for the Sage 300 Web API, with the uppercase rule of BRIEF decision 1.

The rule itself lives in core (``Sage300Auth``) so the target writes with exactly the same
header; this module only reads the tap's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_connector_core.sage300_api import Sage300Auth


def sage300_auth(config: Mapping[str, Any]) -> Sage300Auth:
    """The one authenticator all streams of a run share (Basic is stateless, so no refresh)."""
    return Sage300Auth(
        config["username"],
        config["password"],
        keep_password_case=bool(config.get("keep_password_case", False)),
    )
