"""A sans-I/O RTP media session: datagrams in, 20 ms PCM frames out, and the reverse.

>>> import numpy as np
>>> from voxwire.protocols.rtp_session import RtpSession
>>> alice = RtpSession("pcmu", ssrc=1, first_sequence=65535, first_timestamp=0)
>>> bob = RtpSession("pcmu")
>>> wire = alice.send(np.zeros(160, dtype=np.int16))       # one RTP packet, as bytes
>>> bob.receive(wire, now=0.000)
'stored'
>>> bob.pull(0.000).kind    # the target starts at 0 and grows with the network's jitter
'normal'

One :class:`RtpSession` per call and direction pair. It never touches a socket or a clock:

* :meth:`RtpSession.receive` takes one UDP datagram and the time it arrived. The packet is
  parsed (RFC 3550 section 5.1), followed by an :class:`~voxwire.rtp.RtpSource` for the
  receiver statistics (RFC 3550 A.1, A.3, A.8), and stored in a
  :class:`~voxwire.jitter.JitterBuffer`, which reorders it and decides when it plays. An
  Opus payload is inspected for in-band FEC (RFC 6716 4.2.3) so that the buffer can use it
  for the frame before; a frame below ``quiet_level`` is flagged low-energy, where the
  buffer prefers to make its delay adjustments: G.711 from its own samples, any codec from
  the RFC 6464 audio level the sender puts in its header extension (browsers do, on every
  packet) when ``audio_level_id`` names the negotiated ID. A malformed packet, an RTCP packet
  on the same port (RFC 5761 section 4) or a payload type other than the session's is
  counted by reason and dropped; nothing here raises for what the network sends.
* :meth:`RtpSession.pull` is called once per frame on the playout clock and returns a
  :class:`ReceivedFrame`: exactly one frame of mono PCM16 at the decoder rate, labelled
  ``normal``, ``fec`` (rebuilt from the next packet's in-band FEC, or from a redundant
  copy), ``concealed`` (packet-loss concealment) or ``silence`` (nothing to play yet, or
  the sender paused). G.711 is decoded with voxwire's own kernels and concealed with
  :class:`~voxwire.plc.Concealer`; Opus is decoded, FEC-recovered and concealed by libopus
  through :class:`~voxwire.opus.OpusDecoder`. With ``time_stretch`` (the default) the
  jitter buffer changes its delay inside speech by having one pitch period of a voiced
  frame removed or repeated (:class:`~voxwire.stretch.Playout`) instead of skipping or
  inserting a whole frame; a received frame then starts wherever the audio is, and its
  labels are those of the unit its audio starts with.
* Redundancy (RFC 2198, "RED"): with ``red_payload_type`` set, a packet of that type is
  split into its blocks; the primary block is the packet's own frame and each redundant
  block of the session's payload type goes to the jitter buffer as a copy of its earlier
  frame, which then plays when that frame's own packet is lost or late. With Opus each
  copy keeps its in-band FEC, so one packet can rebuild two earlier frames. Packets of
  the session's own payload type are still taken as they are (a peer may send either).
  ``red_depth`` frames are resent in every packet :meth:`RtpSession.send` writes.
* :meth:`RtpSession.send` encodes one frame of PCM16 and returns the RTP packet to send;
  :meth:`RtpSession.pause` advances the timestamp over audio that is not sent, so the next
  packet starts a talkspurt with the marker bit (RFC 3551 section 4.1).

Payload types: 0 for PCMU and 8 for PCMA (RFC 3551 table 4); Opus has no static type and
uses the one negotiated in SDP (``payload_type``, 111 by default as most browsers offer).
Opus RTP timestamps always count at 48 kHz (RFC 7587 section 4.1), whatever rate it is
decoded at.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from voxwire._types import PCM as PCM
from voxwire.errors import OpusPacketError, RtpError
from voxwire.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from voxwire.jitter import (
    Adjustment,
    InsertResult,
    JitterBuffer,
    JitterStats,
    PlayoutKind,
    PlayoutUnit,
)
from voxwire.plc import Concealer
from voxwire.rtp import (
    RED_MAX_BLOCK_SIZE,
    RED_MAX_OFFSET,
    RedBlock,
    ReportBlock,
    RtpExtension,
    RtpPacket,
    RtpSender,
    RtpSource,
    RtpStats,
    audio_level,
    build_red,
    parse_red,
    parse_rtp,
)
from voxwire.stretch import Playout, TimeStretcher

if TYPE_CHECKING:
    from voxwire.opus import OpusDecoder, OpusEncoder

__all__ = [
    "Codec",
    "ReceiveResult",
    "ReceivedFrame",
    "RtpSession",
    "RtpSessionStats",
]

Codec = Literal["pcmu", "pcma", "opus"]
"""The session's codec: G.711 mu-law, G.711 A-law, or Opus."""

