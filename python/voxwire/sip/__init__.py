"""SIP signalling for voxwire.

* :mod:`voxwire.sip.message`: the bounded parser and the serializer;
* :mod:`voxwire.sip.sdp`: one audio stream's offer/answer.
"""

from __future__ import annotations

from voxwire.sip.message import Limits, NameAddr, Request, Response, Via, parse_message
from voxwire.sip.sdp import Answer, SessionDescription, answer_offer, parse_sdp

__all__ = [
    "Answer",
    "Limits",
    "NameAddr",
    "Request",
    "Response",
    "SessionDescription",
    "Via",
    "answer_offer",
    "parse_message",
    "parse_sdp",
]
