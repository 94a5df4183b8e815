"""Per-call counters of a media-stream codec, and the kinds of input it skips.

:class:`SessionStats` is what ``codec.stats`` (and ``call.stats`` on a WebSocket or
AudioSocket call) returns; :mod:`voxwire.protocols.base` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["SessionStats"]


_SKIP_KINDS = (
    "malformed",
    "bad_base64",
    "bad_frame_size",
    "unknown_event",
    "media_before_start",
    "duplicate_start",
    "after_stop",
    "wrong_frame_type",
)


@dataclass
class SessionStats:
    """Per-call counters. Skipped input is counted by kind; see :meth:`note`."""

    messages_in: int = 0
    bytes_in: int = 0
    audio_chunks_in: int = 0
    audio_samples_in: int = 0
    messages_out: int = 0
    audio_samples_out: int = 0
    marks_out: int = 0
    clears_out: int = 0
    # input skipped, by kind (the session went on)
    malformed: int = 0
    bad_base64: int = 0
    bad_frame_size: int = 0
    unknown_event: int = 0
    media_before_start: int = 0
    duplicate_start: int = 0
    after_stop: int = 0
    wrong_frame_type: int = 0
    # network conditions, not errors: reordering of Telnyx media
    reordered: int = 0
    late_dropped: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0
    first_reason: dict[str, str] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Messages skipped as bad input, all kinds together."""
        return sum(getattr(self, kind) for kind in _SKIP_KINDS)

    def note(self, kind: str, reason: str) -> bool:
        """Count one skipped message of ``kind``; return True the first time (log it once)."""
        if kind not in _SKIP_KINDS:
            raise ValueError(f"unknown skip kind {kind!r}; expected one of {_SKIP_KINDS}")
        setattr(self, kind, getattr(self, kind) + 1)
        if kind in self.first_reason:
            return False
        self.first_reason[kind] = reason
        return True

    def traffic(self, rate: int) -> dict[str, int | float]:
        """The call's traffic as the call summary, the control API and the audit log
        report it: ``messages_in``, ``messages_out``, and ``audio_in_s``/``audio_out_s``
        (seconds of line-rate audio at ``rate``, 0 before the rate is known)."""
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "audio_in_s": round(self.audio_samples_in / rate, 3) if rate else 0.0,
            "audio_out_s": round(self.audio_samples_out / rate, 3) if rate else 0.0,
        }

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for logs and metrics)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "first_reason"}