ReceiveResult = Literal[
    "stored", "duplicate", "late", "too_large", "rejected", "malformed", "rtcp", "other_payload"
]
"""What :meth:`RtpSession.receive` did with a datagram: the jitter buffer's verdict
(:data:`voxwire.jitter.InsertResult`), or why it never got there."""

STATIC_PAYLOAD_TYPES: dict[str, int] = {"pcmu": 0, "pcma": 8}
OPUS_CLOCK_RATE = 48000


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """One frame of playout from :meth:`RtpSession.pull`."""

    pcm: PCM
    """Mono PCM16 at :attr:`RtpSession.sample_rate`, exactly one frame long."""
    kind: PlayoutKind
    """``normal``, ``fec``, ``concealed`` or ``silence`` (see :mod:`voxwire.jitter`)."""
    adjustment: Adjustment
    """A delay adjustment the jitter buffer made before or with this frame."""
    timestamp: int
    """RTP timestamp of the frame."""
    sequence: int
    """Sequence number of the packet played (``normal`` / ``fec``), else 0."""
    delay: float
    """Seconds the played packet spent in the jitter buffer."""


@dataclass(frozen=True, slots=True)
class RtpSessionStats:
    """Cumulative statistics of a session.

    ``rtp`` is the RFC 3550 receiver view of the stream (``None`` before the first valid
    packet), ``jitter`` the jitter buffer's W3C-style view. ``malformed`` counts dropped
    datagrams by reason: the :class:`~voxwire.errors.RtpError` reasons (``red_<reason>``
    for a RED payload), ``opus_<reason>`` for an Opus payload that breaks RFC 6716
    section 3.4, ``decode_error`` for a payload
    the decoder refused (that frame is concealed instead), and ``wrong_duration`` for a
    packet holding another duration than ``frame_ms`` (played cut or padded to one
    frame; the jitter buffer assumes one frame per packet).
    """

    rtp: RtpStats | None
    jitter: JitterStats
    malformed: dict[str, int]
    other_payload_types: dict[int, int]
    """Packets dropped for a payload type other than the session's, by type."""
    rtcp_packets: int
    red_copies: int
    """Redundant (RFC 2198) copies handed to the jitter buffer."""
    red_ignored: int
    """Redundant blocks of another payload type or not a whole number of frames back."""
    audio_levels: int
    """Packets that carried an RFC 6464 audio level under ``audio_level_id``."""
    extension_errors: int
    """Packets whose header extension could not be read for the audio level (the packet
    was played, without a level)."""
    telephone_events: int
    """RFC 4733 telephone-event packets counted by :meth:`RtpSession.count_event`."""
    shortened: int
    """Frames played one pitch period shorter (time-stretching, to lower the delay)."""
    lengthened: int
    """Frames played one pitch period longer (to raise it)."""
    frames: dict[str, int]
    """Frames pulled, by kind."""
    packets_sent: int
    bytes_sent: int


@dataclass
class _Counters:
    malformed: Counter[str] = field(default_factory=Counter)
    other_payload_types: Counter[int] = field(default_factory=Counter)
    frames: Counter[str] = field(default_factory=Counter)
    rtcp_packets: int = 0
    red_copies: int = 0
    red_ignored: int = 0
    audio_levels: int = 0
    extension_errors: int = 0
    telephone_events: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0


