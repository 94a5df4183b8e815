"""A small bounded reorder buffer for media that may arrive out of order.

Telnyx documents that media frames over its WebSocket are not guaranteed to arrive in
order. :class:`ReorderBuffer` puts them back in sequence-number order with a bounded delay:

* an item with the next expected number is released at once, with any held items that
  follow it without a gap;
* an item ahead of a gap is held, at most ``capacity`` items and at most ``max_delay``
  seconds after the oldest held item arrived; past either bound the gap is given up
  (counted in :attr:`gaps`) and the held items are released in order;
* an item older than the next expected number (late, or a duplicate of one already
  released) or equal to a held one is dropped and counted.

Sequence numbers are plain unbounded integers (Telnyx sends them as decimal strings that
do not wrap). Time is a parameter; :meth:`deadline` says when :meth:`poll` must be
called. The interface (``push`` / ``poll`` / ``deadline`` / ``flush``) is the one the
native jitter buffer will keep.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

__all__ = ["ReorderBuffer"]

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """Release items in sequence order, holding at most ``capacity`` for ``max_delay`` s."""

    def __init__(self, capacity: int = 8, max_delay: float = 0.06) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {max_delay}")
        self.capacity = capacity
        self.max_delay = max_delay
        self._next: int | None = None
        self._highest: int | None = None
        self._held: list[tuple[int, int, T]] = []  # heap of (seq, arrival order, item)
        self._held_seqs: set[int] = set()
        self._oldest_arrival: float | None = None
        self._arrivals = 0
        #: items that arrived after a higher number (and were still put in order)
        self.reordered = 0
        #: items dropped because their number was already released or skipped
        self.late = 0
        #: items dropped because the same number was already held
        self.duplicates = 0
        #: sequence numbers given up as lost
        self.gaps = 0

    def __len__(self) -> int:
        """Items currently held."""
        return len(self._held)

    @property
    def next_expected(self) -> int | None:
        """The sequence number released next, once the first item has arrived."""
        return self._next

    def push(self, seq: int, item: T, now: float) -> list[T]:
        """Add one item received at ``now``; return the items now releasable, in order."""
        if self._next is None:
            self._next = seq
        if self._highest is not None and seq < self._highest and seq >= self._next:
            self.reordered += 1
        if self._highest is None or seq > self._highest:
            self._highest = seq
        if seq < self._next:
            self.late += 1
            return []
        if seq in self._held_seqs:
            self.duplicates += 1
            return []
        if seq == self._next:
            self._next += 1
            out = [item]
            out += self._drain()
            return out
        if not self._held:
            self._oldest_arrival = now
        self._arrivals += 1
        heapq.heappush(self._held, (seq, self._arrivals, item))
        self._held_seqs.add(seq)
        if len(self._held) > self.capacity:
            return self._skip_gap()
        return []

    def deadline(self) -> float | None:
        """When the current gap is given up, if items are held."""
        if self._oldest_arrival is None:
            return None
        return self._oldest_arrival + self.max_delay

    def poll(self, now: float) -> list[T]:
        """Release held items whose wait exceeded ``max_delay``."""
        out: list[T] = []
        while self._oldest_arrival is not None and now >= self._oldest_arrival + self.max_delay:
            # the remaining held items arrived no earlier; restart their clock at `now`
            out += self._skip_gap(restart_at=now)
        return out

    def flush(self) -> list[T]:
        """Release everything held, in order, skipping gaps (end of stream)."""
        out: list[T] = []
        while self._held:
            out += self._skip_gap()
        return out

    def _skip_gap(self, restart_at: float | None = None) -> list[T]:
        assert self._next is not None
        assert self._held
        first = self._held[0][0]
        self.gaps += first - self._next
        self._next = first
        out = self._drain()
        if self._held and restart_at is not None:
            self._oldest_arrival = restart_at
        return out

    def _drain(self) -> list[T]:
        out: list[T] = []
        while self._held and self._held[0][0] == self._next:
            seq, _, item = heapq.heappop(self._held)
            self._held_seqs.discard(seq)
            out.append(item)
            self._next += 1
        if not self._held:
            self._oldest_arrival = None
        return out
