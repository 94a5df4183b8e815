"""Adaptive jitter buffer with reordering and FEC-aware playout for one RTP stream.

>>> from voxwire.jitter import JitterBuffer
>>> jb = JitterBuffer(clock_rate=8000)
>>> jb.insert(sequence=65535, timestamp=160, payload=bytes(160), now=10.000)
'stored'
>>> jb.pull(10.000).kind  # the target starts at 0: the first frame plays at once
'normal'
>>> unit = jb.pull(10.020)  # the next packet is not in yet: a unit inserted to wait for it
>>> unit.kind, unit.adjustment
('concealed', 'expand')

Packets go in with :meth:`JitterBuffer.insert` as they arrive, in any order, duplicated or
late; :meth:`JitterBuffer.pull` is called once per frame (every 20 ms, or 10 ms) and returns
a :class:`PlayoutUnit` that says what to play:

* ``"normal"``: decode ``payload``;
* ``"fec"``: the frame was lost and is recovered. With ``decode_fec`` true, ``payload`` is
  the *next* packet: decode its in-band FEC (Opus: ``decode_fec=1`` and ``frame_size`` equal
  to ``samples``); otherwise it is a redundant copy (RFC 2198) of the frame itself;
* ``"concealed"``: no data; run packet-loss concealment for ``samples`` samples;
* ``"silence"``: nothing to play (before the first frame, or while the sender pauses).

``adjustment`` says whether the buffer skipped a frame before this one to reduce its delay
(``"accelerate"``) or inserted this unit to add delay or wait for a late packet
(``"expand"``). Adjustments happen at frames the sender marked ``low_energy`` when the
stream carries such hints; see ``docs/jitter.md`` for the rules and the target-delay
estimator. With ``time_stretch=True`` a ``normal`` unit may also carry ``stretch``:
``"shorten"`` or ``"lengthen"`` its decoded audio by one pitch period
(:class:`voxwire.stretch.TimeStretcher`), so the delay changes inside speech without a
whole frame skipped or inserted; the caller keeps the decoded audio in a queue, pulls
(at the current time) whenever it holds less than a frame, and reports what it did with
:meth:`JitterBuffer.note_stretch` (:class:`voxwire.stretch.Playout` does all this).
Frames come out in order and never twice; memory is fixed at construction. Time is
passed in (seconds, any monotonic clock shared by ``insert`` and ``pull``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from voxwire import _core

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from voxwire.rtp import RtpPacket

__all__ = [
    "Adjustment",
    "InsertResult",
    "JitterBuffer",
    "JitterStats",
    "PlayoutKind",
    "PlayoutUnit",
    "Stretch",
]

PlayoutKind = Literal["normal", "fec", "concealed", "silence"]
"""What a :class:`PlayoutUnit` holds."""
Adjustment = Literal["none", "accelerate", "expand"]
"""The delay adjustment a pull made."""
Stretch = Literal["none", "shorten", "lengthen"]
"""A time-stretch the caller should apply to a ``normal`` unit (``time_stretch=True``)."""
InsertResult = Literal["stored", "duplicate", "late", "too_large", "rejected"]
"""What :meth:`JitterBuffer.insert` did with a packet."""


def _ms(seconds: float) -> int:
    return round(seconds * 1000.0)


@dataclass(frozen=True, slots=True)
class PlayoutUnit:
    """One frame of playout from :meth:`JitterBuffer.pull`."""

    kind: PlayoutKind
    adjustment: Adjustment
    decode_fec: bool
    """For ``kind == "fec"``: decode ``payload`` (the next packet) with its in-band FEC."""
    low_energy: bool
    """The played packet's low-energy hint."""
    frame: int
    """Frame index, counting from the first packet's timestamp; +1 per frame of the stream."""
    timestamp: int
    """RTP timestamp of the frame this unit covers."""
    sequence: int
    """Sequence number of the packet played (``normal`` / ``fec``), else 0."""
    payload_type: int
    samples: int
    """Duration in samples at the clock rate (the Opus FEC ``frame_size``)."""
    delay: float
    """Seconds the played packet spent in the buffer (0 without a packet)."""
    payload: bytes
    stretch: Stretch = "none"
    """``time_stretch=True`` only: shorten or lengthen this frame's audio by one period."""


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Cumulative statistics, in the style of W3C RTCInboundRtpStreamStats.

    Delays are sums over emitted samples in seconds: divide ``jitter_buffer_delay`` by
    ``jitter_buffer_emitted_count`` for the mean time a sample spent in the buffer.
    """

    packets_received: int
    packets_lost: int
    packets_discarded: int
    packets_duplicated: int
    packets_late: int
    packets_reordered: int
    packets_rejected: int
    jitter: float
    """Interarrival jitter (RFC 3550 A.8), seconds."""
    jitter_buffer_delay: float
    jitter_buffer_target_delay: float
    jitter_buffer_emitted_count: int
    total_samples: int
    concealed_samples: int
    silent_concealed_samples: int
    concealment_events: int
    fec_packets_received: int
    fec_packets_discarded: int
    fec_frames_used: int
    inserted_samples_for_deceleration: int
    removed_samples_for_acceleration: int
    restarts: int


class JitterBuffer:
    """Reorders one RTP stream and paces it out frame by frame, with an adaptive delay.

    Parameters
    ----------
    clock_rate : int
        RTP timestamp units per second (8000 for G.711, 48000 for Opus).
    frame_ms : int
        Playout unit and packet duration, 10 or 20 ms.
    capacity : int
        Frames the store holds (2..4096); memory is ``capacity * max_payload`` bytes.
    max_payload : int
        Largest payload kept, bytes; larger ones are refused (``"too_large"``).
    min_delay, max_delay : float
        Bounds of the target delay, seconds. ``max_delay`` also caps the playout delay
        (older frames are skipped) and must fit in ``(capacity - 1)`` frames.
    initial_delay : float
        Target delay before arrival statistics exist, seconds (default 0: start at the
        lowest delay the first packet allows and grow by waiting).
    quantile : float
        Quantile of the relative arrival delay the target covers (0.5..1).
    reorder_quantile : float
        Quantile of the relative delay of reordered packets (those that arrive after a later
        one; in-order packets count as 0) the target covers at least (0.5..1); with
        ``time_stretch``, less the frame that a pull's wait for a missing frame covers.
    forget : float
        Forgetting factor of the delay histogram per packet (0.9..1): closer to 1 adapts
        down more slowly.
    fec_lookahead : bool
        Keep one frame more while packets are being lost and the stream carries FEC, so that
        the packet holding a lost frame's FEC is there in time.
    g711_quiet_level : int
        For G.711 (payload type 0 or 8, 20 ms at 8 kHz) the buffer marks a frame
        low-energy itself when its mean absolute sample is at most this (64: about
        -54 dBFS); 0 turns this off.
    time_stretch : bool
        Ask the caller to shorten or lengthen voiced frames by a pitch period (a unit's
        ``stretch``) instead of skipping or inserting whole frames; see the module
        documentation and :class:`voxwire.stretch.Playout`. A missing frame whose successor
        is already in is then waited for one pull (a reordered packet a few ms behind plays
        a frame late, and the excess is shortened away) instead of concealed at once.

    Raises
    ------
    ValueError
        A parameter is outside its range.
    """

    __slots__ = ("_jb",)

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        frame_ms: int = 20,
        capacity: int = 64,
        max_payload: int = 1500,
        min_delay: float = 0.0,
        max_delay: float = 1.0,
        initial_delay: float = 0.0,
        quantile: float = 0.95,
        reorder_quantile: float = 0.99,
        forget: float = 0.998,
        fec_lookahead: bool = True,
        g711_quiet_level: int = 64,
        time_stretch: bool = False,
    ) -> None:
        self._jb = _core.JitterBuffer(
            clock_rate,
            frame_ms,
            capacity,
            max_payload,
            _ms(min_delay),
            _ms(max_delay),
            _ms(initial_delay),
            quantile,
            reorder_quantile,
            forget,
            fec_lookahead,
            g711_quiet_level,
            time_stretch,
        )

    def insert(
        self,
        sequence: int,
        timestamp: int,
        payload: Buffer,
        now: float,
        *,
        ssrc: int = 0,
        payload_type: int = 0,
        marker: bool = False,
        has_fec: bool = False,
        low_energy: bool = False,
    ) -> InsertResult:
        """Take one packet that arrived at ``now`` (seconds).

        ``has_fec``: the payload carries in-band FEC of the previous frame (Opus with
        ``useinbandfec``). ``low_energy``: a quiet frame, where adjusting the delay is
        inaudible. Returns what was done with it; loss, lateness and duplicates are results,
        never exceptions.
        """
        return self._jb.insert(  # type: ignore[return-value]
            sequence,
            timestamp,
            payload,
            _ms(now),
            ssrc,
            payload_type,
            marker,
            has_fec,
            low_energy,
        )

    def insert_packet(
        self, packet: RtpPacket, now: float, *, has_fec: bool = False, low_energy: bool = False
    ) -> InsertResult:
        """Take one parsed :class:`voxwire.rtp.RtpPacket` that arrived at ``now``."""
        return self.insert(
            packet.sequence,
            packet.timestamp,
            packet.payload,
            now,
            ssrc=packet.ssrc,
            payload_type=packet.payload_type,
            marker=packet.marker,
            has_fec=has_fec,
            low_energy=low_energy,
        )

    def insert_redundant(
        self,
        timestamp: int,
        payload: Buffer,
        now: float,
        *,
        payload_type: int = 0,
        has_fec: bool = False,
    ) -> InsertResult:
        """Take a redundant copy of the frame at ``timestamp`` (an RFC 2198 block).

        A primary packet always wins: the copy is kept only while the frame is missing.
        ``has_fec``: the copy carries in-band FEC of the frame before it (an Opus packet
        with LBRR resent in a RED block), so it can rebuild that frame as well.
        """
        return self._jb.insert_redundant(  # type: ignore[return-value]
            timestamp, payload_type, payload, _ms(now), has_fec
        )

    def pull(self, now: float) -> PlayoutUnit:
        """Return the unit to play at ``now`` (seconds); call once per frame."""
        kind, adj, fec, quiet, frame, ts, seq, pt, samples, delay_ms, payload, stretch = (
            self._jb.pull(_ms(now))
        )
        return PlayoutUnit(
            kind,  # type: ignore[arg-type]
            adj,  # type: ignore[arg-type]
            fec,
            quiet,
            frame,
            ts,
            seq,
            pt,
            samples,
            delay_ms / 1000.0,
            payload,
            stretch,  # type: ignore[arg-type]
        )

    def note_stretch(self, samples: int) -> None:
        """Record a time-stretch applied to the audio: ``samples`` removed (< 0) or
        inserted (> 0); they count in ``removed_samples_for_acceleration`` or
        ``inserted_samples_for_deceleration``."""
        self._jb.note_stretch(samples)

    def stats(self) -> JitterStats:
        """Cumulative statistics."""
        return JitterStats(**self._jb.stats())

    def reset(self) -> None:
        """Forget the stream and the statistics (memory is kept)."""
        self._jb.reset()

    @property
    def target_delay(self) -> float:
        """The current target delay, seconds."""
        return self._jb.target_delay_ms / 1000.0

    @property
    def latency(self) -> float:
        """Audio the buffer aims to hold, seconds (the target delay)."""
        return self.target_delay

    @property
    def size(self) -> int:
        """Frames currently stored."""
        return self._jb.size

    @property
    def samples_per_frame(self) -> int:
        """Samples per frame at the clock rate."""
        return self._jb.samples_per_frame
