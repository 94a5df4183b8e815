"""docs/adding-a-provider.md lists the files every registered provider really has, and every
registered provider has its row in the protocol table of docs/transports.md.

The page's file table is read as written: each path naming the example dialect ``acme``
must exist under every registered protocol's name, and each shared file it names must
mention every registered protocol's codec or simulated side. A provider added without one
of those files, or a page that drifts from the layout, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voxwire.protocols.registry import CODECS
from voxwire.sim.providers import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "adding-a-provider.md"
TRANSPORTS = ROOT / "docs" / "transports.md"


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _page_files() -> list[str]:
    """The paths in the first column of the page's file table."""
    rows = _table_rows(PAGE.read_text(encoding="utf-8"), "file")
    return [m.group(1) for row in rows if (m := re.fullmatch(r"`([^`]+)`", row[0]))]


def test_the_page_lists_the_codec_and_the_simulated_side() -> None:
    files = _page_files()
    assert "python/voxwire/protocols/acme.py" in files
    assert "python/voxwire/sim/providers/acme.py" in files
    assert "docs/transports.md" in files


@pytest.mark.parametrize("protocol", list(CODECS))
def test_every_registered_provider_has_the_files_the_page_lists(protocol: str) -> None:
    names = {CODECS[protocol].__name__, PROVIDERS[protocol].__name__}
    for path in _page_files():
        if "acme" in path:
            assert (ROOT / path.replace("acme", protocol)).is_file(), (protocol, path)
        else:
            text = (ROOT / path).read_text(encoding="utf-8")
            assert any(re.search(rf"\b{name}\b", text) for name in names), (protocol, path)


def test_every_registered_provider_has_a_row_in_the_transports_table() -> None:
    rows = _table_rows(TRANSPORTS.read_text(encoding="utf-8"), "protocol")
    table = {row[1].strip("`"): row[2].strip("`") for row in rows}
    assert table == {name: cls.__name__ for name, cls in CODECS.items()}
