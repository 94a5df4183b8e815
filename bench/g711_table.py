"""Print the G.711 side-by-side table (the same code as ``voxwire bench --only g711``).

python bench/g711_table.py [--quick]
"""

from __future__ import annotations

import sys

from voxwire.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "g711", *sys.argv[1:]]))
