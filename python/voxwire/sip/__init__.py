"""SIP signalling for voxwire: a sans-I/O user agent server (RFC 3261) and SDP offer/answer
(RFC 3264), so that a SIP trunk, a PBX or a softphone can call an agent.

* :mod:`voxwire.sip.message`: the bounded parser and the serializer;
* :mod:`voxwire.sip.sdp`: one audio stream's offer/answer, SDES ``a=crypto`` keys;
* :mod:`voxwire.sip.srtp`: SRTP with those keys (libsrtp2 through pylibsrtp,
  ``voxwire[sip-srtp]``);
* :mod:`voxwire.sip.uas`: transactions, dialogs and timers, driven by ``now``;
* :mod:`voxwire.sip.auth`: the digest challenge and the source allow-list;
* :mod:`voxwire.aio.sip`: the asyncio driver over UDP, TCP and TLS, which runs an RTP call per
  answered INVITE (:func:`voxwire.aio.sip.serve_sip`).
"""

from __future__ import annotations

from voxwire.sip.auth import Authenticator
from voxwire.sip.message import Limits, NameAddr, Request, Response, Via, parse_message
from voxwire.sip.sdp import Answer, SessionDescription, answer_offer, parse_sdp
from voxwire.sip.uas import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    IncomingCall,
    SipEvent,
    SipServer,
)

__all__ = [
    "Answer",
    "Authenticator",
    "CallCancelled",
    "CallConfirmed",
    "CallEnded",
    "IncomingCall",
    "Limits",
    "NameAddr",
    "Request",
    "Response",
    "SessionDescription",
    "SipEvent",
    "SipServer",
    "Via",
    "answer_offer",
    "parse_message",
    "parse_sdp",
]
