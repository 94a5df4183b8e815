"""voxwire.audioop: same signatures and bytes as CPython's audioop for width 2."""

from __future__ import annotations

import array
import warnings

import numpy as np
import pytest

import voxwire
from voxwire import audioop as compat

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop as stdlib_audioop
    except ImportError:
        stdlib_audioop = None  # type: ignore[assignment]

NAMES = ["lin2ulaw", "lin2alaw", "ulaw2lin", "alaw2lin"]


def fragments() -> list[bytes]:
    rng = np.random.default_rng(11)
    out = [b"", np.arange(-32768, 32768, dtype=np.int16).tobytes()]
    out += [rng.integers(-32768, 32768, size=n, dtype=np.int16).tobytes() for n in (1, 160, 999)]
    return out


@pytest.mark.skipif(stdlib_audioop is None, reason="audioop not available")
@pytest.mark.parametrize("name", NAMES)
def test_identical_bytes_to_audioop(name: str) -> None:
    ours = getattr(compat, name)
    theirs = getattr(stdlib_audioop, name)
    for frag in fragments():
        if name.endswith("2lin"):
            frag = frag[: len(frag) // 2]  # codes: any byte string
        assert ours(frag, 2) == theirs(frag, 2)


def test_known_audioop_bytes() -> None:
    # Values of CPython 3.11's audioop, kept here for interpreters without it.
    pcm = np.array([-4, -8, -12, 0, 5000], dtype=np.int16).tobytes()
    assert compat.lin2ulaw(pcm, 2) == bytes([0x7E, 0x7E, 0x7D, 0xFF, 0xAB])
    assert compat.lin2alaw(pcm, 2) == bytes([0x55, 0x55, 0x55, 0xD5, 0x86])
    # G.191 rounds -4 and -12 one code away from audioop.
    assert voxwire.encode_ulaw(pcm) == bytes([0x7F, 0x7E, 0x7E, 0xFF, 0xAB])
    assert compat.ulaw2lin(b"\x00\xff", 2) == np.array([-32124, 0], dtype=np.int16).tobytes()


def test_any_buffer_is_read_as_raw_bytes_and_returns_bytes() -> None:
    samples = np.array([1, -1, 1000], dtype=np.int16)
    expected = compat.lin2ulaw(samples.tobytes(), 2)
    for frag in (
        samples,
        memoryview(samples),
        array.array("h", samples.tolist()),
        bytearray(samples.tobytes()),
    ):
        got = compat.lin2ulaw(frag, 2)
        assert type(got) is bytes
        assert got == expected
    assert compat.ulaw2lin(np.frombuffer(expected, np.uint8), 2) == compat.ulaw2lin(expected, 2)
    assert compat.ulaw2lin(array.array("h", [0x7F7F]), 2) == compat.ulaw2lin(b"\x7f\x7f", 2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [1, 3, 4, 0])
def test_other_widths_are_refused(name: str, width: int) -> None:
    with pytest.raises(ValueError, match=f"width 2 only, got width={width}"):
        getattr(compat, name)(b"\x00" * 12, width)


def test_partial_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="got 3 bytes"):
        compat.lin2ulaw(b"\x00\x00\x00", 2)
