"""SRTP for SIP calls keyed by SDES (RFC 3711, RFC 4568; AES-GCM per RFC 7714), through
libsrtp2 by its binding pylibsrtp (``pip install 'voxwire[sip-srtp]'``).

:class:`SrtpContext` holds the two directions of one call: what voxwire sends is
protected with its own key (the answer's ``a=crypto``), what the caller sends is
authenticated and decrypted with the caller's (the offer's). Sans-I/O: bytes in, bytes
out. A packet that fails authentication, or that was seen already or is older than the
replay window (libsrtp's 128 packets, RFC 3711 section 3.3.2), is dropped and counted in
:attr:`SrtpContext.dropped` by reason; nothing is raised on the media path. The keys are
never in a ``repr``, a counter or a log line.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from voxwire.errors import VoxwireError
from voxwire.sip.sdp import Crypto

__all__ = ["SrtpContext", "SrtpUnavailable"]


class SrtpUnavailable(VoxwireError):
    """SRTP needs the pylibsrtp package (``pip install 'voxwire[sip-srtp]'``)."""


_PROFILES: Final[dict[str, str]] = {
    "AES_CM_128_HMAC_SHA1_80": "SRTP_PROFILE_AES128_CM_SHA1_80",
    "AEAD_AES_128_GCM": "SRTP_PROFILE_AEAD_AES_128_GCM",
}


class SrtpContext:
    """Protect and unprotect one call's RTP with the keys of ``crypto``.

    Raises
    ------
    SrtpUnavailable
        pylibsrtp is not installed.
    """

    def __init__(self, crypto: Crypto) -> None:
        try:
            import pylibsrtp
        except ImportError:
            raise SrtpUnavailable("SRTP needs pylibsrtp: pip install 'voxwire[sip-srtp]'") from None
        profile = getattr(pylibsrtp.Policy, _PROFILES[crypto.suite])
        self.suite = crypto.suite
        self._error = pylibsrtp.Error
        outbound = pylibsrtp.Policy(
            key=crypto.local_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile,
        )
        inbound = pylibsrtp.Policy(
            key=crypto.remote_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile,
        )
        self._tx = pylibsrtp.Session(policy=outbound)
        self._rx = pylibsrtp.Session(policy=inbound)
        #: packets protected and unprotected
        self.protected = 0
        self.unprotected = 0
        #: packets dropped, by reason: ``replay`` (seen already, or too old), ``auth``
        #: (the tag does not match: a forged or damaged packet, or another key),
        #: ``malformed`` (shorter than an RTP header and the tag), ``protect`` (an
        #: outbound packet libsrtp refused)
        self.dropped: Counter[str] = Counter()

    def __repr__(self) -> str:  # never the keys
        return (
            f"SrtpContext(suite={self.suite}, protected={self.protected}, "
            f"unprotected={self.unprotected}, dropped={dict(self.dropped)})"
        )

    def protect(self, rtp: bytes) -> bytes | None:
        """The SRTP packet of ``rtp``, or None (counted) when libsrtp refuses it."""
        try:
            packet = bytes(self._tx.protect(rtp))
        except self._error:
            self.dropped["protect"] += 1
            return None
        self.protected += 1
        return packet

    def unprotect(self, srtp: bytes) -> bytes | None:
        """The RTP packet of ``srtp``, or None (counted) when it must be dropped."""
        if len(srtp) < 12 + 10:
            self.dropped["malformed"] += 1
            return None
        try:
            packet = bytes(self._rx.unprotect(srtp))
        except self._error as exc:
            text = str(exc).lower()
            self.dropped["replay" if "replay" in text else "auth"] += 1
            return None
        self.unprotected += 1
        return packet
