"""One browser call over WebRTC: aiortc for ICE, DTLS and SRTP; voxwire for the media.

aiortc (https://github.com/aiortc/aiortc) does the connection: ICE, the DTLS handshake
and SRTP. Its audio path is left out (a fixed 16-packet jitter buffer that stalls on a
loss, no Opus FEC or concealment, a 96 kbit/s stereo encoder in a thread pool). Instead:

* **Inbound.** Every RTP packet, once SRTP-unprotected, is taken from the DTLS transport
  (``RTCDtlsTransport._handle_rtp_data``, before aiortc's routing, depacketising and
  jitter buffer) and handed to an :class:`~voxwire.aio.rtp.RtpEndpoint` over an
  :class:`~voxwire.protocols.rtp_session.RtpSession` for Opus: voxwire's adaptive jitter
  buffer, in-band FEC recovery and concealment, on the playout clock. The audio level
  the browser puts in every packet (RFC 6464, when the answer keeps it) marks the quiet
  frames, where the buffer skips or inserts a frame to change its delay. Telephone
  events (RFC 4733) become :class:`~voxwire.protocols.events.Dtmf` events.
* **Outbound.** The endpoint encodes with voxwire's Opus encoder (mono, ``opus_bitrate``,
  in-band FEC planned for ``opus_loss_percent``), paced by the process's pacer, with the
  talkspurt rule of RTP calls; each packet goes to the DTLS transport to be protected and
  sent (``RTCDtlsTransport._send_rtp``) with the SSRC aiortc announced in the answer.
  aiortc's own sender gets a track that never yields a frame, so it never encodes.
* **Transport-wide congestion control.** When the offer has it and the answer takes it
  (:func:`~voxwire.webrtc.sdp.fix_answer`), every packet sent carries a transport-wide
  sequence number (:class:`~voxwire.twcc.TransportCcSender`), and the browser's RTCP
  transport feedback is read from the raw compound RTCP
  (``RTCDtlsTransport._handle_rtcp_data``) before aiortc parses it: aiortc reads an
  RTPFB packet's FCI as NACKs, and refuses (drops) a padded one with the whole compound
  packet. Its loss drives the Opus controller while it flows, receiver reports otherwise.

The call is an :class:`~voxwire.aio.rtp_call.RtpCall` (``call.codec.name == "webrtc"``):
every handler of the other transports (the echo agent, the voice agent) runs on it, with
barge-in from the send clock.

The private names used are checked when a peer is made (:func:`check_aiortc`):
if an aiortc release moves them, :class:`WebRtcUnavailable` says so at once, and
``tests/webrtc`` fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import random
from typing import Any

from voxwire.aio.rtp import RtpEndpoint
from voxwire.aio.rtp_call import RtpCall, RtpHandler, run_call
from voxwire.errors import TransportFeedbackError, VoxwireError
from voxwire.opus import OpusRateController
from voxwire.protocols.rtp_session import RtpSession
from voxwire.protocols.telephone_event import TelephoneEvents
from voxwire.twcc import (
    FMT_TRANSPORT_CC,
    RTCP_RTPFB,
    TransportCcSender,
    parse_transport_feedback,
    split_rtcp,
)
from voxwire.webrtc.sdp import AudioOffer, fix_answer, parse_offer

__all__ = ["WebRtcPeer", "WebRtcUnavailable", "check_aiortc"]

log = logging.getLogger("voxwire.webrtc")

_ids = itertools.count(1)

CLEAR_TAIL = 3
"""Frames (20 ms each) of faded-out silence sent after a barge-in's clear: the browser's
decoder plays them instead of concealing the cut reply (``docs/webrtc.md``)."""

QUIET_DBOV = -50.0
"""A browser packet whose RFC 6464 audio level is at or below this (dBov) is a quiet
frame, where the jitter buffer may skip or insert a whole frame. -50 is where the
project's measures take a frame to carry no sound (``bench/webrtc_impaired.py``'s
``TALK_DBFS``); Chrome's level of a frame near it falls a few dB either side of the
decoded RMS."""

FEEDBACK_PACKETS = 50
"""Packets (1 s of 20 ms frames) of transport feedback gathered into one loss figure for
the rate controller, whose smoothing weighs each figure as one receiver report."""
FEEDBACK_FRESH = 5.0
"""Seconds after the last transport feedback during which receiver reports are counted
but not fed to the rate controller (the feedback speaks for the same packets)."""


class WebRtcUnavailable(VoxwireError):
    """aiortc is missing, or the aiortc internals voxwire's media path uses moved."""


