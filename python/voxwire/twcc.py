"""Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01).

The sender numbers every RTP packet it sends on a transport with a 16-bit transport-wide
sequence number, carried in an RFC 8285 one-byte header extension (section 2: ``ID``,
``L=1``, the number big-endian); the receiver answers with RTCP transport feedback
(RTPFB, PT=205, FMT=15, section 3.1) saying, for a run of those numbers, which packets
arrived and when. voxwire reads the loss from it.

* :class:`TransportCcSender` stamps each outgoing packet (:meth:`~TransportCcSender.stamp`)
  and turns each feedback into the loss of that interval
  (:meth:`~TransportCcSender.feedback`).
* :func:`parse_transport_feedback` reads one feedback packet into a
  :class:`TransportFeedback`; :func:`split_rtcp` splits a compound RTCP packet;
  :func:`build_transport_feedback` writes one (tests, and a receiver).

>>> fb = build_transport_feedback(1, 2, base_sequence=65534, reference_time=5,
...                               feedback_count=0, statuses=[1, 0, 2], deltas=[4, -8])
>>> parsed = parse_transport_feedback(fb)
>>> parsed.base_sequence, list(parsed.statuses), parsed.deltas
(65534, [1, 0, 2], (4, -8))

Parsing is strict and bounded: every length is checked against the packet, a reserved
status symbol (``11``) or a count that the chunks or the deltas do not cover raises
:class:`~voxwire.errors.TransportFeedbackError` with a ``reason``; the work is linear in
the packet's bytes plus at most 65535 status bytes, built at C speed.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voxwire.errors import TransportFeedbackError

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "FMT_TRANSPORT_CC",
    "LARGE_DELTA",
    "NOT_RECEIVED",
    "RTCP_RTPFB",
    "SMALL_DELTA",
    "TRANSPORT_CC_URI",
    "FeedbackInterval",
    "TransportCcSender",
    "TransportFeedback",
    "build_transport_feedback",
    "parse_transport_feedback",
    "split_rtcp",
]

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
"""The header extension's URI in SDP (``a=extmap:<id> <uri>``)."""

NOT_RECEIVED = 0
"""Status symbol ``00``: the packet was not received (no receive delta)."""
SMALL_DELTA = 1
"""Status symbol ``01``: received, with a one-byte delta (0 to 63.75 ms)."""
LARGE_DELTA = 2
"""Status symbol ``10``: received, with a two-byte signed delta (large or negative)."""

RTCP_RTPFB = 205
"""RTCP packet type of transport-layer feedback (RFC 4585)."""
FMT_TRANSPORT_CC = 15
"""Its FMT for transport-wide congestion-control feedback."""
_RUN_MAX = 0x1FFF  # 13-bit run length

_RTCP_HEAD = struct.Struct("!BBH")
_FB_HEAD = struct.Struct("!BBHIIHHI")  # RTCP header, SSRCs, base, count, ref time + fb count
_EXT_HEAD = struct.Struct("!HHBHB")  # 0xBEDE, one word, ID/L, sequence, a padding byte
_PLAIN = struct.Struct("!B11sHHBHB")  # a 12-byte header with X set, then _EXT_HEAD


@dataclass(frozen=True, slots=True)
class TransportFeedback:
    """One transport feedback packet (section 3.1)."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    """The transport-wide sequence number of the first packet reported (16 bits)."""
    reference_time: int
    """24-bit signed, in multiples of 64 ms, on the receiver's clock."""
    feedback_count: int
    """The receiver's count of feedback packets sent, modulo 256 (8 bits)."""
    statuses: bytes
    """One status symbol per packet, from ``base_sequence`` on (:data:`NOT_RECEIVED`,
    :data:`SMALL_DELTA`, :data:`LARGE_DELTA`); its length is the packet status count."""
    deltas: tuple[int, ...]
    """The receive delta of each received packet in order, in 250 µs: the first from the
    reference time, each next from the one before."""

    @property
    def packet_status_count(self) -> int:
        return len(self.statuses)

    def to_bytes(self) -> bytes:
        """This feedback as a packet (:func:`build_transport_feedback`)."""
        return build_transport_feedback(
            self.sender_ssrc,
            self.media_ssrc,
            base_sequence=self.base_sequence,
            reference_time=self.reference_time,
            feedback_count=self.feedback_count,
            statuses=list(self.statuses),
            deltas=list(self.deltas),
        )

    def arrivals(self) -> Iterator[tuple[int, int]]:
        """``(sequence, arrival)`` for each received packet: the 16-bit sequence number and
        the arrival time in microseconds on the receiver's clock."""
        at = self.reference_time * 64000
        deltas = iter(self.deltas)
        for i, status in enumerate(self.statuses):
            if status != NOT_RECEIVED:
                at += next(deltas) * 250
                yield (self.base_sequence + i) & 0xFFFF, at


