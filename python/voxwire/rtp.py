"""RTP packets and receive-side stream tracking (IETF RFC 3550).

>>> from voxwire.rtp import RtpPacket, parse_rtp
>>> wire = RtpPacket(payload_type=0, sequence=65535, timestamp=160, ssrc=7,
...                  payload=bytes(160)).to_bytes()
>>> parse_rtp(wire).sequence
65535

:func:`parse_rtp` validates strictly: a truncated packet, a version other than 2, CSRCs,
an extension or padding that run past the end raise :class:`voxwire.errors.RtpError` with
a ``reason``; nothing is ever read outside the packet. Padding is stripped; a header
extension is skipped correctly and exposed as :class:`RtpExtension`.
:func:`extension_element` reads one element of it (RFC 8285, one- and two-byte forms),
and :func:`audio_level` the level a browser puts in every audio packet (RFC 6464).

:class:`RtpSource` follows one incoming stream as RFC 3550 Appendix A.1 describes
(validation of a new source, restart after a confirmed jump in numbering or a change of
SSRC), extends sequence numbers and timestamps past their wraparound, estimates
interarrival jitter (A.8) and keeps receiver statistics (A.3). Loss, reordering,
duplicates and jumps are verdicts and counters, never exceptions. Time is passed in.

:func:`parse_red` and :func:`build_red` read and write the payload format for redundant
audio data (RFC 2198, "RED"): each packet carries its own frame (the primary block) and
copies of earlier ones, each with its payload type and its timestamp offset. WebRTC sends
Opus this way; the receiver gets a frame back from the next packet even when its own is
lost (:meth:`voxwire.jitter.JitterBuffer.insert_redundant`).

>>> from voxwire.rtp import RedBlock, build_red, parse_red
>>> red = build_red(RedBlock(111, 0, b"new"), [RedBlock(111, 960, b"old")])
>>> parse_red(red).redundant[0]
RedBlock(payload_type=111, timestamp_offset=960, data=b'old')

:func:`build_receiver_report` writes an RTCP receiver report (RFC 3550 section 6.4.2)
from :class:`ReportBlock` s, which :meth:`RtpSource.report_block` fills from a stream's
statistics: what a sender needs to learn the loss its packets meet (a WebRTC browser's
Opus encoder adds in-band FEC from it).

>>> block = ReportBlock(ssrc=7, fraction_lost=64, cumulative_lost=3, highest_sequence=70000,
...                     jitter=12)
>>> len(build_receiver_report(0x1234, [block]))
32
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from voxwire import _core
from voxwire.errors import RtpError

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "RED_MAX_BLOCKS",
    "RED_MAX_BLOCK_SIZE",
    "RED_MAX_OFFSET",
    "Arrival",
    "AudioLevel",
    "RedBlock",
    "RedPayload",
    "ReportBlock",
    "RtpExtension",
    "RtpPacket",
    "RtpSender",
    "RtpSource",
    "RtpStats",
    "Verdict",
    "audio_level",
    "build_receiver_report",
    "build_red",
    "extension_element",
    "parse_red",
    "parse_rtp",
]

Verdict = Literal[
    "accepted", "reordered", "duplicate", "too_old", "probation", "bad_jump", "foreign_ssrc"
]
"""What :meth:`RtpSource.receive` made of a packet (see :class:`Arrival`)."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension (RFC 3550 5.3.1): the profile-defined 16 bits and the data."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet, padding stripped."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0
    """Padding bytes the packet carried (or is to carry, for :meth:`to_bytes`)."""

    def to_bytes(self) -> bytes:
        """Serialise the packet; raise ``ValueError`` for a field out of its range."""
        ext = self.extension
        return _core.rtp_build(
            self.marker,
            self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
            list(self.csrcs),
            None if ext is None else ext.profile,
            b"" if ext is None else ext.data,
            self.payload,
            self.padding,
        )


def parse_rtp(data: Buffer) -> RtpPacket:
    """Parse one RTP packet.

    Raises
    ------
    voxwire.errors.RtpError
        The packet is malformed; ``.reason`` says how.
    """
    marker, pt, seq, ts, ssrc, csrcs, ext, payload, padding = _core.rtp_parse(data)
    extension = None if ext is None else RtpExtension(ext[0], ext[1])
    return RtpPacket(pt, seq, ts, ssrc, payload, marker, csrcs, extension, padding)


