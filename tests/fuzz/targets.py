"""The Python fuzz targets: every media-stream codec end to end, the SIP stack, and the
transport-wide congestion-control feedback a WebRTC browser sends.

The C++ targets beside this file fuzz the kernels; these fuzz what a hostile peer reaches
first, in Python: a WebSocket dialect's JSON and base64 (or binary frames), AudioSocket's
byte stream, through the codec to decoded, resampled PCM; and a SIP datagram through the
parser, the SDP offer/answer and the user agent server. Each target takes the fuzzer's
bytes and checks the contract the drivers rely on; a breach raises :class:`Finding`.

Input format (so that a mutated seed stays a session): the first byte picks the protocol
(modulo the number of codecs; the next multiple also resamples to :data:`PIPELINE_RATE`),
the rest is a sequence of messages separated by :data:`SEPARATOR` (inside a message
:data:`ESCAPE` + ``b ^ 0x20`` stands for a byte ``b`` of the two); a message whose first
byte is ``t`` is a text frame (the rest as UTF-8, undecodable bytes replaced), any other
a binary frame (TCP protocols take every message as a chunk of the byte stream).
:func:`codec_seeds` writes each protocol's call as the simulated provider speaks it
(opening, caller audio at every rate the protocol runs, DTMF, a mark echo, the closing),
so the fuzzer starts from valid sessions.

The codec contract: :meth:`~voxwire.protocols.MediaStreamCodec.receive` and
``handle_timer`` return events or raise a :class:`~voxwire.errors.ProtocolError` (the
drivers map it to a close code), nothing else; decoded audio is 1-D int16 at a positive
rate and no longer than its message allows (no amplification); a timer is finite; once a
call started, the send side (audio at another rate, a mark, a clear) works or refuses with
a protocol error.

The SIP contract: the parser and the stream framer raise only
:class:`~voxwire.errors.SipParseError`; a parsed message re-encodes to one that parses
to the same method or status, Call-ID and CSeq; an offer's SDP is answered or refused
with :class:`~voxwire.errors.SdpError`; the user agent server takes any datagram without
raising and answers a bounded number of datagrams, each within the size limit.

The transport feedback contract (:func:`twcc_input`): an input whose first byte is even
is a compound RTCP packet: :func:`~voxwire.twcc.split_rtcp` and
:func:`~voxwire.twcc.parse_transport_feedback` raise only
:class:`~voxwire.errors.TransportFeedbackError`; a parsed feedback is self-consistent
(1-65535 statuses of 0-2, one delta per received packet), builds back to a packet that
parses to the same fields, and moves a :class:`~voxwire.twcc.TransportCcSender`'s counts
only within what it sent. An odd first byte makes the rest an RTP packet to stamp: it
comes back unchanged, or (when it parsed) parsed with the same payload and the number in
its extension.

Run one with atheris (coverage-guided): ``python tests/fuzz/fuzz_codecs.py -runs=1000000``
(or ``fuzz_sip.py``, ``fuzz_twcc.py``); ``python bench/fuzz_depth.py`` runs every target,
C++ and Python, to a million executions each.
"""

from __future__ import annotations

import math

import numpy as np

from voxwire.errors import ProtocolError, RtpError, SdpError, SipParseError, TransportFeedbackError
from voxwire.protocols import CODECS, Audio, MediaStreamCodec, codec_factory
from voxwire.protocols.base import Base64MediaCodec
from voxwire.resample import Resampler
from voxwire.rtp import RtpExtension, RtpPacket, audio_level, parse_rtp
from voxwire.sim.providers import PROVIDERS
from voxwire.sip.message import Request, message_length, parse_message
from voxwire.sip.sdp import answer_offer, parse_sdp
from voxwire.sip.uas import SipServer
from voxwire.twcc import (
    FMT_TRANSPORT_CC,
    RTCP_RTPFB,
    TransportCcSender,
    build_transport_feedback,
    parse_transport_feedback,
    split_rtcp,
)

__all__ = [
    "NAMES",
    "SEPARATOR",
    "Finding",
    "codec_input",
    "codec_seeds",
    "decode_case",
    "encode_case",
    "sip_input",
    "sip_seeds",
    "twcc_input",
    "twcc_seeds",
]

#: the protocols in the order the first input byte picks them
NAMES: tuple[str, ...] = tuple(CODECS)
#: between two messages of one input (ASCII record separator: absent from valid JSON)
SEPARATOR = b"\x1e"
#: in a message, ESCAPE + (b ^ 0x20) stands for a byte b that is SEPARATOR or ESCAPE
ESCAPE = b"\x1d"
#: a pipeline rate for every other input, so the inbound resampler is fuzzed too
PIPELINE_RATE = 16000