class RtpSession:
    """Receives and sends one RTP audio stream; see the module documentation.

    Parameters
    ----------
    codec : {"pcmu", "pcma", "opus"}
        The negotiated codec.
    payload_type : int, optional
        The RTP payload type: 0 for PCMU and 8 for PCMA by default; for Opus the dynamic
        type from SDP (default 111).
    sample_rate : int, optional
        Rate of the PCM in and out. G.711 is 8000 only; Opus decodes and encodes at 8000,
        12000, 16000, 24000 or 48000 (default 48000).
    frame_ms : int
        Frame and packet duration, 10 or 20 ms.
    jitter : dict, optional
        Keyword arguments for :class:`~voxwire.jitter.JitterBuffer` (delays, capacity...).
    quiet_level : float
        G.711 frames whose RMS level is below this many dBFS are flagged to the jitter
        buffer as low-energy: it then makes its delay adjustments (a skipped or inserted
        frame) at those frames, where they are inaudible, and waits on them with silence
        rather than concealment. With ``audio_level_id``, so are the packets whose RFC
        6464 level is at or below it (dBov: WebRTC measures it as the RMS against full
        scale, as ``quiet_level`` is), whatever the codec.
    audio_level_id : int, optional
        The ID of the RFC 6464 client-to-mixer audio level header extension
        (``a=extmap:<id> urn:ietf:params:rtp-hdrext:ssrc-audio-level`` in SDP). An Opus
        payload cannot be told quiet without decoding it, so this is what gives the jitter
        buffer its low-energy hints on an Opus stream. A packet without the element gets
        no hint; one whose extension cannot be read is still played and is counted in
        ``extension_errors``.
    opus_bitrate, opus_loss_percent : int
        For sending Opus: bit rate and the loss the encoder's in-band FEC plans for.
    red_payload_type : int, optional
        The dynamic payload type negotiated for RFC 2198 redundancy (``a=rtpmap:<pt>
        red/<rate>`` in SDP; browsers commonly offer 63). None: no RED.
    red_depth : int
        How many earlier frames each sent packet repeats (0, 1 or 2; needs
        ``red_payload_type``). One doubles the payload bit rate, two triples it.
    time_stretch : bool
        Change the playout delay inside speech by removing or repeating one pitch period
        of a voiced frame (:class:`~voxwire.stretch.Playout`) rather than by skipping or
        inserting whole frames, which then happen only at quiet frames or for large
        errors. False: whole frames only, one received frame per RTP frame.
    ssrc, first_sequence, first_timestamp : int, optional
        Fixed starting values of the sent stream (random by default, RFC 3550 5.1).

    Raises
    ------
    ValueError
        An unknown codec, or a rate or payload type the codec cannot use.
    voxwire.errors.OpusUnavailable
        Opus was asked for and libopus or opuslib is missing.
    """

    def __init__(
        self,
        codec: Codec,
        *,
        payload_type: int | None = None,
        sample_rate: int | None = None,
        frame_ms: int = 20,
        jitter: dict[str, float | int | bool] | None = None,
        quiet_level: float = -45.0,
        audio_level_id: int | None = None,
        opus_bitrate: int = 32000,
        opus_loss_percent: int = 10,
        red_payload_type: int | None = None,
        red_depth: int = 0,
        time_stretch: bool = True,
        ssrc: int | None = None,
        first_sequence: int | None = None,
        first_timestamp: int | None = None,
    ) -> None:
        if codec not in ("pcmu", "pcma", "opus"):
            raise ValueError(f"RtpSession: codec must be 'pcmu', 'pcma' or 'opus', got {codec!r}")
        if frame_ms not in (10, 20):
            raise ValueError(f"RtpSession: frame_ms must be 10 or 20, got {frame_ms}")
        self.codec: Codec = codec
        if payload_type is None:
            payload_type = STATIC_PAYLOAD_TYPES.get(codec, 111)
        if not 0 <= payload_type <= 127 or 64 <= payload_type <= 95:
            # With the marker bit set, types 64-95 look like RTCP packet types 192-223, which
            # share the port (RFC 5761 section 4).
            raise ValueError(
                f"RtpSession: payload_type must be 0..63 or 96..127, got {payload_type}"
            )
        self.payload_type = payload_type
        if red_payload_type is not None and (
            red_payload_type == payload_type
            or not (0 <= red_payload_type <= 63 or 96 <= red_payload_type <= 127)
        ):
            raise ValueError(
                "RtpSession: red_payload_type must be 0..63 or 96..127 and differ from "
                f"payload_type, got {red_payload_type}"
            )
        if red_depth not in (0, 1, 2) or (red_depth and red_payload_type is None):
            raise ValueError(
                f"RtpSession: red_depth must be 0, 1 or 2 (1, 2 need red_payload_type), "
                f"got {red_depth}"
            )
        self.red_payload_type = red_payload_type
        self.red_depth = red_depth
        self._sent: list[tuple[int, bytes]] = []  # (timestamp, payload) of recent frames
        self.clock_rate = OPUS_CLOCK_RATE if codec == "opus" else 8000
        if sample_rate is None:
            sample_rate = self.clock_rate
        if codec != "opus" and sample_rate != 8000:
            raise ValueError(f"RtpSession: G.711 runs at 8000 Hz, got sample_rate={sample_rate}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate * frame_ms // 1000
        """Samples of PCM per frame at :attr:`sample_rate`."""
        self.frame_ticks = self.clock_rate * frame_ms // 1000
        """RTP timestamp units per frame."""
        # 0 dBFS is the mean square of a full-scale square wave
        self._quiet_power = float(32768.0**2 * 10.0 ** (quiet_level / 10.0))
        if audio_level_id is not None and not 1 <= audio_level_id <= 255:
            raise ValueError(f"RtpSession: audio_level_id must be 1..255, got {audio_level_id}")
        self.audio_level_id = audio_level_id
        self._quiet_level = quiet_level
        options = {"time_stretch": time_stretch, **(jitter or {})}
        self._jb = JitterBuffer(self.clock_rate, frame_ms=frame_ms, **options)  # type: ignore[arg-type]
        self._playout = Playout(
            self._jb, self._unit_pcm, self.frame_samples, TimeStretcher(sample_rate)
        )
        self._source: RtpSource | None = None
        self._sender = RtpSender(
            payload_type if red_depth == 0 else red_payload_type,  # type: ignore[arg-type]
            ssrc=ssrc,
            first_sequence=first_sequence,
            first_timestamp=first_timestamp,
        )
        self._n = _Counters()
        self._pulled: list[tuple[PlayoutUnit, int]] = []
        self._concealer: Concealer | None = None
        self._decoder: OpusDecoder | None = None
        self._encoder: OpusEncoder | None = None
        if codec == "opus":
            from voxwire.opus import OpusDecoder, OpusEncoder

            self._decoder = OpusDecoder(sample_rate)
            self._encoder = OpusEncoder(
                sample_rate, bitrate=opus_bitrate, packet_loss_percent=opus_loss_percent
            )
        else:
            self._concealer = Concealer(sample_rate)

    def set_red_depth(self, depth: int) -> None:
        """Change how many earlier frames each sent packet repeats (0, 1 or 2; 1 and 2 need
        ``red_payload_type``), from the next packet on."""
        if depth not in (0, 1, 2) or (depth and self.red_payload_type is None):
            raise ValueError(
                "RtpSession.set_red_depth: depth must be 0, 1 or 2 (1, 2 need "
                f"red_payload_type), got {depth}"
            )
        if depth == self.red_depth:
            return
        self.red_depth = depth
        self._sent = self._sent[-depth:] if depth else []
        self._sender.payload_type = (
            self.payload_type if depth == 0 else self.red_payload_type  # type: ignore[assignment]
        )

    @property
    def opus_encoder(self) -> OpusEncoder | None:
        """The Opus encoder of the sent stream (None for G.711): its bit rate and FEC
        strength can be changed during the call (:class:`voxwire.opus.OpusRateController`)."""
        return self._encoder

    # --- receive side ----------------------------------------------------------------

    def receive(self, datagram: bytes | bytearray | memoryview, now: float) -> ReceiveResult:
        """Take one datagram that arrived at ``now`` (seconds, the clock :meth:`pull` uses).

        Returns what was done with it; nothing the peer sends makes this raise.
        """
        data = bytes(datagram)
        if len(data) >= 2 and data[0] >> 6 == 2 and 192 <= data[1] <= 223:
            # RTCP multiplexed on the RTP port: its packet type sits where the marker bit
            # and payload type would be (RFC 5761 section 4).
            self._n.rtcp_packets += 1
            return "rtcp"
        try:
            packet = parse_rtp(data)
        except RtpError as e:
            self._n.malformed[e.reason] += 1
            return "malformed"
        copies: tuple[RedBlock, ...] = ()
        if packet.payload_type == self.red_payload_type:
            try:
                red = parse_red(packet.payload)
            except RtpError as e:
                self._n.malformed[e.reason] += 1
                return "malformed"
            if red.primary.payload_type != self.payload_type:
                self._n.other_payload_types[red.primary.payload_type] += 1
                return "other_payload"
            packet = replace(packet, payload_type=self.payload_type, payload=red.primary.data)
            copies = red.redundant
        elif packet.payload_type != self.payload_type:
            self._n.other_payload_types[packet.payload_type] += 1
            return "other_payload"
        try:
            fec, quiet = self._inspect(packet.payload)
        except OpusPacketError as e:
            self._n.malformed[f"opus_{e.reason}"] += 1
            return "malformed"
        if self.audio_level_id is not None and not quiet:
            quiet = self._level_quiet(packet.extension, self.audio_level_id)
        if self._source is None:
            self._source = RtpSource(self.clock_rate)
        # RtpSource gives the RFC 3550 receiver report; the jitter buffer makes its own
        # decisions on duplicates, lateness and restarts, so every packet goes to both.
        self._source.receive(packet, now)
        result: InsertResult = self._jb.insert_packet(packet, now, has_fec=fec, low_energy=quiet)
        for block in copies:
            self._insert_copy(packet.timestamp, block, now)
        return result

    def _inspect(self, payload: bytes) -> tuple[bool, bool]:
        """(carries in-band FEC, low-energy) for one frame's payload; raises
        OpusPacketError for a malformed Opus packet."""
        if self.codec == "opus":
            from voxwire.opus import has_fec, packet_info

            packet_info(payload)
            return has_fec(payload), False
        return False, self._quiet(payload)

    def _level_quiet(self, extension: RtpExtension | None, ident: int) -> bool:
        """Whether the packet's RFC 6464 audio level puts it at or below ``quiet_level``."""
        try:
            level = audio_level(extension, ident)
        except RtpError:
            self._n.extension_errors += 1
            return False
        if level is None:
            return False
        self._n.audio_levels += 1
        return level.level <= self._quiet_level

    def _insert_copy(self, timestamp: int, block: RedBlock, now: float) -> None:
        # A copy of an earlier frame of this stream: same payload type, a whole number of
        # frames back. Anything else in a RED packet (another codec's blocks, comfort
        # noise, a zero or odd offset) is counted and ignored.
        off = block.timestamp_offset
        if block.payload_type != self.payload_type or off == 0 or off % self.frame_ticks:
            self._n.red_ignored += 1
            return
        try:
            fec, _ = self._inspect(block.data)
        except OpusPacketError as e:
            self._n.malformed[f"opus_{e.reason}"] += 1
            return
        self._n.red_copies += 1
        self._jb.insert_redundant(
            (timestamp - off) & 0xFFFFFFFF,
            block.data,
            now,
            payload_type=self.payload_type,
            has_fec=fec,
        )

    def _quiet(self, payload: bytes) -> bool:
        if not payload:
            return False
        codes = np.frombuffer(payload, dtype=np.uint8)
        pcm = decode_ulaw(codes) if self.codec == "pcmu" else decode_alaw(codes)
        power = float(np.dot(pcm, pcm.astype(np.float64))) / len(pcm)
        return power < self._quiet_power

    def pull(self, now: float) -> ReceivedFrame:
        """Return the frame to play at ``now``; call once per frame (every ``frame_ms``).

        The frame's labels (kind, adjustment, timestamp, sequence, delay) are those of the
        unit its audio starts with; after a time-stretch that may be the rest of a frame
        pulled before.
        """
        pcm, first, started = self._playout.pull(now)
        self._pulled = started
        for unit, _ in started:
            self._n.frames[unit.kind] += 1
        return ReceivedFrame(
            pcm, first.kind, first.adjustment, first.timestamp, first.sequence, first.delay
        )

    @property
    def pulled_units(self) -> list[tuple[PlayoutUnit, int]]:
        """Every unit the jitter buffer gave for the frame :meth:`pull` returned last, as
        played (after decoding), each with the sample offset in that frame where its audio
        starts. One per frame without time-stretching; with it, a frame can hold the start
        of two units (after one was shortened) or of none (after one was lengthened), so
        a frame of the stream that played is one whose unit is listed here, not only one
        whose timestamp a :class:`ReceivedFrame` carries."""
        return self._pulled

    def _unit_pcm(self, unit: PlayoutUnit) -> tuple[PlayoutUnit, PCM]:
        kind: PlayoutKind = unit.kind
        pcm: PCM | None = None
        if kind == "normal" or (kind == "fec" and not unit.decode_fec):
            pcm = self._decode(unit.payload)
            if pcm is None:
                kind = "concealed"
        elif kind == "fec":
            pcm = self._decode_fec(unit.payload)
            if pcm is None:
                kind = "concealed"
        if kind == "concealed":
            pcm = self._conceal()
        elif kind == "silence":
            pcm = np.zeros(self.frame_samples, dtype=np.int16)
            if self._concealer is not None:
                # a pause, not a loss: the frame after it must not be cross-faded with a
                # continuation of the audio before it
                self._concealer.good(pcm)
        assert pcm is not None
        return (unit if kind == unit.kind else replace(unit, kind=kind)), pcm

    def _fit(self, pcm: PCM) -> PCM:
        # A peer that packs another duration than negotiated: play one frame's worth.
        n = self.frame_samples
        if len(pcm) == n:
            return pcm
        self._n.malformed["wrong_duration"] += 1
        out = np.zeros(n, dtype=np.int16)
        out[: min(n, len(pcm))] = pcm[:n]
        return out

    def _decode(self, payload: bytes) -> PCM | None:
        if self._decoder is not None:
            try:
                pcm = self._decoder.decode(payload)
            except Exception:  # libopus refused the payload (opuslib raises OpusError)
                self._n.malformed["decode_error"] += 1
                return None
            return self._fit(pcm)
        codes = np.frombuffer(payload, dtype=np.uint8)
        pcm = decode_ulaw(codes) if self.codec == "pcmu" else decode_alaw(codes)
        pcm = self._fit(pcm)
        assert self._concealer is not None
        self._concealer.good(pcm)  # in place: cross-fades the first frame after a loss
        return pcm

    def _decode_fec(self, next_packet: bytes) -> PCM | None:
        assert self._decoder is not None
        try:
            pcm, how = self._decoder.recover(next_packet, self.frame_samples)
        except Exception:  # a payload libopus refuses
            self._n.malformed["decode_error"] += 1
            return None
        if how != "fec":
            self._n.frames["fec_missing"] += 1
        return self._fit(pcm)

    def _conceal(self) -> PCM:
        if self._decoder is not None:
            return self._fit(self._decoder.conceal(self.frame_samples))
        assert self._concealer is not None
        return self._concealer.conceal(self.frame_samples)

    # --- send side -------------------------------------------------------------------

    def send(self, pcm: PCM) -> bytes:
        """Encode one frame of mono PCM16 at :attr:`sample_rate`; return the RTP packet."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(f"RtpSession.send: expected a 1-D numpy int16 array, got {pcm!r:.60}")
        if len(pcm) != self.frame_samples:
            raise ValueError(
                f"RtpSession.send: a frame is {self.frame_samples} samples, got {len(pcm)}"
            )
        if self._encoder is not None:
            payload = self._encoder.encode(pcm)
        elif self.codec == "pcmu":
            payload = encode_ulaw(pcm).tobytes()
        else:
            payload = encode_alaw(pcm).tobytes()
        if self.red_depth:
            ts = self._sender.timestamp
            blocks = [
                RedBlock(self.payload_type, (ts - t) & 0xFFFFFFFF, p)
                for t, p in self._sent
                if (ts - t) & 0xFFFFFFFF <= RED_MAX_OFFSET and len(p) <= RED_MAX_BLOCK_SIZE
            ]
            self._sent = [*self._sent, (ts, payload)][-self.red_depth :]
            wire = self._sender.packet(
                build_red(RedBlock(self.payload_type, 0, payload), blocks), self.frame_ticks
            )
        else:
            wire = self._sender.packet(payload, self.frame_ticks)
        self._n.packets_sent += 1
        self._n.bytes_sent += len(wire)
        return wire

    def send_event(
        self, payload: bytes, payload_type: int, timestamp: int, *, marker: bool
    ) -> bytes:
        """One packet of another payload type in the sent stream (RFC 4733 telephone events
        beside the audio): the stream's SSRC and next sequence number, ``timestamp`` as
        given; the audio's timestamps do not move (:meth:`pause` skips them over the
        event)."""
        if not 0 <= payload_type <= 127 or not 0 <= timestamp < 1 << 32:
            raise ValueError(
                f"RtpSession.send_event: payload type 0..127 and a 32-bit timestamp, got "
                f"{payload_type}, {timestamp}"
            )
        sender = self._sender
        wire = RtpPacket(
            payload_type, sender.sequence, timestamp, sender.ssrc, payload, marker=marker
        ).to_bytes()
        sender.sequence = (sender.sequence + 1) & 0xFFFF
        self._n.packets_sent += 1
        self._n.bytes_sent += len(wire)
        return wire

    def pause(self, frames: int) -> None:
        """Skip ``frames`` frames that are not sent; the next packet carries the marker bit."""
        if frames < 0:
            raise ValueError(f"RtpSession.pause: frames must be >= 0, got {frames}")
        self._sender.skip(frames * self.frame_ticks)
        if frames:
            self._sent.clear()  # the next talkspurt does not repeat the last one

    @property
    def ssrc(self) -> int:
        """SSRC of the sent stream."""
        return self._sender.ssrc

    @property
    def next_sequence(self) -> int:
        """Sequence number of the next packet sent."""
        return self._sender.sequence

    @property
    def next_timestamp(self) -> int:
        """Timestamp of the next packet sent."""
        return self._sender.timestamp

    # --- both ------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Receive-side delay the jitter buffer aims for, seconds."""
        return self._jb.latency

    def count_event(self, packet: RtpPacket, now: float) -> None:
        """Count an RFC 4733 telephone-event packet of the received stream, which the
        transport took aside for its key press (it is not audio, and not played).

        It shares the audio's SSRC and sequence numbers (RFC 4733 section 2.1), so left
        out it would read as lost in :meth:`stats` and :meth:`report_block`; its timestamp
        is its event's start, not when it was sent (section 2.3.5), so it is kept out of
        the jitter estimate.
        """
        if self._source is None:
            self._source = RtpSource(self.clock_rate)
        self._source.receive(packet, now, timed=False)
        self._n.telephone_events += 1

    def report_block(self) -> ReportBlock | None:
        """The RTCP reception report on the received stream for the interval since the
        last call (:meth:`voxwire.rtp.RtpSource.report_block`), None before any packet."""
        return None if self._source is None else self._source.report_block()

    def stats(self) -> RtpSessionStats:
        """Cumulative statistics of both directions."""
        n = self._n
        return RtpSessionStats(
            rtp=None if self._source is None else self._source.stats(),
            jitter=self._jb.stats(),
            malformed=dict(n.malformed),
            other_payload_types=dict(n.other_payload_types),
            rtcp_packets=n.rtcp_packets,
            red_copies=n.red_copies,
            red_ignored=n.red_ignored,
            audio_levels=n.audio_levels,
            extension_errors=n.extension_errors,
            telephone_events=n.telephone_events,
            shortened=self._playout.shortened,
            lengthened=self._playout.lengthened,
            frames=dict(n.frames),
            packets_sent=n.packets_sent,
            bytes_sent=n.bytes_sent,
        )
