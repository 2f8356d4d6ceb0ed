"""target-sage300 tests run the target against the Sage 300 simulator over real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