def split_rtcp(data: Buffer) -> list[tuple[int, int, bytes]]:
    """The packets of a compound RTCP packet as ``(packet type, count or FMT, packet)``,
    each packet whole (header and any padding, as its length field says).

    Raises
    ------
    voxwire.errors.TransportFeedbackError
        ``too_short``, ``bad_version`` or ``length_past_end``.
    """
    view = memoryview(data).cast("B")
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(view):
        if len(view) - pos < 4:
            raise TransportFeedbackError("too_short", "an RTCP header needs 4 bytes")
        first, packet_type, words = _RTCP_HEAD.unpack_from(view, pos)
        if first >> 6 != 2:
            raise TransportFeedbackError("bad_version", f"RTCP version {first >> 6}, not 2")
        end = pos + 4 + 4 * words
        if end > len(view):
            raise TransportFeedbackError(
                "length_past_end", f"an RTCP packet of {end - pos} bytes in {len(view) - pos}"
            )
        out.append((packet_type, first & 0x1F, bytes(view[pos:end])))
        pos = end
    return out


def parse_transport_feedback(packet: Buffer) -> TransportFeedback:
    """Parse one transport feedback packet, header included, as :func:`split_rtcp` gives
    it: its RTCP padding (the P bit) is removed, and up to 3 zero bytes after the last
    receive delta (the draft's "zero padding") are allowed.

    Raises
    ------
    voxwire.errors.TransportFeedbackError
        ``too_short``, ``bad_version``, ``length_past_end``, ``bad_padding``,
        ``not_transport_feedback``, ``no_packets`` (a
        status count of 0), ``chunks_past_end`` (the chunks end before the status count
        is covered), ``reserved_symbol`` (``11``), ``deltas_past_end``, ``trailing_data``.
    """
    data = bytes(memoryview(packet).cast("B"))
    if len(data) < _FB_HEAD.size:
        raise TransportFeedbackError(
            "too_short", f"a transport feedback packet needs {_FB_HEAD.size} bytes"
        )
    first, packet_type, words, sender, media, base, count, ref = _FB_HEAD.unpack_from(data)
    if first >> 6 != 2:
        raise TransportFeedbackError("bad_version", f"RTCP version {first >> 6}, not 2")
    end = 4 + 4 * words
    if end > len(data):
        raise TransportFeedbackError(
            "length_past_end", f"an RTCP packet of {end} bytes in {len(data)}"
        )
    if end < len(data):
        raise TransportFeedbackError(
            "trailing_data", f"{len(data) - end} bytes after the RTCP packet's length"
        )
    if first & 0x20:
        pad = data[-1]
        if pad == 0 or pad > end - _FB_HEAD.size:
            raise TransportFeedbackError("bad_padding", f"RTCP padding of {pad} bytes")
        end -= pad
    if packet_type != RTCP_RTPFB or first & 0x1F != FMT_TRANSPORT_CC:
        raise TransportFeedbackError(
            "not_transport_feedback", f"RTCP type {packet_type} FMT {first & 0x1F}, not 205/15"
        )
    if count == 0:
        raise TransportFeedbackError("no_packets", "a packet status count of 0")
    reference = ref >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    statuses = bytearray()
    pos = _FB_HEAD.size
    while len(statuses) < count:
        if end - pos < 2:
            raise TransportFeedbackError(
                "chunks_past_end",
                f"the chunks cover {len(statuses)} of {count} packets before the end",
            )
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        left = count - len(statuses)
        if not chunk & 0x8000:  # run length: T=0, S (2 bits), 13-bit run
            symbol = (chunk >> 13) & 3
            if symbol == 3:
                raise TransportFeedbackError("reserved_symbol", "a run of the reserved symbol")
            statuses += bytes((symbol,)) * min(chunk & _RUN_MAX, left)
        elif not chunk & 0x4000:  # status vector of 14 one-bit symbols
            bits = chunk & 0x3FFF
            statuses += bytes((bits >> (13 - i)) & 1 for i in range(min(14, left)))
        else:  # status vector of 7 two-bit symbols
            for i in range(min(7, left)):
                symbol = (chunk >> (12 - 2 * i)) & 3
                if symbol == 3:
                    raise TransportFeedbackError("reserved_symbol", "the reserved symbol 11")
                statuses.append(symbol)
    deltas: list[int] = []
    for status in statuses:
        if status == SMALL_DELTA:
            if pos >= end:
                raise TransportFeedbackError("deltas_past_end", "a receive delta past the end")
            deltas.append(data[pos])
            pos += 1
        elif status == LARGE_DELTA:
            if end - pos < 2:
                raise TransportFeedbackError("deltas_past_end", "a receive delta past the end")
            delta = (data[pos] << 8) | data[pos + 1]
            deltas.append(delta - 0x10000 if delta & 0x8000 else delta)
            pos += 2
    if end - pos > 3 or any(data[pos:end]):
        raise TransportFeedbackError(
            "trailing_data", f"{end - pos} bytes after the last receive delta"
        )
    return TransportFeedback(
        sender, media, base, reference, ref & 0xFF, bytes(statuses), tuple(deltas)
    )


