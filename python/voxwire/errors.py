"""voxwire's exception hierarchy.

Normal network conditions (late, lost, duplicate or reordered packets) are results and
counters, never exceptions. Exceptions are for malformed input and misuse, and their
messages name the expected and the received value.

Argument errors at the API boundary are the built-in ``TypeError`` (wrong type or dtype)
and ``ValueError`` (wrong length, shape or value); the classes below add the cases that
belong to voxwire's own layers.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConformanceError",
    "ConnectionClosed",
    "LocalProtocolError",
    "OpusPacketError",
    "OpusUnavailable",
    "PayloadError",
    "ProtocolError",
    "ProviderError",
    "QueueFull",
    "RemoteProtocolError",
    "RtpError",
    "SdpError",
    "ServiceError",
    "ServiceTimeout",
    "SipParseError",
    "TransportFeedbackError",
    "VoxwireError",
]


class VoxwireError(Exception):
    """Root of every exception voxwire defines."""


class ProtocolError(VoxwireError, ValueError):
    """A media-stream message that breaks its protocol."""


class LocalProtocolError(ProtocolError):
    """This side was asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class ConformanceError(VoxwireError, AssertionError):
    """The application sent what the provider's documentation does not allow.

    Raised by a simulated provider in strict mode (:mod:`voxwire.sim.providers`) on the
    first wire-format violation: wrong key set, value type, frame type (text or binary),
    invalid base64, a message the provider does not accept. It is an ``AssertionError``
    too, so a test framework reports it as a failed check.
    """


class _Reasoned(Exception):
    """An error that names, in ``reason``, the rule the input broke (stable, for counters)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)

    def __reduce__(self) -> tuple[type[_Reasoned], tuple[str, str]]:
        return (type(self), (self.reason, str(self)))


class RtpError(_Reasoned, RemoteProtocolError):
    """A malformed RTP packet; ``reason`` names the rule it breaks.

    Reasons: ``too_short``, ``bad_version``, ``csrc_past_end``, ``extension_past_end``,
    ``bad_padding``; for an RFC 2198 (RED) payload ``red_empty``, ``red_header_past_end``,
    ``red_too_many_blocks``, ``red_block_past_end``; for a header extension element (RFC
    8285, RFC 6464) ``extension_element_past_end``, ``bad_audio_level``.
    """


class TransportFeedbackError(_Reasoned, RemoteProtocolError):
    """A malformed RTCP transport-wide congestion-control feedback packet
    (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1), or a compound RTCP
    packet that cannot be split; ``reason`` names the rule it breaks.

    Reasons: ``too_short``, ``bad_version``, ``length_past_end``, ``bad_padding``,
    ``not_transport_feedback``, ``no_packets``, ``chunks_past_end``, ``reserved_symbol``,
    ``deltas_past_end``, ``trailing_data``.
    """


class SipParseError(_Reasoned, RemoteProtocolError):
    """A malformed SIP message (RFC 3261 section 7) or one past the parser's limits;
    ``reason`` names the rule it breaks.

    Reasons: ``too_large``, ``no_header_end``, ``nul_byte``, ``bad_encoding``,
    ``bare_cr_lf``, ``line_too_long``, ``bad_start_line``, ``bad_folding``, ``bad_header``,
    ``too_many_headers``, ``too_many_vias``, ``too_many_values``, ``missing_header``,
    ``bad_content_length``, ``body_too_large``, ``truncated_body``, ``bad_via``,
    ``bad_cseq``, ``bad_call_id``, ``bad_address``.
    """


class SdpError(_Reasoned, RemoteProtocolError):
    """A session description that is malformed (RFC 8866) or cannot be answered
    (RFC 3264); ``reason`` names the rule it breaks.

    Reasons: ``too_large``, ``nul_byte``, ``bad_line``, ``bad_version``, ``bad_origin``,
    ``bad_connection``, ``bad_media``, ``too_many_media``, ``too_many_formats``,
    ``too_many_attributes``, ``no_connection``, ``no_media`` (none at all),
    ``no_common_codec`` (no stream voxwire can take: the answer is 488),
    ``srtp_needs_tls`` (only an SRTP stream, offered where SRTP is not taken: 488),
    ``crypto_changed`` (a re-offer with other SRTP keys: 488), ``no_srtp`` (an answer
    to an SRTP offer without a key for it).
    """


class CodecError(VoxwireError, ValueError):
    """Encoded audio that cannot be decoded (a malformed payload, not a lost packet)."""


class OpusPacketError(_Reasoned, CodecError):
    """A malformed Opus packet (RFC 6716 3.4); ``reason`` names the rule it breaks.

    Reasons: ``empty``, ``odd_cbr_pair``, ``bad_length``, ``no_frame_count``,
    ``zero_frames``, ``too_long``, ``bad_padding``, ``uneven_cbr``.
    """


class PayloadError(_Reasoned, CodecError):
    """A malformed base64 media payload (RFC 4648); ``reason`` names the rule it breaks.

    Reasons: ``bad_length`` (not a multiple of 4 characters), ``bad_character`` (outside
    the base64 alphabet), ``bad_padding`` (misplaced ``=`` or non-zero leftover bits),
    ``too_long`` (more than 1 MiB decoded), ``odd_length`` (L16 bytes that are not whole
    samples).
    """


class OpusUnavailable(VoxwireError, ImportError):
    """Opus support needs the opuslib package and the system libopus library."""


class QueueFull(VoxwireError, BufferError):
    """Audio was pushed faster than it can be sent, past the stream's bound."""


class ProviderError(VoxwireError):
    """A speech or language provider failed or answered outside its contract."""


class ConnectionClosed(VoxwireError):
    """The transport closed; ``code`` and ``reason`` say how, when the protocol tells.

    ``local`` is true when the transport itself closed the connection because of the
    peer's input (a frame larger than its limit: ``code`` 1009).
    """

    def __init__(self, code: int | None = None, reason: str = "", *, local: bool = False) -> None:
        self.code = code
        self.reason = reason
        self.local = local
        super().__init__(f"connection closed (code={code}, reason={reason!r})")


class ServiceError(VoxwireError):
    """A speech or language service (STT, LLM, TTS, a tool) failed.

    ``service`` names the service (``"stt"``, ``"llm"``, ``"tts"``, or a tool's name) and
    ``reason`` is a short stable word for counters (``"connect"``, ``"status_503"``,
    ``"bad_message"``, ``"closed"``, ``"timeout"``, ...). The conversation treats it as a
    value: the caller hears an apology and the call goes on.
    """

    def __init__(self, service: str, reason: str, message: str = "") -> None:
        self.service = service
        self.reason = reason
        super().__init__(message or f"{service}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (ServiceError, (self.service, self.reason, str(self)))


class ServiceTimeout(ServiceError):
    """A service did not answer within ``seconds`` (``reason`` is ``"timeout"``)."""

    def __init__(self, service: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(service, "timeout", f"{service}: no answer within {seconds:g} s")

    def __reduce__(self) -> tuple[object, ...]:
        return (ServiceTimeout, (self.service, self.seconds))
