"""A call's policy without I/O: decisions from messages and times passed in."""

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
    "CallPolicy",
    "CloseDecision",
    "Limits",
    "RateWindow",
]
