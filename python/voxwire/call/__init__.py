"""A call without I/O: its decisions from messages and times passed in.

:class:`CallCore` is one media-stream call (WebSocket dialects, AudioSocket);
:class:`CallPolicy` its limits.
"""

from voxwire.call.core import CallCore
from voxwire.call.policy import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SLOW_PEER,
    CLOSE_TOO_BIG,
    CallPolicy,
    CloseDecision,
    Limits,
    RateWindow,
)

__all__ = [
    "CLOSE_IDLE",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SLOW_PEER",
    "CLOSE_TOO_BIG",
    "CallCore",
    "CallPolicy",
    "CloseDecision",
    "Limits",
    "RateWindow",
]
