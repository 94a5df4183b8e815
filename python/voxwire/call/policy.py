"""A call's limits as pure decisions: no event loop, no I/O, time passed in.

The asyncio driver (:mod:`voxwire.aio.session`) asks :class:`CallPolicy` about each
message it reads and each batch it is about to queue, and about the idle and
authentication deadlines when they fall due; every answer is ``None`` (go on) or a
:class:`CloseDecision` (close with this code, count this kind, give this reason). The
close codes and :class:`Limits` are documented in :mod:`voxwire.aio.session`, which
re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

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

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_IDLE = 4000
CLOSE_SLOW_PEER = 4001


@dataclass(frozen=True)
class Limits:
    """Per-connection limits, enforced with the close codes of :mod:`voxwire.aio.session`."""

    #: largest message accepted, in bytes (text frames counted as UTF-8 characters)
    max_message_bytes: int = 64 * 1024
    #: messages without audio (control, marks, skipped input) allowed per second, with
    #: one second of burst; audio is limited by the three fields below instead
    max_messages_per_second: float = 250.0
    #: seconds of audio that may arrive ahead of real time at once (held audio a stalled
    #: network delivers in one burst)
    max_audio_burst: float = 10.0
    #: seconds of audio per second allowed sustained (a little above real time)
    max_audio_rate: float = 1.05
    #: the least a message carrying audio costs, in seconds (tiny media messages at a huge
    #: rate exhaust the audio budget)
    min_message_audio: float = 0.01
    #: seconds without any message before the connection is closed
    idle_timeout: float = 15.0
    #: seconds the handler may run on after the stream ended
    handler_grace: float = 2.0
    #: inbound events queued for a slow handler before audio is dropped (and counted)
    max_pending_events: int = 1000
    #: outbound messages waiting for the peer to read them before the call is closed with
    #: ``CLOSE_SLOW_PEER`` (the pacer adds 50 a second: 500 is about 10 s of audio)
    max_pending_out: int = 500
    #: seconds the peer may take to answer a read probe before the call is closed with
    #: ``CLOSE_SLOW_PEER`` (transports that can probe only; see "Slow peers")
    max_read_lag: float = 10.0
    #: seconds between read probes
    read_probe_interval: float = 2.0
    #: seconds a connection that showed no token on the upgrade has to show it in its
    #: start message before it is closed with ``CLOSE_POLICY``
    auth_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "max_messages_per_second",
            "max_audio_burst",
            "max_audio_rate",
            "idle_timeout",
            "max_pending_events",
            "max_pending_out",
            "max_read_lag",
            "read_probe_interval",
            "auth_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value!r}")
        for name in ("min_message_audio", "handler_grace"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"Limits.{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class CloseDecision:
    """Close the call: ``kind`` is counted (``VIOLATIONS``), ``code`` and ``reason`` sent."""

    kind: str
    code: int
    reason: str


class RateWindow:
    """The two token buckets of the rate limits: audio seconds, and other messages."""

    __slots__ = ("_audio", "_audio_at", "_limits", "_messages", "_messages_at")

    def __init__(self, limits: Limits, now: float) -> None:
        self._limits = limits
        self._audio = limits.max_audio_burst
        self._audio_at = now
        self._messages = float(limits.max_messages_per_second)
        self._messages_at = now

    def audio(self, now: float, seconds: float) -> str:
        """Charge one message carrying ``seconds`` of audio; a reason when refused."""
        limits = self._limits
        level = self._audio + (now - self._audio_at) * limits.max_audio_rate
        if level > limits.max_audio_burst:
            level = limits.max_audio_burst
        self._audio_at = now
        self._audio = level - max(seconds, limits.min_message_audio)
        if self._audio < 0.0:
            return (
                f"audio faster than real time: more than {limits.max_audio_burst:g} s ahead "
                f"(sustained {limits.max_audio_rate:g} s/s)"
            )
        return ""

    def message(self, now: float) -> str:
        """Charge one message without audio; a reason when refused."""
        rate = self._limits.max_messages_per_second
        level = self._messages + (now - self._messages_at) * rate
        if level > rate:
            level = rate
        self._messages_at = now
        self._messages = level - 1.0
        if self._messages < 0.0:
            return f"more than {rate:g} messages/s without audio"
        return ""


class CallPolicy:
    """One call's limits: size, rate window, idleness, the auth deadline, slow peers.

    ``now`` is the driver's clock (seconds, monotonic) when the call begins; every method
    takes the time it is asked at.
    """

    __slots__ = ("_rate", "auth_due", "last_rx", "limits")

    def __init__(self, limits: Limits, now: float, *, authenticated: bool = True) -> None:
        self.limits = limits
        self._rate = RateWindow(limits, now)
        #: when something was last received (the idle clock)
        self.last_rx = now
        #: when an unauthenticated call is closed unless it authenticates first
        self.auth_due: float | None = None if authenticated else now + limits.auth_timeout

    def received(self, size: int, now: float) -> CloseDecision | None:
        """A message of ``size`` bytes arrived at ``now``: refuse it if too big."""
        self.last_rx = now
        limit = self.limits.max_message_bytes
        if size > limit:
            return CloseDecision(
                "too_big", CLOSE_TOO_BIG, f"message of {size} bytes, limit {limit}"
            )
        return None

    def too_big_closed(self, detail: str) -> CloseDecision:
        """The transport itself refused a message over the size limit."""
        limit = self.limits.max_message_bytes
        return CloseDecision("too_big", CLOSE_TOO_BIG, f"message over {limit} bytes ({detail})")

    def charge(self, now: float, audio_seconds: float) -> CloseDecision | None:
        """Charge the message just decoded (``audio_seconds`` 0 for none) to the rate window."""
        if audio_seconds:
            refused = self._rate.audio(now, audio_seconds)
            if refused:
                return CloseDecision("audio_rate", CLOSE_POLICY, refused)
        else:
            refused = self._rate.message(now)
            if refused:
                return CloseDecision("message_rate", CLOSE_POLICY, refused)
        return None

    @property
    def idle_due(self) -> float:
        """When the call is idle unless something arrives first."""
        return self.last_rx + self.limits.idle_timeout

    def check_idle(self, now: float) -> CloseDecision | None:
        """At ``now``: close when nothing arrived for ``idle_timeout`` (else re-check at
        :attr:`idle_due`)."""
        if now >= self.idle_due:
            return CloseDecision("idle", CLOSE_IDLE, f"idle for {self.limits.idle_timeout:g} s")
        return None

    def authenticated(self) -> None:
        """The call showed a valid token: the auth deadline no longer applies."""
        self.auth_due = None

    def check_auth_deadline(self, now: float) -> CloseDecision | None:
        """At ``now``: close a call still unauthenticated past its deadline."""
        if self.auth_due is None or now < self.auth_due:
            return None
        return CloseDecision(
            "auth_deadline",
            CLOSE_POLICY,
            f"not authenticated within {self.limits.auth_timeout:g} s (auth_timeout)",
        )

    def check_pending_out(self, pending: int, adding: int) -> CloseDecision | None:
        """The slow-peer rule: ``adding`` messages on top of ``pending`` unsent ones."""
        if pending + adding > self.limits.max_pending_out:
            return CloseDecision(
                "slow_peer",
                CLOSE_SLOW_PEER,
                f"peer not reading: {pending} messages pending "
                f"(max_pending_out={self.limits.max_pending_out})",
            )
        return None

    def read_lag_exceeded(self) -> CloseDecision:
        """A read probe went unanswered for ``max_read_lag``."""
        return CloseDecision(
            "slow_peer",
            CLOSE_SLOW_PEER,
            f"peer not reading: no answer to a read probe in "
            f"{self.limits.max_read_lag:g} s (max_read_lag)",
        )
