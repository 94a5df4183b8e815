"""The audio section of a browser's SDP offer, and the fixes voxwire makes to the answer.

Pure functions on SDP text (RFC 8866), no I/O. A browser's offer lists Opus
(``opus/48000/2``, usually payload type 111, with ``a=fmtp:111 minptime=10;
useinbandfec=1``), RED (``red/48000/2``), G.711 and ``telephone-event``. aiortc's answer
keeps the codecs it knows and drops every ``a=fmtp`` line of Opus, which tells the
browser not to send in-band FEC (RFC 7587 section 6.1: ``useinbandfec`` is a receiver's
preference), and it drops RED and ``telephone-event``. :func:`fix_answer` puts them back,
with the offerer's payload types:

* ``a=fmtp:<opus> minptime=10;useinbandfec=1``: the browser's encoder adds in-band FEC,
  which voxwire's jitter buffer uses to recover a lost packet from the next one;
* ``red/48000/2`` (RFC 2198 redundancy of Opus), after Opus, when offered: voxwire
  receives it, and sends it when the loss the browser reports is high
  (:class:`voxwire.opus.OpusRateController`);
* ``telephone-event/48000`` (RFC 4733) in the audio m-line, when the offer had it at
  48 kHz, so the page may send key presses;
* transport-wide congestion control, when the offer's audio has both the header extension
  (``a=extmap:<id> http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01``)
  and ``a=rtcp-fb:<opus> transport-cc`` (or ``a=rtcp-fb:* transport-cc``), as Chrome's
  does: the answer takes both, with the offer's ID, unless another extension of the answer
  uses that ID already or it is not a one-byte ID (1-14); voxwire then numbers the
  packets it sends and reads the browser's feedback (:mod:`voxwire.twcc`).

The answer aiortc writes keeps the RFC 6464 audio level extension
(``a=extmap:<id> urn:ietf:params:rtp-hdrext:ssrc-audio-level``) the browser offers;
:class:`AudioOffer` gives its ID (:attr:`AudioOffer.audio_level`), and the session reads
each packet's level from it to tell the jitter buffer which Opus frames are quiet.

Limits: at most :data:`MAX_SDP_BYTES` of text and :data:`MAX_LINES` lines; anything
else raises :class:`SdpError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voxwire.twcc import TRANSPORT_CC_URI

__all__ = [
    "AUDIO_LEVEL_URI",
    "MAX_LINES",
    "MAX_SDP_BYTES",
    "AudioOffer",
    "SdpError",
    "fix_answer",
    "parse_offer",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
"""The client-to-mixer audio level header extension's URI (RFC 6464)."""
MAX_SDP_BYTES = 64 * 1024
"""Longest SDP accepted (a browser's audio-only offer is 2-6 KB)."""
MAX_LINES = 2000

_RTPMAP = re.compile(r"^a=rtpmap:(\d{1,3}) ([A-Za-z0-9_.-]+)/(\d+)(?:/(\d+))?$")
_FMTP = re.compile(r"^a=fmtp:(\d{1,3}) (.*)$")
_EXTMAP = re.compile(r"^a=extmap:(\d{1,5})(?:/[a-z]+)? (\S+)")
_RTCP_FB = re.compile(r"^a=rtcp-fb:(\d{1,3}|\*) (\S+)\s*$")


class SdpError(ValueError):
    """An SDP offer voxwire cannot answer; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class AudioOffer:
    """What the first audio m-line of an offer proposes (payload types as offered)."""

    opus: int
    """Opus's payload type."""
    opus_fmtp: str
    """The offer's ``a=fmtp`` parameters for Opus ('' when none)."""
    red: int | None
    """RED (RFC 2198) at 48 kHz, when offered."""
    telephone_event: int | None
    """``telephone-event/48000``, when offered."""
    direction: str
    """sendrecv, sendonly, recvonly or inactive."""
    transport_cc: int | None = None
    """The transport-wide sequence number extension's ID, when the section has it and
    ``transport-cc`` feedback for Opus."""
    extension_ids: frozenset[int] = frozenset()
    """Every ``a=extmap`` ID of the section."""
    audio_level: int | None = None
    """The RFC 6464 audio level extension's ID (1-255), when the section has it."""


def _lines(sdp: str) -> list[str]:
    if len(sdp.encode("utf-8", "replace")) > MAX_SDP_BYTES:
        raise SdpError("too_large", f"the SDP is longer than {MAX_SDP_BYTES} bytes")
    if "\x00" in sdp:
        raise SdpError("malformed", "the SDP holds a NUL character")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise SdpError("too_large", f"the SDP has more than {MAX_LINES} lines")
    if not lines or not lines[0].startswith("v=0"):
        raise SdpError("malformed", "an SDP starts with v=0")
    return [line for line in lines if line]