def build_transport_feedback(
    sender_ssrc: int,
    media_ssrc: int,
    *,
    base_sequence: int,
    reference_time: int,
    feedback_count: int,
    statuses: Sequence[int],
    deltas: Sequence[int],
) -> bytes:
    """One transport feedback packet (section 3.1), padded to 32 bits with RTCP padding.

    ``statuses`` holds a symbol per packet from ``base_sequence``; ``deltas`` one receive
    delta (250 µs) per received packet: 0-255 for :data:`SMALL_DELTA`, -32768..32767 for
    :data:`LARGE_DELTA`. Runs of one symbol become run-length chunks, the rest status
    vectors (one-bit when they hold no large delta).

    Raises
    ------
    ValueError
        A field out of its range, a symbol that is not 0-2, a delta count or value that
        does not match its symbol, or no statuses.
    """
    n = len(statuses)
    if not 1 <= n <= 0xFFFF:
        raise ValueError(f"a feedback reports 1-65535 packets, got {n}")
    if any(s not in (NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA) for s in statuses):
        raise ValueError("a status symbol is 0, 1 or 2")
    received = [s for s in statuses if s != NOT_RECEIVED]
    if len(received) != len(deltas):
        raise ValueError(f"{len(received)} received packets, {len(deltas)} deltas")
    for name, value, bits in (
        ("sender_ssrc", sender_ssrc, 32),
        ("media_ssrc", media_ssrc, 32),
        ("base_sequence", base_sequence, 16),
        ("feedback_count", feedback_count, 8),
    ):
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{name} must fit in {bits} bits, got {value}")
    if not -(1 << 23) <= reference_time < 1 << 23:
        raise ValueError(f"reference_time is 24 bits signed, got {reference_time}")
    body = bytearray()
    i = 0
    while i < n:
        symbol = statuses[i]
        run = 1
        while i + run < n and run < _RUN_MAX and statuses[i + run] == symbol:
            run += 1
        ahead = statuses[i : i + 14]
        if run >= 14 or run == n - i:
            body += ((symbol << 13) | run).to_bytes(2, "big")
            i += run
        elif LARGE_DELTA not in ahead:
            bits = 0
            for k, s in enumerate(ahead):
                bits |= s << (13 - k)
            body += (0x8000 | bits).to_bytes(2, "big")
            i += len(ahead)
        else:
            two = statuses[i : i + 7]
            bits = 0
            for k, s in enumerate(two):
                bits |= s << (12 - 2 * k)
            body += (0xC000 | bits).to_bytes(2, "big")
            i += len(two)
    for status, delta in zip(received, deltas, strict=True):
        if status == SMALL_DELTA:
            if not 0 <= delta <= 0xFF:
                raise ValueError(f"a small delta is 0-255, got {delta}")
            body.append(delta)
        else:
            if not -0x8000 <= delta <= 0x7FFF:
                raise ValueError(f"a large delta is 16 bits signed, got {delta}")
            body += (delta & 0xFFFF).to_bytes(2, "big")
    pad = -len(body) % 4
    if pad:
        body += bytes(pad - 1) + bytes((pad,))
    words = (_FB_HEAD.size + len(body)) // 4 - 1
    head = _FB_HEAD.pack(
        0x80 | (0x20 if pad else 0) | FMT_TRANSPORT_CC,
        RTCP_RTPFB,
        words,
        sender_ssrc,
        media_ssrc,
        base_sequence,
        n,
        ((reference_time & 0xFFFFFF) << 8) | feedback_count,
    )
    return head + bytes(body)


@dataclass(frozen=True, slots=True)
class FeedbackInterval:
    """What one feedback told of the packets sent (each sequence number counted once)."""

    reported: int
    """Packets sent whose fate this feedback reported first."""
    lost: int
    """The change in packets reported lost and not received since: +1 for each newly
    reported not received, -1 for each reported lost before and received now."""
    unknown: int
    """Statuses for sequence numbers not sent, or sent before the tracking window."""

    @property
    def fraction_lost(self) -> float | None:
        """``lost / reported`` clamped to 0-1 (None when nothing new was reported), as
        RFC 3550 section 6.4.1 clamps its fraction lost."""
        if self.reported <= 0:
            return None
        return min(1.0, max(0.0, self.lost / self.reported))


_UNREPORTED, _LOST, _RECEIVED = 0, 1, 2