def check_aiortc() -> None:
    """Raise :class:`WebRtcUnavailable` unless aiortc is importable and has the
    internals used here, with the signatures used here."""
    try:
        from aiortc.rtcdtlstransport import RTCDtlsTransport
    except ImportError as exc:
        raise WebRtcUnavailable("WebRTC needs aiortc: pip install 'voxwire[webrtc]'") from exc
    from aiortc.rtcrtpsender import RTCRtpSender

    for cls, name, params in (
        (RTCDtlsTransport, "_handle_rtp_data", ["self", "data", "arrival_time_ms"]),
        (RTCDtlsTransport, "_send_rtp", ["self", "data"]),
        (RTCDtlsTransport, "_handle_rtcp_data", ["self", "data"]),
        (RTCRtpSender, "_handle_rtcp_packet", ["self", "packet"]),
    ):
        where = f"{cls.__name__}.{name}"
        method = getattr(cls, name, None)
        if method is None or not inspect.iscoroutinefunction(method):
            raise WebRtcUnavailable(
                f"aiortc's {where} is gone: this aiortc is not one voxwire's WebRTC media "
                "path supports (aiortc>=1.14,<2)"
            )
        got = list(inspect.signature(method).parameters)
        if got != params:
            raise WebRtcUnavailable(
                f"aiortc's {where}{tuple(got)} changed (expected {tuple(params)}): "
                "voxwire's WebRTC media path supports aiortc>=1.14,<2"
            )


class _SrtpSender(asyncio.DatagramTransport):
    """The endpoint's socket: each RTP packet goes to the DTLS transport, which protects
    it and sends it over ICE. Packets before the connection is up are counted, not sent."""

    def __init__(self, dtls: Any, twcc: TransportCcSender | None = None) -> None:
        super().__init__()
        self._dtls = dtls
        self._twcc = twcc
        self._closing = False
        self._pending: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.unsent = 0
        self.errors = 0

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        if getattr(self._dtls, "state", "") != "connected":
            self.unsent += 1
            return
        # numbered here, in send order (the tasks run in the order they are made)
        wire = bytes(data) if self._twcc is None else self._twcc.stamp(data)
        task = asyncio.get_running_loop().create_task(self._send(wire))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, data: bytes) -> None:
        try:
            await self._dtls._send_rtp(data)
            self.sent += 1
        except Exception:  # the connection went down under us: the call's end follows
            self.errors += 1

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True


