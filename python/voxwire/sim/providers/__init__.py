"""The provider's half of each media-stream protocol: one simulated provider per protocol.

Each module mirrors the codec of the same name in :mod:`voxwire.protocols` from the other
side of the wire (see :mod:`voxwire.sim.providers.base`). :data:`PROVIDERS` holds one side
for each protocol of :data:`voxwire.protocols.CODECS`, in the same order.

>>> from voxwire.sim.providers import PROVIDERS
>>> side = PROVIDERS["vonage"](strict=True)
>>> side.rate, side.supports_marks
(16000, True)
>>> side.parse('{"action": "clear"}')
[ClearAudio()]
>>> side.parse('{"action": "clear", "extra": 1}')
Traceback (most recent call last):
...
voxwire.errors.ConformanceError: vonage: clear: expected keys ['action'], got ['action', 'extra']
"""

from __future__ import annotations

from voxwire.sim.providers.audiosocket import AudioSocketSide
from voxwire.sim.providers.base import ProviderSide
from voxwire.sim.providers.events import (
    ClearAudio,
    Message,
    PhoneEvent,
    PlayAudio,
    PlayMark,
    Unexpected,
)
from voxwire.sim.providers.exotel import ExotelSide
from voxwire.sim.providers.jambonz import JambonzSide
from voxwire.sim.providers.plivo import PlivoSide
from voxwire.sim.providers.rawpcm import RawPcmSide
from voxwire.sim.providers.teler import TelerSide
from voxwire.sim.providers.telnyx import TelnyxSide
from voxwire.sim.providers.twilio import TwilioSide
from voxwire.sim.providers.vonage import VonageSide

__all__ = [
    "PROVIDERS",
    "AudioSocketSide",
    "ClearAudio",
    "ExotelSide",
    "JambonzSide",
    "Message",
    "PhoneEvent",
    "PlayAudio",
    "PlayMark",
    "PlivoSide",
    "ProviderSide",
    "RawPcmSide",
    "TelerSide",
    "TelnyxSide",
    "TwilioSide",
    "Unexpected",
    "VonageSide",
]

_SIDES: tuple[type[ProviderSide], ...] = (
    TwilioSide,
    TelnyxSide,
    PlivoSide,
    VonageSide,
    ExotelSide,
    TelerSide,
    JambonzSide,
    RawPcmSide,
    AudioSocketSide,
)

PROVIDERS: dict[str, type[ProviderSide]] = {side.name: side for side in _SIDES}
"""Provider sides by protocol name, in the order of :data:`voxwire.protocols.CODECS`.

A side takes its protocol's facts (``name``, ``default_rate``, ``rates``,
``subprotocols``, ``raw_tcp``, ``supports_marks``, ``supports_clear``) from its codec
class (the tests check that every protocol of the registry has exactly one side).
"""
