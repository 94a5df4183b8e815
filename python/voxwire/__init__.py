"""voxwire: the media layer for real-time voice AI.

Native kernels (C++ through pybind11) for the per-packet audio path of a phone or browser
call, wrapped in a small typed Python API. This release provides G.711 companding (see
:mod:`voxwire.g711`, and :mod:`voxwire.audioop` for code migrating off the removed stdlib
module) and streaming sample-rate conversion (:class:`Resampler`, :func:`resample`; see
:mod:`voxwire.resample`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from voxwire import errors
from voxwire.errors import VoxwireError
from voxwire.g711 import EncodeMode, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from voxwire.resample import Resampler, resample

try:
    __version__ = version("voxwire")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

__all__ = [
    "EncodeMode",
    "Resampler",
    "VoxwireError",
    "__version__",
    "decode_alaw",
    "decode_ulaw",
    "encode_alaw",
    "encode_ulaw",
    "errors",
    "resample",
]
