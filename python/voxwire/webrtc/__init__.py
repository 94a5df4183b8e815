"""WebRTC for browser callers: aiortc for the connection, voxwire for the media.

:class:`WebRtcServer` answers WHIP offers (RFC 9725) and serves a talk page;
:class:`WebRtcPeer` is one call, whose media runs through voxwire's jitter buffer, Opus
FEC and encoder (:mod:`voxwire.webrtc.peer`); :mod:`voxwire.webrtc.sdp` reads offers and
fixes aiortc's answers. Needs the ``webrtc`` extra (``pip install 'voxwire[webrtc]'``).
"""

from __future__ import annotations

from voxwire.webrtc.peer import WebRtcPeer, WebRtcUnavailable, check_aiortc
from voxwire.webrtc.sdp import AudioOffer, SdpError, fix_answer, parse_offer
from voxwire.webrtc.server import WebRtcServer

__all__ = [
    "AudioOffer",
    "SdpError",
    "WebRtcPeer",
    "WebRtcServer",
    "WebRtcUnavailable",
    "check_aiortc",
    "fix_answer",
    "parse_offer",
]
