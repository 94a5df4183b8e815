"""atheris target: RTCP transport feedback and the transport-wide sequence number stamp.

    python tests/fuzz/fuzz_twcc.py -runs=1000000 [CORPUS_DIR ...]

Without a corpus directory the packets of :func:`~tests.fuzz.targets.twcc_seeds` are
written to a temporary one first. Any libFuzzer flag works (``-max_total_time=30``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.run import fuzz

if __name__ == "__main__":
    fuzz("twcc")
