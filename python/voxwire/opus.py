"""Opus: packet inspection (native) and encode/decode with in-band FEC (libopus).

Packet inspection needs nothing but voxwire:

>>> from voxwire.opus import packet_info, has_fec
>>> info = packet_info(bytes([9 << 3]) + bytes(20))   # a SILK wideband 20 ms packet
>>> info.mode, info.duration, info.samples(48000)
('silk', 0.02, 960)

:func:`has_fec` reads the SILK header of a packet's first frame (RFC 6716 4.2.3) to tell
whether it carries LBRR data, i.e. whether the frame *before* it can be rebuilt from it.

Decoding and encoding go through libopus via the ``opuslib`` package (``pip install
voxwire[opus]`` and the system library: ``apt-get install libopus0``, ``brew install
opus``); without them, creating an :class:`OpusDecoder` or :class:`OpusEncoder` raises
:class:`voxwire.errors.OpusUnavailable` saying what to install. When packet N is missing
and N+1 has arrived, :meth:`OpusDecoder.recover` rebuilds N from N+1's FEC data if it has
any (``decode_fec`` with the missing duration), and otherwise conceals it (libopus PLC).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from voxwire import _core
from voxwire.errors import OpusUnavailable

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "OpusDecoder",
    "OpusEncoder",
    "OpusPacketInfo",
    "OpusRateController",
    "OpusSetting",
    "has_fec",
    "packet_info",
]

RATES = (8000, 12000, 16000, 24000, 48000)
"""Sample rates libopus decodes and encodes at."""


@dataclass(frozen=True, slots=True)
class OpusPacketInfo:
    """What an Opus packet's TOC byte and frame packing say (RFC 6716 3.1-3.2)."""

    config: int
    mode: Literal["silk", "hybrid", "celt"]
    stereo: bool
    code: int
    frames: int
    frame_us: int

    @property
    def duration(self) -> float:
        """Audio in the packet, in seconds."""
        return self.frames * self.frame_us / 1e6

    def samples(self, rate: int) -> int:
        """Samples per channel in the packet at ``rate`` Hz."""
        return self.frames * self.frame_us * rate // 1_000_000


def packet_info(packet: Buffer) -> OpusPacketInfo:
    """Inspect one Opus packet without decoding it.

    Raises
    ------
    voxwire.errors.OpusPacketError
        The packet breaks a rule of RFC 6716 section 3.4; ``.reason`` says which.
    """
    config, mode, stereo, code, frames, frame_us = _core.opus_packet_info(packet)
    return OpusPacketInfo(config, mode, stereo, code, frames, frame_us)  # type: ignore[arg-type]


def has_fec(packet: Buffer) -> bool:
    """True if the packet carries in-band FEC (LBRR) for the frame before it."""
    return _core.opus_has_lbrr(packet)


def _opuslib() -> Any:
    # Imported on first use: it is optional, and raises a bare Exception without libopus.
    try:
        opuslib = importlib.import_module("opuslib")
        importlib.import_module("opuslib.api.ctl")
        importlib.import_module("opuslib.api.encoder")
    except ImportError as e:
        raise OpusUnavailable("Opus needs the opuslib package: pip install 'voxwire[opus]'") from e
    except Exception as e:  # opuslib raises Exception when libopus itself is missing
        raise OpusUnavailable(
            "Opus needs the system libopus library (Debian/Ubuntu: apt-get install libopus0; "
            f"macOS: brew install opus): {e}"
        ) from e
    return opuslib


def _check(rate: int, channels: int) -> None:
    if rate not in RATES:
        raise ValueError(f"Opus sample rate must be one of {RATES}, got {rate}")
    if channels not in (1, 2):
        raise ValueError(f"Opus channels must be 1 or 2, got {channels}")


