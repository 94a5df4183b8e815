"""The one list of media-stream protocols, and what each one can do.

:data:`CODECS` maps each protocol name to its codec class. Everything else that needs to
know the protocols (the command line's ``--protocol`` choices, the WebSocket adapters'
subprotocol negotiation, the simulated phone's sides, the tests) reads it from here. The
facts about a protocol live on its codec class (see :class:`MediaStreamCodec`):

======================  ==================================================================
attribute               meaning
======================  ==================================================================
``name``                the protocol's short name, the key in :data:`CODECS`
``transport``           ``"websocket"``, or ``"tcp"`` for a plain TCP byte stream
``subprotocols``        WebSocket subprotocols the provider asks for
``supports_marks``      the provider echoes marks once the audio before them has played
``supports_clear``      the protocol has a message that drops the provider's queued audio
``default_rate``        the line rate of the protocol's usual set-up, in Hz
``rates``               the line rates the protocol offers, in Hz
``frame_ms``            the duration of one outbound audio message, as the pacer cuts it
======================  ==================================================================

>>> from voxwire.protocols.registry import CODECS, protocol_names, select_subprotocol
>>> CODECS["vonage"].default_rate
16000
>>> protocol_names(supports_clear=False)
('audiosocket',)
>>> select_subprotocol(["chat", "audio.jambonz.org"])
'audio.jambonz.org'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from voxwire.protocols.audiosocket import AudioSocketCodec
from voxwire.protocols.base import MediaStreamCodec, Transport
from voxwire.protocols.exotel import ExotelCodec
from voxwire.protocols.jambonz import JambonzCodec
from voxwire.protocols.plivo import PlivoCodec
from voxwire.protocols.rawpcm import RawPcmCodec
from voxwire.protocols.teler import TelerCodec
from voxwire.protocols.telnyx import TelnyxCodec
from voxwire.protocols.twilio import TwilioCodec
from voxwire.protocols.vonage import VonageCodec

__all__ = ["CODECS", "SUBPROTOCOLS", "codec_factory", "protocol_names", "select_subprotocol"]

CODECS: dict[str, type[MediaStreamCodec]] = {
    cls.name: cls
    for cls in (
        TwilioCodec,
        TelnyxCodec,
        PlivoCodec,
        VonageCodec,
        ExotelCodec,
        TelerCodec,
        JambonzCodec,
        RawPcmCodec,
        AudioSocketCodec,
    )
}
"""Codec classes by protocol name (``"twilio"``, ``"telnyx"``, ...), in a fixed order."""

SUBPROTOCOLS: tuple[str, ...] = tuple(
    dict.fromkeys(p for cls in CODECS.values() for p in cls.subprotocols)
)
"""Every WebSocket subprotocol a registered protocol asks for, in registry order."""


def protocol_names(
    *,
    transport: Transport | None = None,
    supports_marks: bool | None = None,
    supports_clear: bool | None = None,
) -> tuple[str, ...]:
    """The names of the protocols with the given facts (``None``: either), in registry order.

    Parameters
    ----------
    transport
        Keep only the protocols over this transport.
    supports_marks, supports_clear
        Keep only the protocols whose codec class has this value.
    """
    return tuple(
        name
        for name, cls in CODECS.items()
        if (transport is None or cls.transport == transport)
        and (supports_marks is None or cls.supports_marks == supports_marks)
        and (supports_clear is None or cls.supports_clear == supports_clear)
    )


def codec_factory(
    protocol: str | Callable[[], MediaStreamCodec],
) -> Callable[[], MediaStreamCodec]:
    """What makes one call's codec: the registered class of a name (given voxwire's
    resampler, so a handler may play audio at any rate: ``call.play(pcm, 24000)`` is
    brought to the line rate), or ``protocol`` itself.

    Raises
    ------
    KeyError
        ``protocol`` is a name that is not in :data:`CODECS`.
    """
    if not isinstance(protocol, str):
        return protocol
    try:
        cls = CODECS[protocol]
    except KeyError:
        raise KeyError(
            f"unknown protocol {protocol!r}; expected one of {', '.join(CODECS)}"
        ) from None
    from voxwire.resample import Resampler

    return functools.partial(cls, resampler=Resampler)


def select_subprotocol(offered: Iterable[str]) -> str | None:
    """The subprotocol to accept from those a client offered, or ``None`` for none.

    The first of :data:`SUBPROTOCOLS` that is offered wins: a server serves one protocol,
    and accepting the subprotocol its provider asks for is what lets that provider connect.
    """
    asked = set(offered)
    return next((p for p in SUBPROTOCOLS if p in asked), None)
