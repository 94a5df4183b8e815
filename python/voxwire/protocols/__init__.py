"""Sans-I/O codecs for telephony and browser media streams.

One codec object per call: bytes/str in, typed events out; audio, marks and clear in,
messages out. Time is a parameter; nothing here touches a socket or a clock. See
:mod:`voxwire.protocols.base` for the contract, :mod:`voxwire.protocols.events` for
the events, and :mod:`voxwire.protocols.registry` for :data:`CODECS`, the one list of
protocols, and the facts each codec class states (transport, subprotocols, marks,
clear, line rates).

>>> from voxwire.protocols import TwilioCodec
>>> codec = TwilioCodec()
>>> codec.receive('{"event": "connected", "protocol": "Call", "version": "1.0.0"}', now=0.0)
[Connected(protocol='Call', version='1.0.0')]
"""

from __future__ import annotations

from voxwire.protocols.audiosocket import AudioSocketCodec
from voxwire.protocols.base import (
    MediaStreamCodec,
    Outbound,
    Resampler,
    ResamplerFactory,
    SessionStats,
    Transport,
)
from voxwire.protocols.events import (
    Audio,
    CallStarted,
    Cleared,
    Connected,
    Dtmf,
    Event,
    MarkPlayed,
    MediaFormat,
    RemoteError,
    Stopped,
)
from voxwire.protocols.exotel import ExotelCodec
from voxwire.protocols.jambonz import JambonzCodec
from voxwire.protocols.plivo import PlivoCodec
from voxwire.protocols.rawpcm import RawPcmCodec
from voxwire.protocols.registry import CODECS, codec_factory, protocol_names
from voxwire.protocols.reorder import ReorderBuffer
from voxwire.protocols.rtp_session import ReceivedFrame, RtpSession, RtpSessionStats
from voxwire.protocols.teler import TelerCodec
from voxwire.protocols.telnyx import TelnyxCodec
from voxwire.protocols.twilio import TwilioCodec
from voxwire.protocols.vonage import VonageCodec

__all__ = [
    "CODECS",
    "Audio",
    "AudioSocketCodec",
    "CallStarted",
    "Cleared",
    "Connected",
    "Dtmf",
    "Event",
    "ExotelCodec",
    "JambonzCodec",
    "MarkPlayed",
    "MediaFormat",
    "MediaStreamCodec",
    "Outbound",
    "PlivoCodec",
    "RawPcmCodec",
    "ReceivedFrame",
    "RemoteError",
    "ReorderBuffer",
    "Resampler",
    "ResamplerFactory",
    "RtpSession",
    "RtpSessionStats",
    "SessionStats",
    "Stopped",
    "TelerCodec",
    "TelnyxCodec",
    "Transport",
    "TwilioCodec",
    "VonageCodec",
    "codec_factory",
    "protocol_names",
]
