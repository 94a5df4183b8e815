"""Print the jitter-buffer trace table (the same code as ``voxwire bench --only jitter``).

python bench/jitter_traces.py [--quick]

Replays the seeded scenarios S1..S8 on a virtual clock against voxwire, libspeexdsp's
jitter buffer (if installed), fixed 60/120 ms buffers, a 16-slot ring and the static
oracle, and prints every metric and the goal checks.
"""

from __future__ import annotations

import sys

from voxwire.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "jitter", *sys.argv[1:]]))
