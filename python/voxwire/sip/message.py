"""SIP messages: a strict, bounded parser and a serializer (RFC 3261 sections 7, 18, 20, 25).

>>> from voxwire.sip.message import parse_message
>>> msg = parse_message(
...     b"OPTIONS sip:bot@192.0.2.1 SIP/2.0\\r\\n"
...     b"v: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK776asdhds\\r\\n"
...     b"Max-Forwards: 70\\r\\nTo: <sip:bot@192.0.2.1>\\r\\n"
...     b"From: <sip:pbx@192.0.2.9>;tag=1928301774\\r\\ni: a84b4c76e66710\\r\\n"
...     b"CSeq: 63104 OPTIONS\\r\\nl: 0\\r\\n\\r\\n"
... )
>>> msg.method, msg.header("Call-ID"), msg.cseq, msg.vias[0].branch
('OPTIONS', 'a84b4c76e66710', (63104, 'OPTIONS'), 'z9hG4bK776asdhds')

Parsing
-------
:func:`parse_message` takes one datagram (or one message cut out of a TCP stream by
:func:`message_length`) and returns a :class:`Request` or a :class:`Response`, or raises
:class:`~voxwire.errors.SipParseError` whose ``reason`` names the rule broken, for a
driver to count. It never reads past the input and every dimension is bounded by
:class:`Limits`: the whole message, one header line, the number of header fields, the
number of Via values, the body. Compact header names (section 7.3.3) are expanded, names
are case-insensitive and kept in their canonical spelling, folded lines (section 7.3.1,
a continuation line starting with a space or tab) are joined, comma-separated values are
split outside quoted strings and angle brackets (section 7.3.1). Content-Length
(section 20.14) must be one decimal number; a datagram holding fewer body bytes than it
says is an error, extra bytes after the body are discarded (section 18.3). NUL bytes,
bare CR or LF in the header section, a missing mandatory header (section 8.1.1: To, From,
CSeq, Call-ID, Via; Max-Forwards is not checked because a server does not forward), a
CSeq whose method is not the request's, and a start line that is not SIP/2.0 are errors.

Serializing
-----------
:meth:`Request.encode` and :meth:`Response.encode` write the start line, the headers in
their order, and a Content-Length computed from the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from voxwire.errors import SipParseError

__all__ = [
    "COMPACT_FORMS",
    "Limits",
    "NameAddr",
    "Request",
    "Response",
    "Via",
    "message_length",
    "parse_message",
    "parse_name_addr",
    "parse_via",
    "split_values",
]

# RFC 3261 section 7.3.3 (and the extensions' compact forms: RFC 3265, 3515, 4028, 3841)
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "x": "Session-Expires",
}

_CANONICAL: Final[dict[str, str]] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow",
        "Call-ID",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "From",
        "Max-Forwards",
        "Min-SE",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Session-Expires",
        "Supported",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Authorization",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Subject",
        "Event",
        "Allow-Events",
        "Refer-To",
    )
}

# Headers whose value is a comma-separated list (section 7.3.1); others are kept whole
# (Authorization, WWW-Authenticate, Date... hold commas of their own).
_LIST_HEADERS: Final = frozenset(
    {
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
    }
)

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ([^\r\n]*)$")
_CSEQ = re.compile(r"^([0-9]{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)$")
_VIA = re.compile(
    r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?:\s*:\s*([0-9]{1,5}))?\s*(.*)$"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds the parser enforces; a message past any of them is a
    :class:`~voxwire.errors.SipParseError` (reasons in brackets).

    The defaults fit every real call set-up with room to spare (an INVITE through a few
    proxies is 1-3 KB with 2-6 Vias) and keep one hostile datagram to a few hundred KB of
    work at most.
    """

    max_message: int = 65535
    """Bytes in one message, header and body (``too_large``); a UDP datagram's maximum."""
    max_line: int = 8192
    """Bytes in one header field after unfolding, or in the start line (``line_too_long``)."""
    max_headers: int = 128
    """Header fields (``too_many_headers``); a folded field counts once."""
    max_vias: int = 32
    """Via values (``too_many_vias``)."""
    max_values: int = 64
    """Values of one other comma-separated header, Route and Record-Route included
    (``too_many_values``)."""
    max_body: int = 32768
    """Body bytes (``body_too_large``)."""


DEFAULT_LIMITS: Final = Limits()


