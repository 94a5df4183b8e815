"""Print the full VAD comparison: accuracy per condition and overall, and CPU per frame,
for voxwire, webrtcvad (modes 0-3) and Silero VAD (the same code as
``voxwire bench --only vad``).

python bench/vad_corpus.py [--quick]
"""

from __future__ import annotations

import sys

from voxwire.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "vad", *sys.argv[1:]]))
