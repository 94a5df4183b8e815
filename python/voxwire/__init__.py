"""voxwire: the media layer for real-time voice AI.

Native kernels (C++ through pybind11) for the per-packet audio path of a phone or browser
call, wrapped in a small typed Python API: G.711 companding (:mod:`voxwire.g711`, and
:mod:`voxwire.audioop` for code migrating off the removed stdlib module), streaming
sample-rate conversion (:class:`Resampler`, :func:`resample`), voice activity detection
(:mod:`voxwire.vad`), automatic gain control (:mod:`voxwire.agc`), RTP (:mod:`voxwire.rtp`),
an adaptive FEC-aware jitter buffer (:mod:`voxwire.jitter`), packet-loss concealment
(:mod:`voxwire.plc`), Opus with in-band FEC (:mod:`voxwire.opus`), and the telephony
transports (:mod:`voxwire.protocols`, :mod:`voxwire.aio`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from voxwire import errors
from voxwire.agc import Agc
from voxwire.errors import VoxwireError
from voxwire.g711 import EncodeMode, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from voxwire.jitter import JitterBuffer
from voxwire.resample import Resampler, resample
from voxwire.vad import SpeechEnd, SpeechStart, Vad, VadBatch, VadEvent, VadFrame

try:
    __version__ = version("voxwire")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

__all__ = [
    "Agc",
    "EncodeMode",
    "JitterBuffer",
    "Resampler",
    "SpeechEnd",
    "SpeechStart",
    "Vad",
    "VadBatch",
    "VadEvent",
    "VadFrame",
    "VoxwireError",
    "__version__",
    "decode_alaw",
    "decode_ulaw",
    "encode_alaw",
    "encode_ulaw",
    "errors",
    "resample",
]