def _silent_track() -> Any:
    """An audio track for aiortc's sender that never yields a frame (voxwire sends)."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class HeldTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._ended = asyncio.Event()

        async def recv(self) -> Any:
            await self._ended.wait()
            raise MediaStreamError

        def stop(self) -> None:
            self._ended.set()
            super().stop()

    return HeldTrack()


class WebRtcPeer:
    """One browser call: made by :meth:`accept` from the browser's offer.

    Attributes
    ----------
    id : str
        The session's id (its WHIP resource is ``/whip/<id>``).
    answer : str
        The SDP answer to send back.
    offer : AudioOffer
        What the offer's audio section proposed.
    call : RtpCall
        The call the handler runs on.
    """

    def __init__(self, pc: Any, offer: AudioOffer, answer: str, call: RtpCall) -> None:
        self.id = f"{next(_ids):x}"
        self.pc = pc
        self.offer = offer
        self.answer = answer
        self.call = call
        self.dtmf = TelephoneEvents(48000)
        self.task: asyncio.Task[None] | None = None
        #: the Opus rate controller (None: fixed settings)
        self.control: OpusRateController | None = None
        #: receiver-report blocks about voxwire's stream (counted whether fed to the
        #: controller or not), and settings changed from the loss reported
        self.reports = 0
        self.adaptations = 0
        self._sender: _SrtpSender | None = None
        self._rtcp: asyncio.Task[None] | None = None
        #: RTCP receiver reports sent about the browser's stream
        self.receiver_reports = 0
        #: transport-wide sequence numbers on what voxwire sends (None: not negotiated)
        self.twcc: TransportCcSender | None = None
        #: transport feedback packets read; compound RTCP or feedback packets refused as
        #: malformed; the loss figures (of FEEDBACK_PACKETS packets each) fed to the
        #: rate controller from the feedback
        self.transport_feedback = 0
        self.feedback_errors = 0
        self.feedback_reports = 0
        self._feedback_at: float | None = None
        self._pending_reported = 0
        self._pending_lost = 0
        self._closed = False

    @classmethod
    async def accept(
        cls,
        offer_sdp: str,
        *,
        pipeline_rate: int = 16000,
        idle_timeout: float = 15.0,
        opus_bitrate: int = 32000,
        opus_loss_percent: int = 10,
        jitter: dict[str, float | int | bool] | None = None,
        adaptive: bool = True,
        transport_cc: bool = True,
    ) -> WebRtcPeer:
        """Answer ``offer_sdp``: raise :class:`~voxwire.webrtc.sdp.SdpError` for an offer
        without Opus audio, :class:`WebRtcUnavailable` without a usable aiortc.

        With ``adaptive`` (the default) the Opus bit rate, FEC strength and RED follow the
        loss the browser reports (:class:`voxwire.opus.OpusRateController`), starting from
        the controller's low tier; without it ``opus_bitrate`` and ``opus_loss_percent``
        hold for the whole call.

        With ``transport_cc`` (the default) transport-wide congestion control is taken
        when offered: the packets sent are numbered and the browser's transport feedback
        gives the loss (``docs/webrtc.md``); without it the answer leaves it out."""
        check_aiortc()
        from aiortc import RTCPeerConnection, RTCSessionDescription

        offer = parse_offer(offer_sdp)
        pc = RTCPeerConnection()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            transceiver = next((t for t in pc.getTransceivers() if t.kind == "audio"), None)
            if transceiver is None:
                raise WebRtcUnavailable("aiortc made no audio transceiver for the offer")
            pc.addTrack(_silent_track())
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)  # aiortc gathers every candidate first
            control = OpusRateController(red=offer.red is not None) if adaptive else None
            if control is not None:
                opus_bitrate = control.setting.bitrate
                opus_loss_percent = control.setting.packet_loss_percent
            answer_sdp = fix_answer(pc.localDescription.sdp, offer, transport_cc=transport_cc)
            agreed = parse_offer(answer_sdp)
            session = RtpSession(
                "opus",
                payload_type=offer.opus,
                sample_rate=48000,
                jitter=jitter,
                audio_level_id=agreed.audio_level,
                quiet_level=QUIET_DBOV,
                opus_bitrate=opus_bitrate,
                opus_loss_percent=opus_loss_percent,
                red_payload_type=offer.red,
                ssrc=transceiver.sender._ssrc,
            )
        except BaseException:
            await pc.close()
            raise
        twcc = None if agreed.transport_cc is None else TransportCcSender(agreed.transport_cc)
        dtls = transceiver.receiver.transport
        sender = _SrtpSender(dtls, twcc)
        peer_id = f"{next(_ids):x}"
        endpoint = RtpEndpoint.attach(session, sender, ("webrtc", 0), clear_tail=CLEAR_TAIL)
        call = RtpCall(endpoint, pipeline_rate=pipeline_rate, idle_timeout=idle_timeout)
        call.codec = dataclasses.replace(call.codec, name="webrtc")
        peer = cls(pc, offer, answer_sdp, call)
        peer.id = peer_id
        peer._sender = sender
        peer.control = control
        peer.twcc = twcc
        peer._tap(dtls, endpoint)
        peer._watch_reports(transceiver.sender, session)
        if twcc is not None:
            peer._watch_feedback(dtls, twcc, session)
        peer._rtcp = asyncio.get_running_loop().create_task(
            peer._send_receiver_reports(dtls, session)
        )

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await peer.close(f"connection {pc.connectionState}")

        return peer

    def _tap(self, dtls: Any, endpoint: RtpEndpoint) -> None:
        event_pt = self.offer.telephone_event

        async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
            if event_pt is not None and len(data) >= 12 and data[1] & 0x7F == event_pt:
                self._telephone_event(data, endpoint)
                return
            endpoint.datagram_received(data, ("webrtc", 0))

        dtls._handle_rtp_data = handle_rtp_data

    def _watch_reports(self, sender: Any, session: RtpSession) -> None:
        """Read the loss the browser reports for voxwire's stream (RTCP RR/SR report
        blocks, routed by aiortc to its sender), then let aiortc have them too."""
        from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

        original = sender._handle_rtcp_packet
        ssrc = sender._ssrc

        async def handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for report in packet.reports:
                    if report.ssrc == ssrc:
                        self.reports += 1
                        if not self._feedback_flowing():
                            self._adapt(report.fraction_lost / 256, session)
            await original(packet)

        sender._handle_rtcp_packet = handle_rtcp_packet

    def _feedback_flowing(self) -> bool:
        at = self._feedback_at
        return at is not None and asyncio.get_running_loop().time() - at < FEEDBACK_FRESH

    def _watch_feedback(self, dtls: Any, twcc: TransportCcSender, session: RtpSession) -> None:
        """Read transport feedback from each compound RTCP packet as it arrives (SRTCP
        already removed), then let aiortc parse it as before."""
        original = dtls._handle_rtcp_data

        async def handle_rtcp_data(data: bytes) -> None:
            try:
                packets = split_rtcp(data)
            except TransportFeedbackError:
                packets = []
                self.feedback_errors += 1
            for packet_type, fmt, packet in packets:
                if packet_type == RTCP_RTPFB and fmt == FMT_TRANSPORT_CC:
                    self._feedback(packet, twcc, session)
            await original(data)

        dtls._handle_rtcp_data = handle_rtcp_data

    def _feedback(self, packet: bytes, twcc: TransportCcSender, session: RtpSession) -> None:
        try:
            fb = parse_transport_feedback(packet)
        except TransportFeedbackError as exc:
            self.feedback_errors += 1
            log.debug("webrtc %s: transport feedback refused: %s", self.id, exc)
            return
        self.transport_feedback += 1
        interval = twcc.feedback(fb)
        if interval.reported == 0:
            return
        self._feedback_at = asyncio.get_running_loop().time()
        self._pending_reported += interval.reported
        self._pending_lost += interval.lost
        if self._pending_reported < FEEDBACK_PACKETS:
            return
        fraction = min(1.0, max(0.0, self._pending_lost / self._pending_reported))
        self._pending_reported = self._pending_lost = 0
        self.feedback_reports += 1
        self._adapt(fraction, session)

    async def _send_receiver_reports(self, dtls: Any, session: RtpSession) -> None:
        """Report the browser's stream as RFC 3550 asks (every 0.5-1.5 s, at random), from
        voxwire's own receive statistics: aiortc's receiver never sees the packets, so it
        would report nothing, and a browser told of no loss adds no in-band FEC."""
        from voxwire.rtp import build_receiver_report

        while True:
            await asyncio.sleep(0.5 + random.random())
            block = session.report_block()
            if block is None:
                continue
            try:
                await dtls._send_rtp(build_receiver_report(session.ssrc, [block]))
            except ConnectionError:
                continue  # not connected (yet, or any more)
            self.receiver_reports += 1

    def _adapt(self, fraction_lost: float, session: RtpSession) -> None:
        if self.control is None:
            return
        new = self.control.report(fraction_lost)
        encoder = session.opus_encoder
        if new is None or encoder is None:
            return
        self.adaptations += 1
        encoder.set_bitrate(new.bitrate)
        encoder.set_packet_loss_percent(new.packet_loss_percent)
        session.set_red_depth(new.red_depth)
        log.info(
            "webrtc %s: reported loss %.1f%%: opus %d kb/s, FEC for %d%%, RED %d",
            self.id,
            100 * (self.control.loss or 0.0),
            new.bitrate // 1000,
            new.packet_loss_percent,
            new.red_depth,
        )

    def _telephone_event(self, data: bytes, endpoint: RtpEndpoint) -> None:
        from voxwire.rtp import parse_rtp

        try:
            packet = parse_rtp(data)
        except ValueError:
            self.dtmf.malformed += 1
            return
        # its sequence number is the stream's: counted, so the receiver reports do not
        # tell the browser it was lost
        endpoint.session.count_event(packet, asyncio.get_running_loop().time())
        for event in self.dtmf.receive(bytes(packet.payload), packet.timestamp):
            self.call.dtmf(event)

    def start(self, handler: RtpHandler, *, handler_grace: float = 2.0) -> asyncio.Task[None]:
        """Run ``handler`` on the call; the peer closes when the call ends."""

        async def run() -> None:
            try:
                await run_call(self.call, handler, handler_grace=handler_grace)
            finally:
                await self.close("call ended")

        self.task = asyncio.get_running_loop().create_task(run())
        return self.task

    async def close(self, reason: str = "") -> None:
        """End the call and the peer connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        log.info("webrtc %s: closing (%s)", self.id, reason or "closed")
        if self._rtcp is not None:
            self._rtcp.cancel()
        if self._sender is not None:
            self._sender.close()
        self.call.endpoint.close()
        await self.pc.close()

    @property
    def closed(self) -> bool:
        return self._closed
