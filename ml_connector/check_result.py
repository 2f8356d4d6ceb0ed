"""One line of `ml-connector check`: PASS, WARN (passes, with something to look at) or FAIL."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    system: str  # "meltano" | "sage300" | "basware"
    what: str
    ok: bool
    detail: str
    warn: bool = False  # passes, but says something the installer should look at

    @property
    def status(self) -> str:
        if not self.ok:
            return "FAIL"
        return "WARN" if self.warn else "PASS"