class Finding(AssertionError):
    """A target's contract broken by an input."""


def encode_case(name: str, messages: list[str | bytes]) -> bytes:
    """The fuzz input of one call of protocol ``name``."""
    parts = [_escape(m.encode() if isinstance(m, str) else m) for m in messages]
    kinds = [b"t" if isinstance(m, str) else b"b" for m in messages]
    return bytes([NAMES.index(name)]) + SEPARATOR.join(
        k + p for k, p in zip(kinds, parts, strict=True)
    )


def decode_case(data: bytes) -> tuple[str, list[str | bytes], bool]:
    """Protocol, messages and whether to resample to :data:`PIPELINE_RATE`, of an input."""
    if not data:
        return NAMES[0], [], False
    name = NAMES[data[0] % len(NAMES)]
    resample = data[0] // len(NAMES) % 2 == 1
    tcp = CODECS[name].transport == "tcp"
    messages: list[str | bytes] = []
    for escaped in data[1:].split(SEPARATOR) if len(data) > 1 else []:
        raw = _unescape(escaped)
        if raw[:1] == b"t" and not tcp:
            messages.append(raw[1:].decode("utf-8", "replace"))
        else:
            messages.append(raw[1:] if raw[:1] in (b"t", b"b") else raw)
    return name, messages, resample


def _escape(data: bytes) -> bytes:
    return data.replace(ESCAPE, ESCAPE + b"\x3d").replace(SEPARATOR, ESCAPE + b"\x3e")


