"""Make the fake provider peers in tests/protocols importable as ``peers``."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parents[1] / "protocols")
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
