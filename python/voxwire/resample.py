"""Streaming sample-rate conversion for voice: 8, 11.025, 16, 22.05, 24, 32, 44.1, 48 kHz.

One :class:`Resampler` per stream converts chunk by chunk with a polyphase Kaiser-windowed-sinc
filter whose only delay is its own half length (2.5 ms at 8 kHz for ``"voice"``), starting
with the first chunk:

>>> import numpy as np
>>> import voxwire
>>> r = voxwire.Resampler(8000, 16000)           # int16 in, int16 out, "voice" quality
>>> chunk = np.zeros(160, dtype=np.int16)        # 20 ms at 8 kHz
>>> r.process(chunk).shape                       # 20 ms less the 2.5 ms latency, at 16 kHz
(280,)
>>> r.latency
0.0025
>>> r.flush().shape                              # the owed tail: 320 samples in total
(40,)

For a whole signal, :func:`resample` returns exactly ``ceil(len(x) * out_rate / in_rate)``
samples, time-aligned with the input (no delay to trim).

Quality presets (edges relative to the lower Nyquist frequency ``min(in, out) / 2``):

``"voice"`` (default)
    passband flat within +-0.1 dB to 0.85, aliasing and imaging >= 80 dB down beyond 1.15
    (designed for 94 dB); latency at most 2.54 ms when 8 kHz is involved, 1.8 ms at
    11.025 kHz, 1.33 ms from 16 kHz up.
``"high"``
    passband to 0.9, >= 100 dB down beyond 1.1 (designed for 104 dB); latency at most
    4.5 ms when 8 kHz is involved, 3.3 ms at 11.025 kHz, 2.25 ms from 16 kHz up.

Exactness: the output does not depend on how the input is split into chunks, to the bit;
digital silence gives exact zeros; int16 output is rounded to nearest and saturated, and
saturated samples are counted in :attr:`Resampler.clipped`. No dither is added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt

from voxwire import _core

__all__ = ["Quality", "Resampler", "resample"]

Quality = Literal["voice", "high"]
"""The quality presets accepted by :class:`Resampler` and :func:`resample`."""

_S = TypeVar("_S", np.int16, np.float32)


class Resampler(_core.Resampler, Generic[_S]):
    """Streaming sample-rate converter for one mono stream.

    Parameters
    ----------
    in_rate, out_rate : int
        Sample rates in Hz, 1000 to 384000; any pair whose ratio reduces to at most 2048
        output phases (every pair of the common rates 8000 ... 48000 does).
    quality : {"voice", "high"}, default "voice"
        Filter preset (see :mod:`voxwire.resample`).
    dtype : numpy.int16 or numpy.float32, default numpy.int16
        Sample type of both input and output. float32 samples are full scale at +-1.0 and
        are never clipped.

    Attributes
    ----------
    in_rate, out_rate : int
        The rates in Hz.
    quality : str
        The preset.
    dtype : numpy.dtype
        The sample dtype.
    latency : float
        Total delay in seconds (the filter's lookahead over ``in_rate``). Output sample
        ``k`` is the input signal at time ``k / out_rate``; it is returned as soon as the
        input up to ``latency`` seconds later has been processed, so after ``n`` input
        samples exactly ``max(0, ceil((n / in_rate - latency) * out_rate))`` samples have
        come out (:meth:`output_size` says how many the next call returns).
    clipped : int
        int16 output samples saturated to [-32768, 32767] since construction or
        :meth:`reset`.
    samples_in, samples_out : int
        Samples consumed and produced in the current stream.
    taps : int
        Filter taps per polyphase branch.

    Raises
    ------
    ValueError
        A rate out of range or a ratio that needs too many phases or taps, or an unknown
        quality.
    TypeError
        A dtype other than int16 or float32.

    Notes
    -----
    The filter tables are computed once per (ratio, quality) and shared by every stream;
    a stream holds under 4 KB of state and allocates nothing per call except the returned
    array (none with ``out=``). Not safe to use from two threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> from voxwire import Resampler
    >>> up = Resampler(8000, 16000, dtype=np.float32)
    >>> t = np.arange(160) / 8000
    >>> y = up.process(np.sin(2 * np.pi * 440 * t).astype(np.float32))
    >>> len(y), up.latency
    (280, 0.0025)
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @overload
        def __init__(
            self: Resampler[np.int16],
            in_rate: int,
            out_rate: int,
            quality: Quality = "voice",
            dtype: type[np.int16] | np.dtype[np.int16] | Literal["int16"] = ...,
        ) -> None: ...
        @overload
        def __init__(
            self: Resampler[np.float32],
            in_rate: int,
            out_rate: int,
            quality: Quality,
            dtype: type[np.float32] | np.dtype[np.float32] | Literal["float32"],
        ) -> None: ...
        @overload
        def __init__(
            self: Resampler[np.float32],
            in_rate: int,
            out_rate: int,
            quality: Quality = "voice",
            *,
            dtype: type[np.float32] | np.dtype[np.float32] | Literal["float32"],
        ) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
        def process(
            self, x: npt.NDArray[_S], /, *, out: npt.NDArray[_S] | None = None
        ) -> npt.NDArray[_S]: ...
        def flush(self, *, out: npt.NDArray[_S] | None = None) -> npt.NDArray[_S]: ...


@overload
def resample(
    x: npt.NDArray[np.int16], in_rate: int, out_rate: int, quality: Quality = "voice"
) -> npt.NDArray[np.int16]: ...
@overload
def resample(
    x: npt.NDArray[np.float32], in_rate: int, out_rate: int, quality: Quality = "voice"
) -> npt.NDArray[np.float32]: ...
def resample(
    x: npt.NDArray[Any], in_rate: int, out_rate: int, quality: Quality = "voice"
) -> npt.NDArray[Any]:
    """Convert a whole signal from `in_rate` to `out_rate`.

    Parameters
    ----------
    x : numpy.ndarray of int16 or float32
        1-D C-contiguous mono samples.
    in_rate, out_rate : int
        Sample rates in Hz.
    quality : {"voice", "high"}, default "voice"
        Filter preset.

    Returns
    -------
    numpy.ndarray
        ``ceil(len(x) * out_rate / in_rate)`` samples of the same dtype, output sample
        ``k`` being the input signal at time ``k / out_rate`` (no delay: the filter's
        lookahead is drained with zeros). Identical to streaming `x` through a
        :class:`Resampler` in any chunking and flushing it.

    Raises
    ------
    TypeError
        `x` is not a numpy array of int16 or float32.
    ValueError
        Bad rates, quality, shape or memory layout.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"resample: expected a numpy int16 or float32 array, got {type(x).__name__}"
        )
    if x.dtype not in (np.dtype(np.int16), np.dtype(np.float32)):
        raise TypeError(f"resample: expected dtype int16 or float32, got dtype {x.dtype}")
    r = _core.Resampler(in_rate, out_rate, quality, x.dtype)
    total = -(-x.size * out_rate // in_rate)  # ceil
    y: npt.NDArray[Any] = np.empty(total, dtype=x.dtype)
    k = len(r.process(x, out=y))
    r.flush(out=y[k:])
    return y