def extension_element(extension: RtpExtension, ident: int) -> bytes | None:
    """The data of element ``ident`` in a header extension of the RFC 8285 general
    mechanism, one-byte (profile ``0xBEDE``, IDs 1-14) or two-byte (profiles
    ``0x1000``-``0x100F``, IDs 1-255) form; None when the extension has another profile or
    no such element.

    Raises
    ------
    voxwire.errors.RtpError
        ``extension_element_past_end``: an element before the one asked for, or that one,
        claims more bytes than the extension holds.
    """
    data = extension.data
    if extension.profile == 0xBEDE:
        i = 0
        while i < len(data):
            head = data[i]
            if head == 0:  # a padding byte
                i += 1
                continue
            got, length = head >> 4, (head & 0x0F) + 1
            if got == 15:  # reserved: the rest is not to be read (RFC 8285 section 4.2)
                return None
            if i + 1 + length > len(data):
                raise RtpError(
                    "extension_element_past_end",
                    "a header extension element runs past the end of the extension",
                )
            if got == ident:
                return data[i + 1 : i + 1 + length]
            i += 1 + length
        return None
    if extension.profile & 0xFFF0 == 0x1000:
        i = 0
        while i < len(data):
            got = data[i]
            if got == 0:
                i += 1
                continue
            if i + 2 > len(data) or i + 2 + data[i + 1] > len(data):
                raise RtpError(
                    "extension_element_past_end",
                    "a header extension element runs past the end of the extension",
                )
            length = data[i + 1]
            if got == ident:
                return data[i + 2 : i + 2 + length]
            i += 2 + length
    return None


@dataclass(frozen=True, slots=True)
class AudioLevel:
    """The client-to-mixer audio level of one packet (RFC 6464)."""

    level: int
    """The level of the packet's audio in dBov, 0 (loudest) down to -127 (digital silence
    or quieter); the sender measures it before encoding."""
    voice: bool
    """The sender's voice activity flag, when it sets one (browsers set it on every
    packet, so it says little)."""


def audio_level(extension: RtpExtension | None, ident: int) -> AudioLevel | None:
    """The RFC 6464 audio level in a packet's header extension under the negotiated ID
    (``a=extmap:<ident> urn:ietf:params:rtp-hdrext:ssrc-audio-level``), or None when the
    packet has none.

    Raises
    ------
    voxwire.errors.RtpError
        ``extension_element_past_end`` (see :func:`extension_element`) or
        ``bad_audio_level``: the element is empty.
    """
    if extension is None:
        return None
    element = extension_element(extension, ident)
    if element is None:
        return None
    if not element:
        raise RtpError("bad_audio_level", "an audio level element holds no byte")
    return AudioLevel(-(element[0] & 0x7F), bool(element[0] & 0x80))


@dataclass(frozen=True, slots=True)
class RedBlock:
    """One block of an RFC 2198 payload."""

    payload_type: int
    timestamp_offset: int
    """RTP timestamp units before the packet's timestamp (0 for the primary block)."""
    data: bytes


@dataclass(frozen=True, slots=True)
class RedPayload:
    """A parsed RFC 2198 payload: the primary block and the redundant ones, oldest first."""

    primary: RedBlock
    redundant: tuple[RedBlock, ...]


RED_MAX_BLOCKS = 8
"""The most redundant blocks :func:`parse_red` accepts (senders use one or two)."""
RED_MAX_OFFSET = (1 << 14) - 1
"""The largest timestamp offset a RED block header holds (14 bits)."""
RED_MAX_BLOCK_SIZE = (1 << 10) - 1
"""The largest redundant block a RED header describes, bytes (10 bits)."""


def parse_red(payload: Buffer) -> RedPayload:
    """Parse the payload of a RED packet (RFC 2198 section 3).

    Raises
    ------
    voxwire.errors.RtpError
        The payload is malformed: ``red_empty``, ``red_header_past_end`` (no final
        one-byte header within the payload), ``red_too_many_blocks`` (more than
        :data:`RED_MAX_BLOCKS`) or ``red_block_past_end`` (block lengths beyond the end).
    """
    (pt, data), blocks = _core.red_parse(payload)
    return RedPayload(RedBlock(pt, 0, data), tuple(RedBlock(*b) for b in blocks))


