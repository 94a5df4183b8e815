"""G.711 mu-law and A-law companding (ITU-T G.711; reference code ITU-T G.191).

Four functions, each a single native call with no Python wrapper in between, because a
20 ms telephony frame is only 160 samples and the call is most of its cost:

>>> import voxwire
>>> pcm = bytes(320)                      # 160 silent native-endian PCM16 samples
>>> codes = voxwire.encode_ulaw(pcm)      # bytes in, bytes out: 160 codes
>>> codes[:4]
b'\\xff\\xff\\xff\\xff'
>>> voxwire.decode_ulaw(codes) == pcm
True

Inputs and outputs
------------------
* Bytes-like input (``bytes``, ``bytearray``, ``memoryview``, ``array.array``; any
  C-contiguous buffer of raw bytes, or of native ``int16`` for PCM) gives ``bytes``.
* A numpy array (``int16`` PCM, ``uint8`` codes) gives a numpy array of the same shape.
* ``out=`` takes a preallocated numpy array of the result's dtype and element count; it is
  filled and returned, which is the allocation-free form for hot loops.
* Nothing is ever converted or copied implicitly: a wrong dtype or buffer format raises
  ``TypeError`` naming the expected dtype; an odd PCM byte length, a non-contiguous input,
  or an ``out`` of the wrong size raises ``ValueError`` naming the length.

Encoder modes
-------------
``mode="g191"`` (default) is bit-exact with the G.191 reference for all 65,536 inputs.
``mode="audioop"`` returns exactly what CPython's ``audioop.lin2ulaw`` / ``lin2alaw``
return; for mu-law audioop rounds 508 negative inputs to the neighbouring code, and for
A-law the two modes are identical. Decoders are the same in both modes. For a drop-in
replacement of the audioop functions themselves, see :mod:`voxwire.audioop`.
"""

from __future__ import annotations

from typing import Literal

from voxwire._core import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw

__all__ = ["EncodeMode", "decode_alaw", "decode_ulaw", "encode_alaw", "encode_ulaw"]

EncodeMode = Literal["g191", "audioop"]
"""The encoder rounding modes accepted by :func:`encode_ulaw` and :func:`encode_alaw`."""