def _sections(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    session: list[str] = []
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def parse_offer(sdp: str) -> AudioOffer:
    """The first audio section of ``sdp``; raise :class:`SdpError` if it has no Opus."""
    _, media = _sections(_lines(sdp))
    for section in media:
        fields = section[0][2:].split()
        if len(fields) < 4 or fields[0] != "audio" or fields[1] == "0":
            continue
        listed = set(fields[3:])
        opus = red = event = None
        fmtp: dict[int, str] = {}
        direction = "sendrecv"
        extensions: dict[str, int] = {}
        feedback: set[str] = set()
        for line in section[1:]:
            m = _RTPMAP.match(line)
            if m and m.group(1) in listed:
                pt, name, rate = int(m.group(1)), m.group(2).lower(), int(m.group(3))
                if name == "opus" and rate == 48000 and opus is None:
                    opus = pt
                elif name == "red" and rate == 48000 and red is None:
                    red = pt
                elif name == "telephone-event" and rate == 48000 and event is None:
                    event = pt
                continue
            f = _FMTP.match(line)
            x = _EXTMAP.match(line)
            b = _RTCP_FB.match(line)
            if f:
                fmtp[int(f.group(1))] = f.group(2).strip()
            elif x:
                extensions.setdefault(x.group(2), int(x.group(1)))
            elif b and b.group(2) == "transport-cc":
                feedback.add(b.group(1))
            elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = line[2:]
        if opus is None:
            raise SdpError("no_opus", "the offer's audio has no opus/48000")
        twcc = extensions.get(TRANSPORT_CC_URI)
        if not feedback & {str(opus), "*"}:
            twcc = None
        level = extensions.get(AUDIO_LEVEL_URI)
        if level is not None and not 1 <= level <= 255:
            level = None
        return AudioOffer(
            opus,
            fmtp.get(opus, ""),
            red,
            event,
            direction,
            twcc,
            frozenset(extensions.values()),
            level,
        )
    raise SdpError("no_audio", "the offer has no audio section")


def _extension_ids(section: list[str]) -> dict[int, str]:
    ids: dict[int, str] = {}
    for line in section:
        x = _EXTMAP.match(line)
        if x:
            ids[int(x.group(1))] = x.group(2)
    return ids


def fix_answer(answer: str, offer: AudioOffer, *, transport_cc: bool = True) -> str:
    """``answer`` with Opus's FEC parameters and ``telephone-event`` put back, and
    transport-wide congestion control taken when offered and ``transport_cc`` (see the
    module docstring); other sections and lines are kept as they are."""
    eol = "\r\n"
    session, media = _sections(_lines(answer))
    # one ID space for the whole BUNDLE group: every section's extensions count
    used: dict[int, str] = {}
    for section in media:
        used.update(_extension_ids(section))
    twcc = offer.transport_cc if transport_cc else None
    if twcc is not None and (
        not 1 <= twcc <= 14 or used.get(twcc, TRANSPORT_CC_URI) != TRANSPORT_CC_URI
    ):
        twcc = None
    if (
        twcc is not None
        and TRANSPORT_CC_URI in used.values()
        and used.get(twcc) != TRANSPORT_CC_URI
    ):
        twcc = None  # the answer took the extension under another ID already
    out = list(session)
    done = False
    for section in media:
        fields = section[0][2:].split()
        if done or len(fields) < 4 or fields[0] != "audio" or str(offer.opus) not in fields[3:]:
            out += section
            continue
        done = True
        listed = fields[3:]
        head = section[0]
        feedback = f"a=rtcp-fb:{offer.opus} transport-cc"
        body = [
            line
            for line in section[1:]
            if not line.startswith(f"a=fmtp:{offer.opus} ")
            and (twcc is None or line != feedback)
            and not any(
                pt is not None and line.startswith((f"a=rtpmap:{pt} ", f"a=fmtp:{pt} "))
                for pt in (offer.red, offer.telephone_event)
            )
        ]
        for extra_pt in (offer.red, offer.telephone_event):
            if extra_pt is not None and str(extra_pt) not in listed:
                head = f"{head} {extra_pt}"
                listed.append(str(extra_pt))
        # the fmtp and rtpmap lines go right after Opus's rtpmap
        at = next(
            (i + 1 for i, line in enumerate(body) if line.startswith(f"a=rtpmap:{offer.opus} ")),
            len(body),
        )
        extra = [f"a=fmtp:{offer.opus} minptime=10;useinbandfec=1"]
        if offer.red is not None:
            extra += [
                f"a=rtpmap:{offer.red} red/48000/2",
                f"a=fmtp:{offer.red} {offer.opus}/{offer.opus}",
            ]
        if twcc is not None:
            extra.insert(1, feedback)
        if offer.telephone_event is not None:
            extra += [
                f"a=rtpmap:{offer.telephone_event} telephone-event/48000",
                f"a=fmtp:{offer.telephone_event} 0-15",
            ]
        body = [*body[:at], *extra, *body[at:]]
        if twcc is not None and twcc not in _extension_ids(body):
            # after the section's other extensions (or before its first rtpmap)
            where = [i for i, line in enumerate(body) if line.startswith("a=extmap:")]
            first_map = next(
                (i for i, line in enumerate(body) if line.startswith("a=rtpmap:")), len(body)
            )
            at_ext = where[-1] + 1 if where else first_map
            body.insert(at_ext, f"a=extmap:{twcc} {TRANSPORT_CC_URI}")
        out += [head, *body]
    return eol.join(out) + eol