def build_red(primary: RedBlock, redundant: Sequence[RedBlock] = ()) -> bytes:
    """Build a RED payload from the primary block and redundant blocks (oldest first).

    Raises ``ValueError`` for a payload type above 127, a timestamp offset above 16383,
    a redundant block above 1023 bytes (the limits of the 14- and 10-bit header fields) or
    more than :data:`RED_MAX_BLOCKS` redundant blocks. The primary's offset is ignored.
    """
    return _core.red_build(
        primary.payload_type,
        primary.data,
        [(b.payload_type, b.timestamp_offset, b.data) for b in redundant],
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """The verdict on one received packet.

    ``extended_sequence`` and ``extended_timestamp`` (for ``accepted`` and ``reordered``
    packets; 0 otherwise) count on past the 16- and 32-bit wraparounds. The first packet
    keeps its own values; after a restart they continue from the highest so far, so they
    never run backwards or collide.
    """

    verdict: Verdict
    restarted: bool
    extended_sequence: int
    extended_timestamp: int

    @property
    def usable(self) -> bool:
        """True if the packet's media should be played (accepted or a reordered gap-filler)."""
        return self.verdict in ("accepted", "reordered")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block of an RTCP SR or RR (RFC 3550 section 6.4.1)."""

    ssrc: int
    """The source reported on."""
    fraction_lost: int
    """Loss since the previous report, in 1/256 (0-255)."""
    cumulative_lost: int
    """Packets lost since the start (expected less received; may be negative with
    duplicates), clamped to 24 bits signed."""
    highest_sequence: int
    """The highest extended sequence number received (32 bits)."""
    jitter: int
    """Interarrival jitter in timestamp units."""
    last_sr: int = 0
    """The middle 32 bits of the NTP timestamp of the last sender report received (0:
    none)."""
    delay_since_last_sr: int = 0
    """Time since that sender report, in 1/65536 s (0: none)."""


def build_receiver_report(sender_ssrc: int, blocks: Sequence[ReportBlock]) -> bytes:
    """An RTCP receiver report (RR, packet type 201) from ``sender_ssrc`` with ``blocks``
    (at most 31), every field range-checked and clamped where RFC 3550 says to.

    Raises
    ------
    ValueError
        More than 31 blocks, or an SSRC or sequence number outside 32 bits.
    """
    if len(blocks) > 31:
        raise ValueError(f"an RTCP RR holds at most 31 report blocks, got {len(blocks)}")
    out = bytearray()
    out += bytes([0x80 | len(blocks), 201])
    out += (1 + 6 * len(blocks)).to_bytes(2, "big")
    out += _u32(sender_ssrc, "sender_ssrc")
    for b in blocks:
        lost = max(-0x800000, min(0x7FFFFF, b.cumulative_lost)) & 0xFFFFFF
        out += _u32(b.ssrc, "ssrc")
        out += bytes([max(0, min(255, b.fraction_lost))]) + lost.to_bytes(3, "big")
        out += _u32(b.highest_sequence, "highest_sequence")
        out += max(0, min(0xFFFFFFFF, b.jitter)).to_bytes(4, "big")
        out += _u32(b.last_sr, "last_sr")
        out += _u32(b.delay_since_last_sr, "delay_since_last_sr")
    return bytes(out)


def _u32(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must fit in 32 bits, got {value}")
    return value.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class RtpStats:
    """Receiver statistics, cumulative (RFC 3550 A.3, W3C RTCInboundRtpStreamStats)."""

    received: int
    expected: int
    lost: int
    duplicates: int
    reordered: int
    too_old: int
    bad_jumps: int
    foreign_ssrc: int
    probation: int
    restarts: int
    jitter: float
    """Interarrival jitter (A.8) in timestamp units."""
    jitter_seconds: float
    fraction_lost: int
    """Loss in the last closed reporting interval, in 1/256 (A.3)."""


class RtpSource:
    """Follows one incoming RTP stream.

    Parameters
    ----------
    clock_rate : int
        RTP timestamp units per second (8000 for G.711, 48000 for Opus).
    min_sequential : int
        Packets in sequence before a new source counts. RFC 3550 suggests 2; the default 1
        keeps the first packet of a call.
    max_dropout, max_misorder : int
        A forward step of at most ``max_dropout`` is loss; a backward step of at most
        ``max_misorder`` is reordering; anything else needs confirmation by the next packet
        (RFC 3550 A.1 defaults 3000 and 100; ``max_misorder`` must be below 1024).
    """

    __slots__ = ("_src",)

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        min_sequential: int = 1,
        max_dropout: int = 3000,
        max_misorder: int = 100,
    ) -> None:
        for name, value in (
            ("clock_rate", clock_rate),
            ("min_sequential", min_sequential),
            ("max_dropout", max_dropout),
        ):
            if value < 1:
                raise ValueError(f"RtpSource: {name} must be >= 1, got {value}")
        if not 0 <= max_misorder < 1024:
            raise ValueError(f"RtpSource: max_misorder must be 0..1023, got {max_misorder}")
        self._src = _core.RtpSource(clock_rate, min_sequential, max_dropout, max_misorder)

    def receive(self, packet: RtpPacket, now: float, *, timed: bool = True) -> Arrival:
        """Take one packet that arrived at ``now`` (seconds, any monotonic clock).

        ``timed=False``: the packet counts for the sequence numbers, loss and statistics but
        not for the jitter estimate, for a packet whose timestamp is not its sampling
        instant: an RFC 4733 telephone event (stamped with its event's start, section
        2.3.5), which shares the audio's SSRC and sequence numbers.
        """
        verdict, restarted, ext_seq, ext_ts = self._src.receive(
            packet.sequence, packet.timestamp, packet.ssrc, round(now * 1000.0), timed
        )
        return Arrival(verdict, restarted, ext_seq, ext_ts)  # type: ignore[arg-type]

    def stats(self) -> RtpStats:
        """Cumulative statistics (``fraction_lost`` is the last closed interval's)."""
        return RtpStats(**self._src.stats())

    def interval_report(self) -> RtpStats:
        """Close a reporting interval and return the statistics with its fraction lost."""
        return RtpStats(**self._src.interval_report())

    def report_block(self) -> ReportBlock | None:
        """Close a reporting interval and return its RTCP report block (None before the
        first accepted packet). The jitter is A.8's estimate in timestamp units."""
        if not self._src.valid:
            return None
        stats = self.interval_report()
        return ReportBlock(
            ssrc=self._src.ssrc,
            fraction_lost=stats.fraction_lost,
            cumulative_lost=stats.lost,
            highest_sequence=self._src.highest_sequence & 0xFFFFFFFF,
            jitter=round(stats.jitter),
        )

    def reset(self) -> None:
        """Forget the stream: the next packet starts a new source."""
        self._src.reset()

    @property
    def valid(self) -> bool:
        """True once a packet has been accepted."""
        return self._src.valid

    @property
    def ssrc(self) -> int:
        """The SSRC being followed."""
        return self._src.ssrc

    @property
    def highest_sequence(self) -> int:
        """The highest extended sequence number accepted so far."""
        return self._src.highest_sequence


class RtpSender:
    """Numbers and stamps an outgoing RTP stream (sans-I/O: returns packets as bytes).

    Sequence numbers, timestamps and the SSRC start at random values, as RFC 3550 section
    5.1 asks. Each packet advances the timestamp by the samples it carries; :meth:`skip`
    advances it over a pause in which nothing is sent (silence suppression, a paused
    reply), and the next packet then carries the marker bit, which RFC 3551 section 4.1
    uses to flag the first packet of a talkspurt. The first packet of the stream is marked
    too.

    Parameters
    ----------
    payload_type : int
        0..127 (0 is PCMU, 8 PCMA; dynamic types such as Opus are negotiated).
    ssrc, first_sequence, first_timestamp : int, optional
        Fixed starting values (for tests or to continue a stream); random by default.
    """

    __slots__ = ("_marker_next", "payload_type", "sequence", "ssrc", "timestamp")

    def __init__(
        self,
        payload_type: int,
        *,
        ssrc: int | None = None,
        first_sequence: int | None = None,
        first_timestamp: int | None = None,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RtpSender: payload_type must be 0..127, got {payload_type}")
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if first_sequence is None else first_sequence
        self.timestamp = secrets.randbits(32) if first_timestamp is None else first_timestamp
        """Sequence number and timestamp of the next packet."""
        self._marker_next = True
        for name, value, bits in (
            ("ssrc", self.ssrc, 32),
            ("first_sequence", self.sequence, 16),
            ("first_timestamp", self.timestamp, 32),
        ):
            if not 0 <= value < 1 << bits:
                raise ValueError(f"RtpSender: {name} must be 0..{(1 << bits) - 1}, got {value}")

    def packet(self, payload: bytes, samples: int) -> bytes:
        """Return the next packet carrying ``payload`` (``samples`` samples of media)."""
        if samples < 0:
            raise ValueError(f"RtpSender.packet: samples must be >= 0, got {samples}")
        wire = RtpPacket(
            self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
            payload,
            marker=self._marker_next,
        ).to_bytes()
        self._marker_next = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return wire

    def skip(self, samples: int) -> None:
        """Advance the timestamp over ``samples`` samples that are not sent; mark the next."""
        if samples < 0:
            raise ValueError(f"RtpSender.skip: samples must be >= 0, got {samples}")
        if samples:
            self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
            self._marker_next = True
