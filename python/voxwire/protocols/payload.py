"""Payload bytes to and from mono PCM16, per :class:`~voxwire.protocols.events.MediaFormat`."""

from __future__ import annotations

import numpy as np

from voxwire._types import PCM
from voxwire.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from voxwire.protocols.events import MediaFormat
from voxwire.protocols.parsing import Skip

__all__ = ["as_pcm", "decode_payload", "encode_payload"]


def decode_payload(raw: bytes, fmt: MediaFormat) -> PCM:
    """Wire bytes to mono PCM16 in native byte order, or skip as ``bad_frame_size``."""
    if not raw:
        raise Skip("bad_frame_size", "empty audio payload")
    if fmt.encoding == "mulaw":
        return decode_ulaw(np.frombuffer(raw, dtype=np.uint8))
    if fmt.encoding == "alaw":
        return decode_alaw(np.frombuffer(raw, dtype=np.uint8))
    if len(raw) % 2:
        raise Skip("bad_frame_size", f"L16 payload of {len(raw)} bytes is not whole samples")
    dtype = ">i2" if fmt.big_endian else "<i2"
    return np.frombuffer(raw, dtype=dtype).astype(np.int16)


def encode_payload(pcm: PCM, fmt: MediaFormat) -> bytes:
    """Mono PCM16 to wire bytes in ``fmt``."""
    if fmt.encoding == "mulaw":
        return bytes(encode_ulaw(pcm))
    if fmt.encoding == "alaw":
        return bytes(encode_alaw(pcm))
    return pcm.astype(">i2" if fmt.big_endian else "<i2", copy=False).tobytes()


def as_pcm(pcm: object) -> PCM:
    """Validate outbound audio: a 1-D numpy int16 array, or bytes of native PCM16."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        raw = bytes(pcm)
        if len(raw) % 2:
            raise ValueError(f"PCM16 bytes must have an even length, got {len(raw)}")
        return np.frombuffer(raw, dtype=np.int16)
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise TypeError(f"expected a 1-D numpy int16 array or bytes, got {pcm!r:.60}")
    return pcm
