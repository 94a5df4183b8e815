"""Shared fixtures for the pytest-benchmark files in bench/.

Run with ``python -m pytest bench`` (needs the ``bench`` extra: pytest-benchmark, and
audioop-lts on Python 3.13+).
"""

from __future__ import annotations

import importlib
import itertools
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest


def load_audioop() -> ModuleType | None:
    """The stdlib audioop (<= 3.12) or audioop-lts (3.13+), or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


@pytest.fixture
def cycling() -> Callable[[list[bytes]], Iterator[bytes]]:
    """Cycle through a pool of distinct buffers, so each call sees fresh data."""
    return itertools.cycle