def split_values(value: str) -> list[str]:
    """Split a header value at the commas outside quoted strings and ``<...>``."""
    out: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def _params(text: str) -> dict[str, str]:
    # ";name=value;flag" -> {"name": "value", "flag": ""}; names are case-insensitive
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return params


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (section 20.42): transport, sent-by host and port, parameters."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        """The branch parameter ("" when absent)."""
        return self.params.get("branch", "")

    def encode(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {sent_by}{params}"


def parse_via(value: str) -> Via:
    """Parse one Via value; raise :class:`~voxwire.errors.SipParseError` (``bad_via``)."""
    m = _VIA.match(value.strip())
    if m is None:
        raise SipParseError(
            "bad_via", f"Via: expected 'SIP/2.0/<transport> host', got {value!r:.80}"
        )
    transport, host, port, rest = m.groups()
    if rest and not rest.startswith(";"):
        raise SipParseError("bad_via", f"Via: expected ';' parameters, got {rest!r:.80}")
    port_number = int(port) if port else None
    if port_number is not None and not 0 < port_number < 65536:
        raise SipParseError("bad_via", f"Via: port out of range: {port}")
    return Via(transport.upper(), host, port_number, _params(rest))


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route value (section 20.10): the URI, the
    optional display name and the header parameters (``tag``, ``expires``, ...)."""

    uri: str
    display: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """The tag parameter ("" when absent)."""
        return self.params.get("tag", "")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display, {**self.params, "tag": tag})

    def encode(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{display}<{self.uri}>{params}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse a name-addr or addr-spec with header parameters (``bad_address``).

    Without angle brackets a ``;`` starts the header parameters (section 20.10), so the
    URI of an addr-spec cannot carry parameters of its own.
    """
    text = value.strip()
    lt = text.find("<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("bad_address", f"address without '>': {value!r:.80}")
        display = text[:lt].strip().strip('"').strip()
        uri = text[lt + 1 : gt].strip()
        rest = text[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise SipParseError("bad_address", f"junk after '>': {value!r:.80}")
    else:
        display = ""
        uri, _, rest = text.partition(";")
        uri = uri.strip()
        rest = ";" + rest if rest else ""
    if ":" not in uri or any(c.isspace() for c in uri):
        raise SipParseError("bad_address", f"not a URI: {uri!r:.80}")
    return NameAddr(uri, display, _params(rest))


class _Message:
    """What requests and responses share: headers in order, the body, accessors."""

    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any spelling or compact form), or None."""
        key = _canonical(name)
        for n, v in self.headers:
            if n == key:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name``, in order, list headers split at commas."""
        key = _canonical(name)
        out: list[str] = []
        for n, v in self.headers:
            if n == key:
                out.extend(split_values(v) if key in _LIST_HEADERS else [v])
        return out

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.header_values("Via")]

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.header("CSeq") or ""
        m = _CSEQ.match(value.strip())
        if m is None:
            raise SipParseError(
                "bad_cseq", f"CSeq: expected '<number> <method>', got {value!r:.80}"
            )
        return int(m.group(1)), m.group(2).upper()

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.header("From") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.header("To") or "")

    def _encode(self, start: str) -> bytes:
        lines = [start]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(slots=True)
class Request(_Message):
    """A SIP request; ``method`` is upper case."""

    method: str
    uri: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def encode(self) -> bytes:
        """The request on the wire, with a Content-Length of the body."""
        return self._encode(f"{self.method} {self.uri} SIP/2.0")


@dataclass(slots=True)
class Response(_Message):
    """A SIP response."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def encode(self) -> bytes:
        """The response on the wire, with a Content-Length of the body."""
        return self._encode(f"SIP/2.0 {self.status} {self.reason}")


def _canonical(name: str) -> str:
    lower = name.strip().lower()
    if len(lower) == 1:
        full = COMPACT_FORMS.get(lower)
        if full is not None:
            return full
    return _CANONICAL.get(lower) or "-".join(p.capitalize() for p in lower.split("-"))


def message_length(buffer: bytes | bytearray, limits: Limits = DEFAULT_LIMITS) -> int | None:
    """Length of the first whole message in a stream buffer (TCP framing, section 18.3),
    or None when more bytes are needed. Raises :class:`~voxwire.errors.SipParseError`
    when the header section outgrows ``limits.max_message`` or Content-Length is missing
    or bad (a stream cannot be resynchronised after that)."""
    start = 0
    while buffer[start : start + 2] == b"\r\n":
        start += 2  # keep-alive CRLFs between messages (RFC 5626 section 3.5.1)
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buffer) - start > limits.max_message:
            raise SipParseError("too_large", f"no end of headers in {limits.max_message} bytes")
        return None
    head = bytes(buffer[start:end])
    m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,6})[ \t]*$", head)
    if m is None:
        raise SipParseError("bad_content_length", "a stream message needs a Content-Length")
    total = end + 4 + int(m.group(1))
    if total - start > limits.max_message:
        raise SipParseError("too_large", f"message of {total - start} bytes")
    return total if len(buffer) >= total else None


_MANDATORY_REQUEST: Final = ("Via", "From", "To", "Call-ID", "CSeq")
_MANDATORY_RESPONSE: Final = ("Via", "From", "To", "Call-ID", "CSeq")