def _unescape(data: bytes) -> bytes:
    if ESCAPE not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i : i + 1] == ESCAPE and i + 1 < len(data):
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def codec_seeds() -> list[bytes]:
    """Valid sessions of every protocol, as the simulated providers send them."""
    seeds: list[bytes] = []
    rng = np.random.default_rng(1)
    for name in NAMES:
        for rate in CODECS[name].rates:
            side = PROVIDERS[name](rate)
            pcm = (rng.standard_normal(side.rate // 50) * 3000).astype(np.int16)
            messages: list[str | bytes] = list(side.opening())
            messages += [side.audio(pcm) for _ in range(3)]
            key = side.dtmf("5")  # None for a dialect without key presses
            if key is not None:
                messages.append(key)
            if side.supports_marks:
                messages += side.mark_played("m1")
            messages += side.closing()
            seeds.append(encode_case(name, messages))
    return seeds


def _check_events(events: object, message_bytes: int, codec: MediaStreamCodec) -> None:
    if not isinstance(events, list):
        raise Finding(f"{codec.name}: events are a {type(events).__name__}, not a list")
    for event in events:
        if not isinstance(event, Audio):
            continue
        pcm = event.pcm
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise Finding(
                f"{codec.name}: audio of {type(pcm).__name__} {getattr(pcm, 'dtype', '')}"
            )
        if event.sample_rate <= 0 or event.line_rate <= 0:
            raise Finding(f"{codec.name}: audio at {event.sample_rate} Hz from {event.line_rate}")
        # one byte per sample is the densest any dialect carries (G.711), and a TCP codec
        # may release what earlier chunks brought: the bound is what all input so far allows
        most = codec.stats.bytes_in * max(1, math.ceil(event.sample_rate / event.line_rate)) + 64
        if pcm.size > most:
            raise Finding(
                f"{codec.name}: {pcm.size} samples out of {message_bytes} bytes "
                f"({codec.stats.bytes_in} so far)"
            )


def codec_input(data: bytes) -> None:
    """One call of the protocol the input picks; raises :class:`Finding` on a breach."""
    name, messages, resample = decode_case(data)
    make = codec_factory(name)
    codec = CODECS[name](pipeline_rate=PIPELINE_RATE, resampler=Resampler) if resample else make()
    now = 0.0
    for message in messages:
        now += 0.02
        try:
            _check_events(codec.receive(message, now), len(message), codec)
            timer = codec.get_timer()
            if timer is not None:
                if not math.isfinite(timer):
                    raise Finding(f"{name}: timer at {timer}")
                now = max(now, timer)
                _check_events(codec.handle_timer(now), 0, codec)
        except ProtocolError:
            return  # the drivers close the call with the protocol's code
        except Finding:
            raise
        except Exception as e:  # anything else would reach the driver as an internal error
            raise Finding(f"{name}: {type(e).__name__}: {e}") from e
    if codec.started is None:
        return
    try:
        codec.send_audio(np.zeros(480, np.int16), 24000)
        codec.send_mark("fuzz")
        codec.send_clear()
        if isinstance(codec, Base64MediaCodec):
            codec.send_audio(np.zeros(160, np.int16).tobytes())
    except ProtocolError:
        return
    except Exception as e:
        raise Finding(f"{name}: send side: {type(e).__name__}: {e}") from e


_OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 111 101\r\na=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
)


def _request(method: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (
        f"{method} sip:bot@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-fuzz-1\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bot@192.0.2.1>\r\n"
        'From: "Caller" <sip:alice@192.0.2.9>;tag=77\r\nCall-ID: fuzz-call-1\r\n'
        f"CSeq: 1 {method}\r\nContact: <sip:alice@192.0.2.9:5060>\r\n{extra}"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def sip_seeds() -> list[bytes]:
    """Valid requests a trunk sends: INVITE with SDP, OPTIONS, CANCEL, BYE, a response."""
    return [
        _request("INVITE", _OFFER),
        _request("OPTIONS"),
        _request("CANCEL"),
        _request("BYE", extra="Record-Route: <sip:proxy.example;lr>\r\n"),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
        b"To: <sip:alice@192.0.2.9>;tag=9\r\nFrom: <sip:bot@192.0.2.1>;tag=8\r\n"
        b"Call-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    ]


def sip_input(data: bytes) -> None:
    """One datagram through the parser, the SDP answer and a fresh user agent server."""
    try:
        message = parse_message(data)
    except SipParseError:
        message = None
    except Exception as e:
        raise Finding(f"parse_message: {type(e).__name__}: {e}") from e
    try:
        message_length(data)
    except SipParseError:
        pass
    except Exception as e:
        raise Finding(f"message_length: {type(e).__name__}: {e}") from e
    if message is not None:
        try:
            again = parse_message(message.encode())
        except Exception as e:
            raise Finding(f"a parsed message does not parse again: {type(e).__name__}: {e}") from e
        key = message.method if isinstance(message, Request) else message.status
        key2 = again.method if isinstance(again, Request) else again.status
        if (key, message.call_id, message.cseq) != (key2, again.call_id, again.cseq):
            raise Finding(f"round trip changed {key!r} {message.call_id!r} {message.cseq}")
        if message.body:
            try:
                answer_offer(parse_sdp(message.body), ("pcmu", "pcma", "opus"))
            except SdpError:
                pass
            except Exception as e:
                raise Finding(f"SDP: {type(e).__name__}: {e}") from e
    server = SipServer("192.0.2.1", 5060, max_transactions=64)
    try:
        server.receive(data, ("192.0.2.9", 5060), 0.0)
        timer = server.get_timer()
        if timer is not None:
            server.handle_timer(timer)
    except Exception as e:
        raise Finding(f"SipServer.receive: {type(e).__name__}: {e}") from e
    out = server.datagrams()
    if len(out) > 4 or any(len(d) > server.limits.max_message for d, _ in out):
        raise Finding(f"{len(out)} datagrams in answer to one")


_TWCC_ID = 3
_TWCC_FIRST = 65500  # the sender's first number: its 100 packets cross the wrap
_TWCC_SENT = 100


def twcc_seeds() -> list[bytes]:
    """Feedback as Chrome sends it (alone, and after a receiver report), with each kind
    of chunk and delta; RTP packets to stamp, with and without an extension."""
    fb = [
        build_transport_feedback(
            1,
            2,
            base_sequence=65500,
            reference_time=192273,
            feedback_count=0,
            statuses=[1, 1, 1],
            deltas=[50, 0, 80],
        ),
        build_transport_feedback(
            1,
            2,
            base_sequence=65530,
            reference_time=-5,
            feedback_count=1,
            statuses=[1] * 20 + [0, 2, 1, 0],
            deltas=[80] * 20 + [-40, 3],
        ),
        build_transport_feedback(
            1,
            2,
            base_sequence=10,
            reference_time=0,
            feedback_count=255,
            statuses=[1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1],
            deltas=[1, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
    ]
    rr = bytes([0x80, 201, 0, 1, 0, 0, 0, 0x42])
    rtp = RtpPacket(111, 7, 960, 0xABC, b"opus frame").to_bytes()
    level = RtpPacket(
        111, 8, 1920, 0xABC, b"frame", extension=RtpExtension(0xBEDE, bytes([0x10, 0x7F, 0, 0]))
    ).to_bytes()
    return [b"\x00" + f for f in fb] + [b"\x02" + rr + fb[1]] + [b"\x01" + rtp, b"\x01" + level]


def _twcc_sender() -> TransportCcSender:
    sender = TransportCcSender(_TWCC_ID, first_sequence=_TWCC_FIRST, window=64)
    packet = RtpPacket(111, 0, 0, 1, b"x").to_bytes()
    for _ in range(_TWCC_SENT):
        sender.stamp(packet)
    return sender


def twcc_input(data: bytes) -> None:
    """A compound RTCP packet into the feedback reader, or an RTP packet to stamp."""
    if data[:1] and data[0] & 1:
        _stamp_input(data[1:])
        return
    try:
        parts = split_rtcp(data[1:])
    except TransportFeedbackError:
        return
    except Exception as e:
        raise Finding(f"split_rtcp: {type(e).__name__}: {e}") from e
    sender = _twcc_sender()
    for packet_type, fmt, packet in parts:
        if (packet_type, fmt) != (RTCP_RTPFB, FMT_TRANSPORT_CC):
            continue
        try:
            fb = parse_transport_feedback(packet)
        except TransportFeedbackError:
            continue
        except Exception as e:
            raise Finding(f"parse_transport_feedback: {type(e).__name__}: {e}") from e
        received = sum(1 for s in fb.statuses if s)
        if not 1 <= len(fb.statuses) <= 0xFFFF or set(fb.statuses) - {0, 1, 2}:
            raise Finding(f"statuses {fb.statuses[:16]!r}... ({len(fb.statuses)})")
        if len(fb.deltas) != received:
            raise Finding(f"{len(fb.deltas)} deltas for {received} received packets")
        wire = fb.to_bytes()
        if parse_transport_feedback(wire) != fb:
            raise Finding("a parsed feedback does not build back to the same fields")
        before = (sender.reported, sender.lost)
        interval = sender.feedback(fb)
        if not 0 <= interval.reported <= len(fb.statuses) or interval.unknown < 0:
            raise Finding(f"interval {interval}")
        if (sender.reported, sender.lost) != (
            before[0] + interval.reported,
            before[1] + interval.lost,
        ):
            raise Finding("the totals do not add up")
        if not 0 <= sender.lost <= sender.reported <= _TWCC_SENT:
            raise Finding(f"{sender.lost} lost of {sender.reported} reported of {_TWCC_SENT}")


def _stamp_input(data: bytes) -> None:
    sender = TransportCcSender(_TWCC_ID, first_sequence=0x1234)
    try:
        out = sender.stamp(data)
    except Exception as e:
        raise Finding(f"stamp: {type(e).__name__}: {e}") from e
    if out == data:
        if sender.sent:
            raise Finding("a packet counted as numbered came back unchanged")
        return
    if sender.sent != 1 or len(out) != len(data) + (8 if not data[0] & 0x10 else 4):
        raise Finding(f"a stamped packet of {len(out)} bytes from {len(data)}")
    try:
        original = parse_rtp(data)
    except RtpError:
        return  # a packet that did not parse may be stamped; it need not parse after
    _level_input(original.extension)
    try:
        packet = parse_rtp(out)
    except RtpError as e:
        raise Finding(f"a valid packet does not parse once stamped: {e}") from e
    ext = packet.extension
    if (
        ext is None
        or ext.profile != 0xBEDE
        or (packet.payload, packet.padding)
        != (
            original.payload,
            original.padding,
        )
    ):
        raise Finding("the stamped packet lost its payload or its extension")
    if bytes([(_TWCC_ID << 4) | 1, 0x12, 0x34]) not in ext.data:
        raise Finding("the stamped packet does not carry its number")
    _level_input(ext)


def _level_input(ext: RtpExtension | None) -> None:
    """The RFC 6464 level of a parsed packet's extension (RFC 8285 elements): a level in
    range or a typed refusal."""
    try:
        level = audio_level(ext, 1)
    except RtpError as e:
        if e.reason not in ("extension_element_past_end", "bad_audio_level"):
            raise Finding(f"audio_level: reason {e.reason}") from e
        return
    except Exception as e:
        raise Finding(f"audio_level: {type(e).__name__}: {e}") from e
    if level is not None and not -127 <= level.level <= 0:
        raise Finding(f"audio level {level}")
