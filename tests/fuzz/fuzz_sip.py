"""atheris target: SIP datagrams through the parser, SDP and the user agent server.

    python tests/fuzz/fuzz_sip.py -runs=1000000 [CORPUS_DIR ...]

Without a corpus directory the requests of :func:`~tests.fuzz.targets.sip_seeds` are
written to a temporary one first. Any libFuzzer flag works (``-max_total_time=30``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.run import fuzz

if __name__ == "__main__":
    fuzz("sip")
