"""The former name of :mod:`voxwire.sim.providers`, kept so existing imports still work.

``from voxwire.sim.provider import TwilioSide`` (and the other names this module held:
the nine sides, :class:`ProviderSide`, :data:`PROVIDERS` and the phone events) gives the
same objects as :mod:`voxwire.sim.providers`, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import warnings

from voxwire.sim.providers import (
    PROVIDERS,
    AudioSocketSide,
    ClearAudio,
    ExotelSide,
    JambonzSide,
    Message,
    PhoneEvent,
    PlayAudio,
    PlayMark,
    PlivoSide,
    ProviderSide,
    RawPcmSide,
    TelerSide,
    TelnyxSide,
    TwilioSide,
    Unexpected,
    VonageSide,
)
from voxwire.sim.providers.events import PCM

__all__ = [
    "PCM",
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

warnings.warn(
    "voxwire.sim.provider is now voxwire.sim.providers (one module per protocol)",
    DeprecationWarning,
    stacklevel=2,
)
