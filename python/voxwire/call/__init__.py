"""A call without I/O: its decisions from messages and times passed in.

:class:`CallCore` is one media-stream call (WebSocket dialects, AudioSocket), and
:class:`CallPolicy` its limits; :class:`RtpEndpointCore` is one RTP stream (latching,
the playout clock, talkspurts), with the RTP call's start and idle rules
(:func:`rtp_frame_step`) and its start event (:func:`rtp_call_started`).
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
from voxwire.call.rtp import (
    DRAIN_MARK_PREFIX,
    RtpEndpointCore,
    RtpFrameStep,
    rtp_call_started,
    rtp_frame_step,
)

__all__ = [
    "CLOSE_IDLE",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SLOW_PEER",
    "CLOSE_TOO_BIG",
    "DRAIN_MARK_PREFIX",
    "CallCore",
    "CallPolicy",
    "CloseDecision",
    "Limits",
    "RateWindow",
    "RtpEndpointCore",
    "RtpFrameStep",
    "rtp_call_started",
    "rtp_frame_step",
]
