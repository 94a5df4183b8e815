"""Print the full AGC comparison: level spread and pause SNR on calls with level steps and
drift, PocketSphinx word accuracy with and without AGC, and CPU per frame, for voxwire's
Agc, WebRTC's AGC1 and AGC2 and a fixed gain (the same code as ``voxwire bench --only agc``).

python bench/agc_calls.py [--quick]
"""

from __future__ import annotations

import sys

from voxwire.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "agc", *sys.argv[1:]]))
