"""The per-message media path of the JSON + base64 telephony transports, in one native call.

Twilio, Telnyx, Plivo, Exotel and Teler carry audio as base64 text inside JSON. For every
20 ms message the receiving side decodes base64, expands G.711 (or reads L16) and resamples
to the pipeline rate; the sending side does the reverse. :class:`MediaDecoder` and
:class:`MediaEncoder` do each direction in one call, with the resampler's state kept per
stream:

>>> import numpy as np
>>> from voxwire.media_path import MediaDecoder, MediaEncoder
>>> rx = MediaDecoder("mulaw", 8000, 16000)          # Twilio in, 16 kHz pipeline
>>> rx.decode("/" * 212 + "/w==").shape               # 160 mu-law bytes, 20 ms
(280,)
>>> tx = MediaEncoder("mulaw", 24000, 8000)           # 24 kHz TTS out, 8 kHz line
>>> len(tx.encode(np.zeros(480, dtype=np.int16)))     # base64 of 20 ms less the latency
188

The result is bit for bit what :func:`voxwire.decode_ulaw` (or ``decode_alaw``, or an L16
read) followed by a :class:`voxwire.Resampler` of the same quality gives, message by
message; outbound, what the Resampler followed by ``encode_ulaw`` and standard base64 gives.

Base64 is strict (RFC 4648 sections 3.3, 3.5 and 4): the standard alphabet only, length a
multiple of 4, padding only at the end, zero leftover bits, no whitespace. A malformed payload
raises :class:`~voxwire.errors.PayloadError` naming the rule and leaves the stream unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from voxwire import _core
from voxwire.g711 import EncodeMode
from voxwire.resample import Quality

__all__ = ["MAX_PAYLOAD_BYTES", "MediaDecoder", "MediaEncoder", "WireEncoding"]

WireEncoding = Literal["mulaw", "alaw", "l16be", "l16le"]
"""Wire encodings: G.711 mu-law or A-law, or 16-bit linear big- or little-endian."""

MAX_PAYLOAD_BYTES = 1 << 20
"""Most decoded bytes one message may carry (about 131 s of 8 kHz mu-law)."""


class MediaDecoder(_core.MediaDecoder):
    """One inbound media stream: base64 payloads at the line rate to PCM16 at the pipeline rate.

    Parameters
    ----------
    encoding : {"mulaw", "alaw", "l16be", "l16le"}
        Wire encoding of the payload bytes.
    line_rate : int
        Sample rate of the payload in Hz.
    pipeline_rate : int
        Sample rate of the returned PCM in Hz; equal to `line_rate` for no resampling.
    quality : {"voice", "high"}, default "voice"
        Resampler preset (see :mod:`voxwire.resample`).

    Attributes
    ----------
    encoding : str
    line_rate, pipeline_rate : int
    latency : float
        Delay added by resampling in seconds (0.0 when the rates are equal).

    Raises
    ------
    ValueError
        Unknown encoding or quality, or rates the resampler refuses.

    Notes
    -----
    A stream holds its resampler (under 4 KB) and 9 KB of scratch; long messages are
    converted in blocks, so no call allocates except the returned array (none with
    ``out=``). Not safe to use from two threads at once.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def __init__(
            self,
            encoding: WireEncoding,
            line_rate: int,
            pipeline_rate: int,
            quality: Quality = "voice",
        ) -> None: ...
        def decode(
            self, payload: str | bytes, /, *, out: npt.NDArray[np.int16] | None = None
        ) -> npt.NDArray[np.int16]:
            """Decode one message's base64 payload to PCM16 at the pipeline rate.

            Parameters
            ----------
            payload : str or bytes
                Strict base64 of the wire bytes (ASCII).
            out : numpy.ndarray of int16, optional
                Filled and returned (its leading slice if longer).

            Returns
            -------
            numpy.ndarray of int16
                The samples the message completes at the pipeline rate.

            Raises
            ------
            voxwire.errors.PayloadError
                Malformed or oversized payload; the stream is left unchanged.
            TypeError
                `payload` is not str or bytes, or `out` is not an int16 array.
            ValueError
                `out` is too short, not 1-D, not C-contiguous or read-only.
            """
            ...


class MediaEncoder(_core.MediaEncoder):
    """One outbound media stream: PCM16 at the source rate to base64 payloads at the line rate.

    Parameters
    ----------
    encoding : {"mulaw", "alaw", "l16be", "l16le"}
        Wire encoding of the payload bytes.
    source_rate : int
        Sample rate of the PCM given to :meth:`encode` (the TTS rate) in Hz.
    line_rate : int
        Sample rate of the payload in Hz.
    quality : {"voice", "high"}, default "voice"
        Resampler preset.
    mode : {"g191", "audioop"}, default "g191"
        G.711 rounding (see :data:`voxwire.EncodeMode`).

    Attributes
    ----------
    encoding : str
    source_rate, line_rate : int
    latency : float
        Delay added by resampling in seconds (0.0 when the rates are equal).

    Raises
    ------
    ValueError
        Unknown encoding, quality or mode, or rates the resampler refuses.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def __init__(
            self,
            encoding: WireEncoding,
            source_rate: int,
            line_rate: int,
            quality: Quality = "voice",
            mode: EncodeMode = "g191",
        ) -> None: ...
        def encode(self, pcm: npt.NDArray[np.int16], /) -> str:
            """Convert PCM16 at the source rate to one base64 payload at the line rate.

            Parameters
            ----------
            pcm : numpy.ndarray of int16
                1-D C-contiguous mono samples (never converted).

            Returns
            -------
            str
                Base64 of the line-rate wire bytes; empty while the resampler fills.

            Raises
            ------
            TypeError
                `pcm` is not a numpy int16 array.
            ValueError
                Not 1-D or not C-contiguous, or more than 2**20 samples.
            """
            ...