class OpusDecoder:
    """A libopus decoder producing int16 PCM (interleaved when stereo).

    Parameters
    ----------
    rate : int
        Output sample rate: 8000, 12000, 16000, 24000 or 48000.
    channels : int
        1 or 2.
    """

    def __init__(self, rate: int = 48000, channels: int = 1) -> None:
        _check(rate, channels)
        self._lib = _opuslib()
        self._dec = self._lib.Decoder(rate, channels)
        self.rate = rate
        self.channels = channels
        self.fec_recovered = 0
        """Frames rebuilt from in-band FEC by :meth:`recover`."""
        self.concealed = 0
        """Frames concealed by :meth:`recover` or :meth:`conceal`."""

    def _pcm(self, raw: bytes) -> npt.NDArray[np.int16]:
        pcm: npt.NDArray[np.int16] = np.frombuffer(raw, dtype=np.int16).copy()
        return pcm

    def decode(self, packet: Buffer) -> npt.NDArray[np.int16]:
        """Decode one packet (its duration follows from its TOC)."""
        data = bytes(packet)
        samples = packet_info(data).samples(self.rate)
        return self._pcm(self._dec.decode(data, samples))

    def conceal(self, samples: int) -> npt.NDArray[np.int16]:
        """Conceal ``samples`` samples per channel of lost audio (libopus PLC)."""
        if samples <= 0:
            raise ValueError(f"samples must be > 0, got {samples}")
        self.concealed += 1
        return self._pcm(self._dec.decode(b"", samples))

    def recover(
        self, next_packet: Buffer | None, samples: int
    ) -> tuple[npt.NDArray[np.int16], Literal["fec", "concealed"]]:
        """Rebuild a missing frame of ``samples`` samples from the packet after it.

        If ``next_packet`` carries FEC data the frame is decoded from it (``decode_fec``);
        otherwise (or with no next packet) it is concealed. The next packet itself must still
        be decoded normally afterwards.
        """
        if samples <= 0:
            raise ValueError(f"samples must be > 0, got {samples}")
        if next_packet is not None and has_fec(next_packet):
            self.fec_recovered += 1
            return self._pcm(self._dec.decode(bytes(next_packet), samples, decode_fec=True)), "fec"
        return self.conceal(samples), "concealed"