def parse_message(
    data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
) -> Request | Response:
    """Parse one SIP message; see the module documentation.

    Raises
    ------
    voxwire.errors.SipParseError
        The message breaks RFC 3261 or one of ``limits``; ``reason`` says which rule.
    """
    raw = bytes(data)
    if len(raw) > limits.max_message:
        raise SipParseError("too_large", f"message of {len(raw)} bytes, limit {limits.max_message}")
    # leading CRLFs are keep-alives or stream padding (section 7.5)
    offset = 0
    while raw[offset : offset + 2] == b"\r\n":
        offset += 2
    end = raw.find(b"\r\n\r\n", offset)
    if end < 0:
        raise SipParseError("no_header_end", "no empty line after the headers")
    head = raw[offset:end]
    if b"\x00" in head:
        raise SipParseError("nul_byte", "NUL byte in the header section")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SipParseError("bad_encoding", f"header section is not UTF-8: {e}") from None
    lines = text.split("\r\n")
    if any("\r" in line or "\n" in line for line in lines):
        raise SipParseError("bare_cr_lf", "bare CR or LF in the header section")
    start = lines[0]
    if len(start) > limits.max_line:
        raise SipParseError("line_too_long", f"start line of {len(start)} bytes")
    message: Request | Response
    rm = _REQUEST_LINE.match(start)
    if rm is not None:
        message = Request(rm.group(1).upper(), rm.group(2))
    else:
        sm = _STATUS_LINE.match(start)
        if sm is None:
            raise SipParseError(
                "bad_start_line", f"not a SIP/2.0 request or status line: {start!r:.80}"
            )
        message = Response(int(sm.group(1)), sm.group(2))
    headers = message.headers
    vias = 0
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            # a folded line continues the field before it (section 7.3.1)
            if not headers:
                raise SipParseError("bad_folding", "continuation line before any header")
            name, value = headers[-1]
            value = f"{value} {line.strip()}"
            if len(value) > limits.max_line:
                raise SipParseError("line_too_long", f"header {name} over {limits.max_line} bytes")
            headers[-1] = (name, value)
            continue
        if len(line) > limits.max_line:
            raise SipParseError("line_too_long", f"header line of {len(line)} bytes")
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN.match(name):
            raise SipParseError("bad_header", f"not a header field: {line!r:.80}")
        if len(headers) >= limits.max_headers:
            raise SipParseError("too_many_headers", f"more than {limits.max_headers} header fields")
        headers.append((_canonical(name), value.strip()))
    for name, value in headers:
        if name == "Via":
            vias += len(split_values(value))
            if vias > limits.max_vias:
                raise SipParseError("too_many_vias", f"more than {limits.max_vias} Via values")
        elif (
            name in _LIST_HEADERS
            and value.count(",") >= limits.max_values
            and len(split_values(value)) > limits.max_values
        ):
            raise SipParseError("too_many_values", f"{name}: more than {limits.max_values} values")
    mandatory = _MANDATORY_REQUEST if isinstance(message, Request) else _MANDATORY_RESPONSE
    for name in mandatory:
        if message.header(name) is None:
            raise SipParseError("missing_header", f"no {name} header")
    if not message.header_values("Via"):  # "Via:" with nothing in it
        raise SipParseError("missing_header", "an empty Via header")
    lengths = {v.strip() for n, v in headers if n == "Content-Length"}
    body = raw[end + 4 :]
    if lengths:
        if len(lengths) != 1:
            raise SipParseError(
                "bad_content_length", f"conflicting Content-Length values {sorted(lengths)}"
            )
        (length_text,) = lengths
        if not length_text.isdigit() or len(length_text) > 10:
            raise SipParseError("bad_content_length", f"Content-Length: {length_text!r:.20}")
        length = int(length_text)
        if length > limits.max_body:
            raise SipParseError(
                "body_too_large", f"body of {length} bytes, limit {limits.max_body}"
            )
        if length > len(body):
            raise SipParseError(
                "truncated_body", f"Content-Length {length}, {len(body)} bytes follow"
            )
        body = body[:length]
    elif len(body) > limits.max_body:
        raise SipParseError("body_too_large", f"body of {len(body)} bytes, limit {limits.max_body}")
    message.body = body
    # the fields every transaction needs must parse now, not later in the state machine
    for via in message.header_values("Via"):
        parse_via(via)
    number, method = message.cseq
    if isinstance(message, Request) and method != message.method:
        raise SipParseError("bad_cseq", f"CSeq method {method} in a {message.method} request")
    if not message.call_id.strip() or any(c.isspace() for c in message.call_id):
        raise SipParseError("bad_call_id", f"Call-ID: {message.call_id!r:.80}")
    message.from_  # noqa: B018 (parse now: raises SipParseError)
    message.to  # noqa: B018
    del number
    return message
