"""RFC 4733 telephone events (DTMF over RTP), received and sent: sans-I/O.

An event's packets share one RTP timestamp (the event's start); the payload is four
bytes: the event code, a byte holding the end bit (0x80), a reserved bit and the volume,
and the duration so far in timestamp units (RFC 4733 section 2.3). The end packet is
sent three times (section 2.5.1.4). :class:`TelephoneEvents` turns a stream of such
payloads into one :class:`~voxwire.protocols.events.Dtmf` per key press: on the first
end packet of each timestamp, or, if every end packet was lost, when a packet of a newer
event arrives (then with the longest duration seen).
"""

from __future__ import annotations

from voxwire.protocols.events import Dtmf

__all__ = ["DIGITS", "TelephoneEvents", "event_payloads"]

DIGITS = "0123456789*#ABCD"
"""Event codes 0-15 (RFC 4733 section 3.2)."""


class TelephoneEvents:
    """Turns telephone-event payloads into key presses; see the module docstring.

    ``clock_rate`` is the payload type's RTP clock (8000 for telephone-event/8000, 48000
    in a browser's offer). Malformed payloads and codes other than 0-15 are counted in
    :attr:`malformed` and :attr:`ignored`.
    """

    def __init__(self, clock_rate: int = 8000) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self._open: tuple[int, int, int] | None = None  # (timestamp, code, duration)
        self._ended: set[int] = set()
        self._order: list[int] = []
        #: payloads shorter than 4 bytes
        self.malformed = 0
        #: events that are not DTMF keys (codes above 15)
        self.ignored = 0

    def receive(self, payload: bytes, timestamp: int) -> list[Dtmf]:
        """One packet's payload and RTP timestamp; the key presses it completes."""
        if len(payload) < 4:
            self.malformed += 1
            return []
        code, flags = payload[0], payload[1]
        duration = int.from_bytes(payload[2:4], "big")
        if timestamp in self._ended:
            return []  # a repeat of an end packet, or a late packet of an ended event
        out: list[Dtmf] = []
        if self._open is not None and self._open[0] != timestamp:
            # a newer event began: the open one lost all its end packets
            out += self._finish(*self._open)
            self._open = None
        if code > 15:
            self.ignored += 1
            return out
        if flags & 0x80:
            out += self._finish(timestamp, code, duration)
            self._open = None
        else:
            longest = max(duration, self._open[2]) if self._open is not None else duration
            self._open = (timestamp, code, longest)
        return out

    def _finish(self, timestamp: int, code: int, duration: int) -> list[Dtmf]:
        self._ended.add(timestamp)
        self._order.append(timestamp)
        if len(self._order) > 64:  # remember the last few events only
            self._ended.discard(self._order.pop(0))
        return [Dtmf(DIGITS[code], round(duration * 1000 / self.clock_rate))]


def event_payloads(digit: str, duration: int, step: int, *, volume: int = 10) -> list[bytes]:
    """The payloads of one key press, in the order sent (RFC 4733 section 2.5.1): one
    every ``step`` timestamp units with the duration so far, then the end packet three
    times (section 2.5.1.4), all for one event at ``duration`` units; ``volume`` in -dBm0
    (0-63)."""
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"event_payloads: a key of {DIGITS!r}, got {digit!r}")
    if not 0 < step <= duration <= 0xFFFF or not 0 <= volume <= 63:
        raise ValueError(
            f"event_payloads: need 0 < step <= duration <= 65535 and volume 0-63, got "
            f"{step}, {duration}, {volume}"
        )
    out = [bytes((code, volume)) + d.to_bytes(2, "big") for d in range(step, duration, step)]
    end = bytes((code, 0x80 | volume)) + duration.to_bytes(2, "big")
    return [*out, end, end, end]