class TransportCcSender:
    """Stamps an outgoing stream with transport-wide sequence numbers and reads the loss
    from the feedback (sans-I/O).

    Parameters
    ----------
    extension_id : int
        The one-byte header extension's ID negotiated in SDP (1-14).
    first_sequence : int, optional
        The first packet's number (random by default).
    window : int
        The sequence numbers (most recent) whose fate is kept; older ones are ignored in
        feedback. 4096 is 80 s of 20 ms packets.
    """

    __slots__ = (
        "_first",
        "_id_byte",
        "_next",
        "_state",
        "_window",
        "lost",
        "reported",
        "sent",
        "unknown",
    )

    def __init__(
        self, extension_id: int, *, first_sequence: int | None = None, window: int = 4096
    ) -> None:
        if not 1 <= extension_id <= 14:
            raise ValueError(f"a one-byte header extension ID is 1-14, got {extension_id}")
        if first_sequence is None:
            first_sequence = secrets.randbits(16)
        if not 0 <= first_sequence <= 0xFFFF:
            raise ValueError(f"first_sequence must be 0..65535, got {first_sequence}")
        if not 16 <= window <= 32768:
            raise ValueError(f"window must be 16..32768, got {window}")
        self._id_byte = (extension_id << 4) | 1  # L=1: two bytes of data
        self._first = first_sequence
        self._next = first_sequence  # extended: counts on past 65535
        self._window = window
        self._state = bytearray(window)
        #: packets stamped
        self.sent = 0
        #: sequence numbers whose fate was reported, and those now reported not received
        self.reported = 0
        self.lost = 0
        #: statuses about numbers not sent or out of the window
        self.unknown = 0

    @property
    def next_sequence(self) -> int:
        """The 16-bit number the next packet gets."""
        return self._next & 0xFFFF

    def stamp(self, packet: Buffer) -> bytes:
        """``packet`` (an RTP packet) with the header extension carrying the next number.

        A packet without header extension gets one (X set, ``0xBEDE``, one word); one
        with a one-byte extension gets the element appended. Anything else (not RTP
        version 2, shorter than its header, another extension profile) is returned
        unchanged and not numbered.
        """
        data = packet if type(packet) is bytes else bytes(packet)
        if len(data) < 12 or data[0] >> 6 != 2:
            return data
        first = data[0]
        at = 12 + 4 * (first & 0x0F)
        seq = self._next & 0xFFFF
        if not first & 0x1F:  # no extension, no CSRC: what voxwire sends, in one pack
            out = (
                _PLAIN.pack(first | 0x10, data[1:12], 0xBEDE, 1, self._id_byte, seq, 0) + data[12:]
            )
        elif not first & 0x10:
            if at > len(data):
                return data
            out = (
                bytes((first | 0x10,))
                + data[1:at]
                + _EXT_HEAD.pack(0xBEDE, 1, self._id_byte, seq, 0)
                + data[at:]
            )
        else:
            if at + 4 > len(data):
                return data
            profile, words = struct.unpack_from("!HH", data, at)
            end = at + 4 + 4 * words
            if profile != 0xBEDE or end > len(data) or words >= 0xFFFF:
                return data
            out = (
                data[:at]
                + struct.pack("!HH", 0xBEDE, words + 1)
                + data[at + 4 : end]
                + bytes((self._id_byte, seq >> 8, seq & 0xFF, 0))
                + data[end:]
            )
        self._state[self._next % self._window] = _UNREPORTED
        self._next += 1
        self.sent += 1
        return out

    def feedback(self, fb: TransportFeedback) -> FeedbackInterval:
        """Take one feedback: each status of a number sent in the window moves it from
        unreported to lost or received, or from lost to received (a late arrival, or a
        later feedback that saw it); nothing moves a received packet back."""
        last = self._next - 1
        oldest = max(self._first, self._next - self._window)
        if self._next == self._first:
            return FeedbackInterval(0, 0, len(fb.statuses))
        base = last - ((last - fb.base_sequence) & 0xFFFF)  # the latest sent with this number
        lo = max(0, oldest - base)
        hi = min(len(fb.statuses), last + 1 - base)
        reported = lost = 0
        state = self._state
        window = self._window
        statuses = fb.statuses
        for i in range(lo, hi):
            slot = (base + i) % window
            was = state[slot]
            if statuses[i] == NOT_RECEIVED:
                if was == _UNREPORTED:
                    state[slot] = _LOST
                    reported += 1
                    lost += 1
            elif was != _RECEIVED:
                state[slot] = _RECEIVED
                if was == _UNREPORTED:
                    reported += 1
                else:
                    lost -= 1
        unknown = len(statuses) - max(0, hi - lo)
        self.reported += reported
        self.lost += lost
        self.unknown += unknown
        return FeedbackInterval(reported, lost, unknown)
