"""Start both simulators together, as the demo, the tests and the benchmarks do."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .basware import BaswareSimulator
from .faults import FaultConfig
from .http import SimulatorServer
from .sage300 import Sage300Simulator


@dataclass
class Sandbox:
    sage300: SimulatorServer
    basware: SimulatorServer

    def info(self) -> dict[str, Any]:
        """Where each simulator answers and how to log in: what scripts and tests need."""
        return {
            "sage300": self.sage300.simulator.info(self.sage300.base_url),
            "basware": self.basware.simulator.info(self.basware.base_url),
        }

    def write_info(self, path: str | Path) -> None:
        # Written atomically: scripts poll for the file and must never read half of it.
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sandbox-info")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.info(), handle, indent=2)
        os.replace(tmp, path)

    def stop(self) -> None:
        self.sage300.stop()
        self.basware.stop()


def start_sandbox(*, sage_port: int = 0, basware_port: int = 0, data: str = "demo",
                  seed: int = 0, host: str = "127.0.0.1",
                  sage_faults: FaultConfig | None = None,
                  basware_faults: FaultConfig | None = None) -> Sandbox:
    """Start both simulators on loopback (port 0 picks free ports) and return them running."""
    sage = SimulatorServer(Sage300Simulator(data=data, seed=seed), host, sage_port, sage_faults)
    basware = SimulatorServer(BaswareSimulator(data=data, seed=seed), host, basware_port,
                              basware_faults)
    return Sandbox(sage.start(), basware.start())
