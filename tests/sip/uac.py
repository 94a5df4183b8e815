"""A scripted SIP caller for the sans-I/O tests: builds the requests a UAC sends
(RFC 3261 section 8.1.1) and reads the responses the server writes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from voxwire.sip.message import Request, Response, parse_message

CALLER: tuple[str, int] = ("192.0.2.9", 5062)
SERVER: tuple[str, int] = ("192.0.2.1", 5060)

OFFER = (
    b"v=0\r\no=caller 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=ptime:20\r\n"
)

_branches = itertools.count(1)


@dataclass
class Caller:
    call_id: str = "call-1@192.0.2.9"
    from_tag: str = "caller-tag"
    cseq: int = 1
    to_tag: str = ""
    branches: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        *,
        cseq: int | None = None,
        branch: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
        to_tag: str | None = None,
        rport: bool = False,
    ) -> bytes:
        if branch is None:
            branch = f"z9hG4bK-t{next(_branches)}"
        self.branches[method] = branch
        tag = self.to_tag if to_tag is None else to_tag
        via = f"SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch={branch}" + (";rport" if rport else "")
        headers = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f'"Caller" <sip:alice@{CALLER[0]}>;tag={self.from_tag}'),
            ("To", f"<sip:bot@{SERVER[0]}>" + (f";tag={tag}" if tag else "")),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq if cseq is None else cseq} {method}"),
            ("Contact", f"<sip:alice@{CALLER[0]}:{CALLER[1]}>"),
            *extra,
        ]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return Request(method, f"sip:bot@{SERVER[0]}", headers, body).encode()

    def invite(self, **kw: object) -> bytes:
        return self.request("INVITE", body=OFFER, **kw)  # type: ignore[arg-type]

    def ack(self, *, branch: str | None = None, to_tag: str | None = None) -> bytes:
        return self.request("ACK", cseq=1, branch=branch, to_tag=to_tag)


def responses(out: list[tuple[bytes, tuple[str, int]]]) -> list[Response]:
    parsed = [parse_message(wire) for wire, _ in out]
    return [m for m in parsed if isinstance(m, Response)]


def requests(out: list[tuple[bytes, tuple[str, int]]]) -> list[Request]:
    parsed = [parse_message(wire) for wire, _ in out]
    return [m for m in parsed if isinstance(m, Request)]


def statuses(out: list[tuple[bytes, tuple[str, int]]]) -> list[int]:
    return [r.status for r in responses(out)]
