"""The examples in the public modules' docstrings run and give what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "voxwire.g711",
    "voxwire.rtp",
    "voxwire.plc",
    "voxwire.stretch",
    "voxwire.jitter",
    "voxwire.audioop",
    "voxwire.opus",
    "voxwire.netsim",
    "voxwire.protocols.rtp_session",
    "voxwire.media_path",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
