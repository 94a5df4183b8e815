"""The examples in the modules' docstrings run and give what they say.

Every module under ``voxwire`` whose source holds a ``>>>`` example is found by walking
the package with :mod:`pkgutil` (without importing it), so a new module's examples run
without being listed here. A module whose optional dependency is not installed is
skipped, with the missing module named.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import voxwire


def _modules(directory: Path, package: str) -> Iterator[tuple[str, Path]]:
    """Every module of the package in ``directory``, by dotted name and source file."""
    yield package, directory / "__init__.py"
    for info in pkgutil.iter_modules([str(directory)]):
        if info.ispkg:
            yield from _modules(directory / info.name, f"{package}.{info.name}")
        elif info.name != "__main__":
            source = directory / f"{info.name}.py"
            if source.is_file():  # compiled extensions have no docstring examples
                yield f"{package}.{info.name}", source


MODULES = sorted(
    name
    for root in voxwire.__path__
    for name, source in _modules(Path(root), "voxwire")
    if ">>>" in source.read_text(encoding="utf-8")
)


def test_the_walk_finds_the_modules_with_examples() -> None:
    assert {"voxwire.protocols", "voxwire.g711", "voxwire.protocols.rtp_session"} <= set(MODULES)
    assert "voxwire.__main__" not in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        missing = exc.name or ""
        if missing == "voxwire" or missing.startswith("voxwire."):
            raise
        pytest.skip(f"{name} needs {missing or exc}, which is not installed")
    tests = doctest.DocTestFinder().find(module)
    assert any(t.examples for t in tests), f"{name}: '>>>' in its source but no examples"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
