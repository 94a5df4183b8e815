"""SDP offer/answer for one audio stream (RFC 8866 syntax, RFC 3264 negotiation).

>>> from voxwire.sip.sdp import answer_offer, parse_sdp
>>> offer = parse_sdp(
...     b"v=0\\r\\no=- 1 1 IN IP4 192.0.2.9\\r\\ns=-\\r\\nc=IN IP4 192.0.2.9\\r\\nt=0 0\\r\\n"
...     b"m=audio 49170 RTP/AVP 8 0 101\\r\\na=rtpmap:101 telephone-event/8000\\r\\n"
...     b"a=fmtp:101 0-15\\r\\na=ptime:20\\r\\nm=video 51372 RTP/AVP 96\\r\\n"
... )
>>> answer = answer_offer(offer, ("pcmu", "pcma"))
>>> answer.codec, answer.payload_type, answer.telephone_event, answer.remote
('pcma', 8, 101, ('192.0.2.9', 49170))
>>> print(answer.render("192.0.2.1", 40000, session_id=7).decode().replace("\\r", ""))
v=0
o=voxwire 7 7 IN IP4 192.0.2.1
s=voxwire
c=IN IP4 192.0.2.1
t=0 0
m=audio 40000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 96
<BLANKLINE>

Negotiation (RFC 3264 section 6)
--------------------------------
The answer has one m-line per offered m-line, in order. The first ``audio`` stream over
``RTP/AVP`` (or ``RTP/AVPF``, whose feedback voxwire does not use) with a non-zero port
(or ``RTP/SAVP``/``RTP/SAVPF`` with ``srtp=True``, below) and a codec voxwire takes is
accepted; every other stream is rejected with port 0 and
the offer's formats (section 6). In the accepted stream the codec is the first of the
offer's formats, in the offer's order of preference, that is in ``codecs``: PCMU
(static type 0), PCMA (8), or Opus (``opus/48000/2``, a dynamic type; RFC 7587). The
answer keeps the offerer's payload type numbers, adds ``telephone-event`` at the chosen
codec's clock rate when it is offered (RFC 4733 section 7.1.1; its type and fmtp kept),
answers Opus with ``useinbandfec=1`` (voxwire decodes in-band FEC, RFC 7587 section
6.1), keeps ``red`` (RFC 2198) when offered at the codec's rate with blocks of the
chosen codec only (``a=fmtp:PT C/C``: voxwire then takes the redundant copies of lost
packets, and sends plain packets), and repeats the offer's ``ptime`` when it is 10 or
20 ms (the frame durations of :class:`~voxwire.protocols.rtp_session.RtpSession`), else
20. The direction is the
offer's mirrored (sendonly/recvonly swap, section 6.1). When no stream can be accepted
:func:`answer_offer` raises :class:`~voxwire.errors.SdpError` ``no_common_codec``, which a
UAS answers with 488.

SDES-SRTP (RFC 4568)
--------------------
With ``srtp=True`` an ``RTP/SAVP`` (or ``RTP/SAVPF``) audio stream is taken too: the
first of its ``a=crypto`` lines with a suite of :data:`SRTP_SUITES`, a well-formed
``inline:`` key of the suite's length and no lifetime or MKI voxwire cannot honour is
chosen (section 7.1.1), and the answer carries one ``a=crypto`` line with the same tag
and suite and a fresh random key of voxwire's (section 6.1: each side sends with its own
key). A SAVP stream without a usable crypto line is rejected like a stream without a
codec. With ``srtp=False`` (a UAS reached over plain UDP or TCP, where the keys would
cross the network in the clear) an offer whose only audio stream is SAVP raises
:class:`~voxwire.errors.SdpError` ``srtp_needs_tls``. The keys are kept out of every
``repr``.

Not supported: IPv6 connection addresses are parsed but only ``IN IP4``/``IN IP6`` with
a literal address are used (no host names), more than one audio stream, several
keys per stream (MKI), key lifetimes other than the default, session parameters
(``UNENCRYPTED_SRTP`` and the like: such a crypto line is not chosen).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Final

from voxwire.errors import SdpError
from voxwire.protocols.rtp_session import Codec

__all__ = [
    "SRTP_SUITES",
    "Answer",
    "Crypto",
    "MediaDescription",
    "SessionDescription",
    "answer_offer",
    "parse_sdp",
]

SRTP_SUITES: Final[dict[str, int]] = {
    "AEAD_AES_128_GCM": 28,
    "AES_CM_128_HMAC_SHA1_80": 30,
}
"""The SDES crypto suites voxwire takes (RFC 4568 section 6.2, RFC 7714 section 14.2) and
the length of their master key plus salt, in bytes; the first offered of them is chosen."""

MAX_SDP: Final = 16384
MAX_MEDIA: Final = 16
MAX_FORMATS: Final = 64
MAX_ATTRIBUTES: Final = 256

_STATIC: Final[dict[int, tuple[str, int]]] = {0: ("pcmu", 8000), 8: ("pcma", 8000)}
_NAMES: Final[dict[str, Codec]] = {"pcmu": "pcmu", "pcma": "pcma", "opus": "opus"}
_DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR: Final[dict[str, str]] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


@dataclass(slots=True)
class MediaDescription:
    """One m-line and its attributes."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    """Payload type -> (encoding name in lower case, clock rate, channels)."""
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str | None = None
    crypto: list[tuple[int, str, str]] = field(default_factory=list, repr=False)
    """The ``a=crypto`` lines (RFC 4568 section 9.1): tag, suite, key parameters."""


@dataclass(frozen=True, slots=True)
class Crypto:
    """The SRTP keys of a call (RFC 4568): the suite, the offerer's master key and salt
    (to decrypt what it sends) and voxwire's (to encrypt what it sends). Never in a
    ``repr``."""

    tag: int
    suite: str
    remote_key: bytes = field(repr=False)
    local_key: bytes = field(repr=False)

    def line(self) -> str:
        """The answer's ``a=crypto`` attribute value."""
        inline = base64.b64encode(self.local_key).decode("ascii")
        return f"{self.tag} {self.suite} inline:{inline}"


