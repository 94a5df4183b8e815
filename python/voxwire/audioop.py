"""Drop-in replacements for the G.711 functions of CPython's ``audioop`` (width 2).

``audioop`` was removed from the standard library in Python 3.13. Code that used

>>> import audioop                                                   # doctest: +SKIP
>>> audioop.lin2ulaw(fragment, 2)                                    # doctest: +SKIP

can switch to ``from voxwire import audioop`` and get identical bytes: ``lin2ulaw`` and
``lin2alaw`` use the ``"audioop"`` rounding mode, and the decoders are exact. Only sample
width 2 (16-bit PCM, the telephony case) is supported; other widths raise ``ValueError``.
The result is always ``bytes``, as in audioop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxwire._core import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["alaw2lin", "lin2alaw", "lin2ulaw", "ulaw2lin"]


def _raw(fragment: Buffer) -> bytes | bytearray | memoryview:
    # audioop reads any buffer as raw bytes whatever its item format; do the same.
    if isinstance(fragment, (bytes, bytearray)):
        return fragment
    return memoryview(fragment).cast("B")


def _check_width(width: int) -> None:
    if width != 2:
        raise ValueError(f"voxwire.audioop supports sample width 2 only, got width={width!r}")


def lin2ulaw(fragment: Buffer, width: int) -> bytes:
    """Convert 16-bit linear samples to mu-law bytes, exactly as ``audioop.lin2ulaw``."""
    _check_width(width)
    return encode_ulaw(_raw(fragment), mode="audioop")


def lin2alaw(fragment: Buffer, width: int) -> bytes:
    """Convert 16-bit linear samples to A-law bytes, exactly as ``audioop.lin2alaw``."""
    _check_width(width)
    return encode_alaw(_raw(fragment), mode="audioop")


def ulaw2lin(fragment: Buffer, width: int) -> bytes:
    """Convert mu-law bytes to 16-bit linear samples, exactly as ``audioop.ulaw2lin``."""
    _check_width(width)
    return decode_ulaw(_raw(fragment))


def alaw2lin(fragment: Buffer, width: int) -> bytes:
    """Convert A-law bytes to 16-bit linear samples, exactly as ``audioop.alaw2lin``."""
    _check_width(width)
    return decode_alaw(_raw(fragment))
