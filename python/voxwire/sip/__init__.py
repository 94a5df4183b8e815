"""SIP signalling for voxwire.

* :mod:`voxwire.sip.message`: the bounded parser and the serializer.
"""

from __future__ import annotations

from voxwire.sip.message import Limits, NameAddr, Request, Response, Via, parse_message

__all__ = ["Limits", "NameAddr", "Request", "Response", "Via", "parse_message"]