class OpusEncoder:
    """A libopus encoder with in-band FEC on, tuned for speech.

    Parameters
    ----------
    rate, channels : int
        Input sample rate (8000, 12000, 16000, 24000 or 48000) and 1 or 2 channels.
    bitrate : int
        Bits per second (FEC needs enough: libopus adds LBRR data only above about
        16 kb/s for wideband speech).
    fec : bool
        In-band FEC (LBRR) on.
    packet_loss_percent : int
        The loss the encoder plans for (0-100); FEC data is only added when it is above 0.
    """

    def __init__(
        self,
        rate: int = 48000,
        channels: int = 1,
        *,
        bitrate: int = 32000,
        fec: bool = True,
        packet_loss_percent: int = 10,
    ) -> None:
        _check(rate, channels)
        if not 0 <= packet_loss_percent <= 100:
            raise ValueError(f"packet_loss_percent must be 0..100, got {packet_loss_percent}")
        if not 500 <= bitrate <= 512000:
            raise ValueError(f"bitrate must be 500..512000, got {bitrate}")
        lib = _opuslib()
        self._enc = lib.Encoder(rate, channels, lib.APPLICATION_VOIP)
        state = self._enc.encoder_state
        # Set through the C API: opuslib 3.0's property setters drop their value.
        lib.api.encoder.encoder_ctl(state, lib.api.ctl.set_inband_fec, int(fec))
        lib.api.encoder.encoder_ctl(state, lib.api.ctl.set_packet_loss_perc, packet_loss_percent)
        lib.api.encoder.encoder_ctl(state, lib.api.ctl.set_bitrate, bitrate)
        self._lib = lib
        self.rate = rate
        self.channels = channels
        #: the bit rate set, bits per second
        self.bitrate = bitrate
        #: the loss the in-band FEC plans for, percent
        self.packet_loss_percent = packet_loss_percent

    def set_bitrate(self, bitrate: int) -> None:
        """Change the bit rate (500-512000 b/s) from the next frame on."""
        if not 500 <= bitrate <= 512000:
            raise ValueError(f"bitrate must be 500..512000, got {bitrate}")
        ctl = self._lib.api
        ctl.encoder.encoder_ctl(self._enc.encoder_state, ctl.ctl.set_bitrate, bitrate)
        self.bitrate = bitrate

    def set_packet_loss_percent(self, percent: int) -> None:
        """Change the loss (0-100 %) the in-band FEC plans for, from the next frame on."""
        if not 0 <= percent <= 100:
            raise ValueError(f"packet_loss_percent must be 0..100, got {percent}")
        ctl = self._lib.api
        ctl.encoder.encoder_ctl(self._enc.encoder_state, ctl.ctl.set_packet_loss_perc, percent)
        self.packet_loss_percent = percent

    def encode(self, frame: npt.NDArray[np.int16]) -> bytes:
        """Encode one frame of 2.5, 5, 10, 20, 40 or 60 ms (int16, interleaved if stereo)."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16:
            raise TypeError("OpusEncoder.encode: expected a numpy int16 array")
        samples = frame.size // self.channels
        if samples * 400 not in {self.rate * ms for ms in (1, 2, 4, 8, 16, 24)}:
            raise ValueError(
                f"OpusEncoder.encode: {samples} samples is not a 2.5/5/10/20/40/60 ms frame "
                f"at {self.rate} Hz"
            )
        data: bytes = self._enc.encode(np.ascontiguousarray(frame).tobytes(), samples)
        return data


@dataclass(frozen=True, slots=True)
class OpusSetting:
    """What :class:`OpusRateController` asks the encoder for."""

    bitrate: int
    packet_loss_percent: int
    red_depth: int = 0
    """Earlier frames each packet repeats (RFC 2198), where the peer takes RED."""


class OpusRateController:
    """Opus bit rate and FEC strength from the loss the far end reports (sans-I/O).

    Feed it each RTCP receiver report's fraction lost for the stream voxwire sends
    (RFC 3550 section 6.4.1: lost / expected since the last report, 0-1) with
    :meth:`report`; it returns a new :class:`OpusSetting` when one is due, else None.

    The rule, from what libopus does (``bench/adaptive_opus.py``): libopus adds its in-band
    FEC (an LBRR copy of the previous frame) to 48 kHz speech only above about 24 kb/s
    with a planned loss of 10% or more, or at 32 kb/s with any planned loss, and the copy
    takes its bits from the frame. So the planned loss never goes below 10% (FEC stays
    on), and the bit rate follows the smoothed loss (``alpha`` of each new report) in three
    tiers: below 1% loss ``low`` (24 kb/s: a clean link saves the bits), below 8% ``mid``
    (32 kb/s), above ``high`` (40 kb/s: room for a stronger copy), with the planned loss
    at ``1.25 * loss + 1`` percent within 10-``max_loss_percent``. In the top tier, when the
    peer takes RFC 2198 redundancy (``red=True``), each packet also repeats the previous
    frame whole: in-band FEC rebuilds a lost frame only when the next packet arrives, and
    at that loss the next one is often lost too. A tier is left only once the loss is a
    third below its threshold, so a link hovering on a threshold does not flap.
    """

    _UP = (0.01, 0.08)  # the loss that moves the tier up from low, from mid

    def __init__(
        self,
        *,
        low: int = 24000,
        mid: int = 32000,
        high: int = 40000,
        alpha: float = 0.5,
        min_loss_percent: int = 10,
        max_loss_percent: int = 25,
        red: bool = False,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 500 <= low <= mid <= high <= 512000:
            raise ValueError(f"need 500 <= low <= mid <= high <= 512000, got {low, mid, high}")
        if not 0 <= min_loss_percent <= max_loss_percent <= 100:
            raise ValueError("need 0 <= min_loss_percent <= max_loss_percent <= 100")
        self.tiers = (low, mid, high)
        self.alpha = alpha
        self.min_loss_percent = min_loss_percent
        self.max_loss_percent = max_loss_percent
        self.red = red
        #: the smoothed reported loss (0-1); None before the first report
        self.loss: float | None = None
        self._tier = 0
        #: the setting in force (start with it)
        self.setting = OpusSetting(low, min_loss_percent)

    def report(self, fraction_lost: float) -> OpusSetting | None:
        """One receiver report; the new setting if it changed."""
        f = min(1.0, max(0.0, float(fraction_lost)))
        self.loss = f if self.loss is None else self.alpha * f + (1 - self.alpha) * self.loss
        loss = self.loss
        tier = self._tier
        while tier < 2 and loss >= self._UP[tier]:
            tier += 1
        while tier > 0 and loss < self._UP[tier - 1] * 2 / 3:
            tier -= 1
        self._tier = tier
        percent = round(1.25 * loss * 100 + 1)
        percent = min(self.max_loss_percent, max(self.min_loss_percent, percent))
        new = OpusSetting(self.tiers[tier], percent, 1 if self.red and tier == 2 else 0)
        if new == self.setting:
            return None
        self.setting = new
        return new