@dataclass(slots=True)
class SessionDescription:
    """A parsed session description: the session-level connection and the streams."""

    origin: str
    connection: str | None
    media: list[MediaDescription]
    direction: str | None = None


def _address(value: str, line: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("bad_connection", f"c= expected 'IN IP4 <address>', got {line!r:.80}")
    address = parts[2].split("/")[0]  # a multicast TTL suffix
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError("bad_connection", f"c= address is not a literal: {address!r:.80}") from None
    return address


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; raise :class:`~voxwire.errors.SdpError` when it is malformed
    or past the bounds (16 KiB, 16 streams, 64 formats per stream, 256 attributes)."""
    if len(data) > MAX_SDP:
        raise SdpError("too_large", f"SDP of {len(data)} bytes, limit {MAX_SDP}")
    if b"\x00" in data:
        raise SdpError("nul_byte", "NUL byte in SDP")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("bad_line", "SDP is not UTF-8") from None
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("bad_version", "SDP must start with v=0")
    origin = ""
    connection: str | None = None
    session_direction: str | None = None
    media: list[MediaDescription] = []
    attributes = 0
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError("bad_line", f"not a '<type>=<value>' line: {line!r:.80}")
        kind, value = line[0], line[2:].strip()
        current = media[-1] if media else None
        if kind == "o":
            if len(value.split()) != 6:
                raise SdpError("bad_origin", f"o= expects 6 fields, got {value!r:.80}")
            origin = value
        elif kind == "c":
            address = _address(value, line)
            if current is None:
                connection = address
            else:
                current.connection = address
        elif kind == "m":
            if len(media) >= MAX_MEDIA:
                raise SdpError("too_many_media", f"more than {MAX_MEDIA} m-lines")
            parts = value.split()
            if len(parts) < 4:
                raise SdpError("bad_media", f"m= expects media, port, proto, formats: {line!r:.80}")
            port_text = parts[1].split("/")[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError("bad_media", f"m= port: {parts[1]!r:.20}")
            if len(parts) - 3 > MAX_FORMATS:
                raise SdpError("too_many_formats", f"more than {MAX_FORMATS} formats")
            media.append(MediaDescription(parts[0], int(port_text), parts[2], parts[3:]))
        elif kind == "a":
            attributes += 1
            if attributes > MAX_ATTRIBUTES:
                raise SdpError("too_many_attributes", f"more than {MAX_ATTRIBUTES} attributes")
            name, _, rest = value.partition(":")
            if name in _DIRECTIONS:
                if current is None:
                    session_direction = name
                else:
                    current.direction = name
            elif current is None:
                continue
            elif name == "rtpmap":
                _rtpmap(current, rest, line)
            elif name == "fmtp":
                pt, _, params = rest.partition(" ")
                if pt.isdigit():
                    current.fmtp[int(pt)] = params.strip()
            elif name == "ptime" and rest.strip().isdigit():
                current.ptime = int(rest.strip())
            elif name == "crypto":
                fields = rest.split()
                if len(fields) >= 3 and fields[0].isdigit() and len(fields[0]) <= 9:
                    current.crypto.append((int(fields[0]), fields[1], " ".join(fields[2:])))
    if not origin:
        raise SdpError("bad_origin", "no o= line")
    return SessionDescription(origin, connection, media, session_direction)


def _rtpmap(media: MediaDescription, rest: str, line: str) -> None:
    pt_text, _, encoding = rest.partition(" ")
    parts = encoding.strip().split("/")
    if not pt_text.isdigit() or len(parts) < 2 or not parts[1].isdigit():
        raise SdpError("bad_line", f"a=rtpmap: expected '<pt> <name>/<rate>', got {line!r:.80}")
    channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
    media.rtpmap[int(pt_text)] = (parts[0].lower(), int(parts[1]), channels)


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of :func:`answer_offer`: the accepted stream and how to answer."""

    offer: SessionDescription
    index: int
    """Index of the accepted m-line."""
    codec: Codec
    payload_type: int
    clock_rate: int
    telephone_event: int | None
    """Payload type of telephone-event in the answer, when offered at the codec's rate."""
    ptime: int
    direction: str
    remote: tuple[str, int]
    """Where the offerer receives the stream (its connection address and port)."""
    crypto: Crypto | None = None
    """The SRTP keys of an ``RTP/SAVP`` stream, None for plain RTP."""
    red: int | None = None
    """Payload type of RFC 2198 redundancy (``red``) of the chosen codec, when offered."""

    def render(self, host: str, port: int, *, session_id: int, version: int | None = None) -> bytes:
        """The answer's SDP with the accepted stream on ``host:port`` (RFC 3264 section 6)."""
        family = "IP6" if ":" in host else "IP4"
        lines = [
            "v=0",
            f"o=voxwire {session_id} {version or session_id} IN {family} {host}",
            "s=voxwire",
            f"c=IN {family} {host}",
            "t=0 0",
        ]
        for i, m in enumerate(self.offer.media):
            if i != self.index:
                lines.append(f"m={m.media} 0 {m.proto} {' '.join(m.formats)}")
                continue
            pts = [self.payload_type]
            if self.red is not None:
                pts.append(self.red)
            if self.telephone_event is not None:
                pts.append(self.telephone_event)
            lines.append(f"m=audio {port} {m.proto} {' '.join(map(str, pts))}")
            if self.codec == "opus":
                lines.append(f"a=rtpmap:{self.payload_type} opus/48000/2")
                lines.append(f"a=fmtp:{self.payload_type} useinbandfec=1")
            else:
                lines.append(f"a=rtpmap:{self.payload_type} {self.codec.upper()}/8000")
            if self.red is not None:
                channels = "/2" if self.codec == "opus" else ""
                lines.append(f"a=rtpmap:{self.red} red/{self.clock_rate}{channels}")
                lines.append(f"a=fmtp:{self.red} {self.payload_type}/{self.payload_type}")
            if self.telephone_event is not None:
                lines.append(f"a=rtpmap:{self.telephone_event} telephone-event/{self.clock_rate}")
                lines.append(
                    f"a=fmtp:{self.telephone_event} {m.fmtp.get(self.telephone_event) or '0-15'}"
                )
            lines.append(f"a=ptime:{self.ptime}")
            lines.append(f"a={self.direction}")
            if self.crypto is not None:
                lines.append(f"a=crypto:{self.crypto.line()}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _codec_of(m: MediaDescription, pt: int) -> tuple[str, int, int] | None:
    mapped = m.rtpmap.get(pt)
    if mapped is not None:
        return mapped
    return (*_STATIC[pt], 1) if pt in _STATIC else None


def _red_of(m: MediaDescription, pt: int, rate: int) -> int | None:
    """The offered ``red`` type carrying blocks of ``pt`` only (RFC 2198 section 5: its
    fmtp lists the redundant encodings, ``pt/pt``), at ``rate``; None when there is none."""
    for p, (name, r, _) in m.rtpmap.items():
        if name.lower() != "red" or r != rate or str(p) not in m.formats:
            continue
        if not (0 <= p <= 63 or 96 <= p <= 127):
            continue
        blocks = (m.fmtp.get(p) or "").strip().split("/")
        if blocks and all(b.strip() == str(pt) for b in blocks):
            return p
    return None


def _offered_key(m: MediaDescription) -> tuple[int, str, bytes] | None:
    # the first crypto line voxwire can honour (RFC 4568 section 7.1.1)
    for tag, suite, params in m.crypto:
        length = SRTP_SUITES.get(suite)
        if length is None or " " in params or "|" in params:
            continue  # unknown suite, session parameters, a lifetime or an MKI
        if not params.startswith("inline:"):
            continue
        try:
            key = base64.b64decode(params[7:], validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(key) == length:
            return tag, suite, key
    return None


def answer_offer(
    offer: SessionDescription,
    codecs: tuple[Codec, ...] = ("pcmu", "pcma"),
    *,
    srtp: bool = False,
    keep: Crypto | None = None,
) -> Answer:
    """Choose the stream and codec to answer ``offer`` with (see the module docstring).

    ``srtp``: take ``RTP/SAVP`` streams (SDES keys); ``keep``: the keys of the call so
    far, whose local key the answer keeps when the offer keeps the suite and its key (a
    re-INVITE).

    Raises
    ------
    voxwire.errors.SdpError
        ``no_media`` for an offer without streams, ``no_connection`` for an audio stream
        without a connection address, ``no_common_codec`` when nothing can be accepted,
        ``srtp_needs_tls`` when only an SRTP stream was offered and ``srtp`` is False.
    """
    if not offer.media:
        raise SdpError("no_media", "the offer has no m-line")
    savp_refused = False
    for index, m in enumerate(offer.media):
        if m.media != "audio" or m.port == 0:
            continue
        crypto: Crypto | None = None
        if m.proto in ("RTP/SAVP", "RTP/SAVPF"):
            if not srtp:
                savp_refused = True
                continue
            offered = _offered_key(m)
            if offered is None:
                continue
            tag, suite, remote_key = offered
            if keep is not None and (keep.suite, keep.remote_key) == (suite, remote_key):
                local_key = keep.local_key
            else:
                local_key = secrets.token_bytes(SRTP_SUITES[suite])
            crypto = Crypto(tag, suite, remote_key, local_key)
        elif m.proto not in ("RTP/AVP", "RTP/AVPF"):
            continue
        for fmt in m.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            described = _codec_of(m, pt)
            if described is None:
                continue
            name, rate, channels = described
            codec = _NAMES.get(name)
            if codec is None or codec not in codecs:
                continue
            if codec == "opus" and (rate != 48000 or channels != 2):
                continue  # RFC 7587 section 7: always opus/48000/2
            if codec != "opus" and rate != 8000:
                continue
            if not (0 <= pt <= 63 or 96 <= pt <= 127):
                continue  # RtpSession keeps 64-95 apart from RTCP (RFC 5761 section 4)
            connection = m.connection or offer.connection
            if connection is None:
                raise SdpError("no_connection", f"m-line {index} has no c= address")
            event = next(
                (
                    p
                    for p, (n, r, _) in m.rtpmap.items()
                    if n == "telephone-event" and r == rate and str(p) in m.formats
                ),
                None,
            )
            red = _red_of(m, pt, rate)
            direction = _MIRROR[m.direction or offer.direction or "sendrecv"]
            ptime = m.ptime if m.ptime in (10, 20) else 20
            return Answer(
                offer,
                index,
                codec,
                pt,
                rate,
                event,
                ptime,
                direction,
                (connection, m.port),
                crypto,
                red,
            )
    if savp_refused:
        raise SdpError("srtp_needs_tls", "an RTP/SAVP stream is taken over SIP over TLS only")
    raise SdpError("no_common_codec", f"no audio stream with one of {', '.join(codecs)}")
