"""Seeded network impairment in user space: delay, jitter, loss, duplication, reordering.

There is no kernel netem in a test container, and a seeded model makes every impaired run
reproducible. :class:`Impairment` is sans-I/O: given the time a packet is sent, it says when
(and how many times) it arrives, or that it is lost. :class:`voxwire.netsim.UdpImpairmentProxy`
applies it to real UDP datagrams on loopback.

>>> net = Impairment(seed=1, delay=0.040, jitter=0.010, loss=0.05)
>>> arrivals = [net.schedule(0.020 * i) for i in range(1000)]
>>> 30 <= sum(not a for a in arrivals) <= 70            # about 5 % lost
True
>>> Impairment(seed=1, delay=0.040, jitter=0.010, loss=0.05).schedule(0.0) == arrivals[0]
True

Model
-----
* Delay: ``delay`` plus jitter drawn from a normal distribution of deviation ``jitter``
  (or a Pareto tail with ``heavy_tail``), correlated from packet to packet with
  ``correlation`` (AR(1)), never below zero; queueing keeps packets in order unless
  reordering is asked for (``fifo=True``, the default, is a single queue).
* Loss: independent (``loss``) or bursty by a Gilbert-Elliott chain: from the good state a
  packet moves to the bad state with probability ``burst_enter``, leaves it with
  ``burst_exit``; packets are lost with probability ``loss`` in the good state and
  ``burst_loss`` in the bad one.
* Duplication: with probability ``duplicate`` a second copy arrives ``duplicate_gap`` later.
* Reordering: with probability ``reorder`` a packet is held back ``reorder_delay`` extra,
  outside the queue, so later packets overtake it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Impairment", "ImpairmentStats", "UdpImpairmentProxy"]


@dataclass
class ImpairmentStats:
    """What an :class:`Impairment` did, packet by packet."""

    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    burst_losses: int = 0
    """Packets lost in the Gilbert-Elliott bad state."""

    @property
    def delivered(self) -> int:
        """Copies that arrive: sent - lost + duplicated."""
        return self.sent - self.lost + self.duplicated


@dataclass
class Impairment:
    """A seeded impairment model; see the module documentation for its parameters.

    All times are in seconds. ``schedule`` must be called in order of send time.
    """

    seed: int = 0
    delay: float = 0.0
    jitter: float = 0.0
    correlation: float = 0.0
    heavy_tail: bool = False
    loss: float = 0.0
    burst_enter: float = 0.0
    burst_exit: float = 1.0
    burst_loss: float = 1.0
    duplicate: float = 0.0
    duplicate_gap: float = 0.001
    reorder: float = 0.0
    reorder_delay: float = 0.050
    fifo: bool = True
    stats: ImpairmentStats = field(default_factory=ImpairmentStats)

    def __post_init__(self) -> None:
        for name in ("loss", "burst_enter", "burst_exit", "burst_loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Impairment: {name} must be a probability in [0, 1], got {p}")
        if not 0.0 <= self.correlation < 1.0:
            raise ValueError(f"Impairment: correlation must be in [0, 1), got {self.correlation}")
        for name in ("delay", "jitter", "duplicate_gap", "reorder_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"Impairment: {name} must be >= 0, got {getattr(self, name)}")
        self._rng = random.Random(self.seed)
        self._bad = False
        self._noise = 0.0
        self._queue_free = float("-inf")
        self._last_send = float("-inf")

    def _jitter(self) -> float:
        if self.jitter == 0.0:
            return 0.0
        if self.heavy_tail:
            # Pareto with shape 2.5, scaled so its standard deviation is `jitter`.
            shape = 2.5
            scale = self.jitter * (shape - 1) * ((shape - 2) / shape) ** 0.5
            draw = scale * (self._rng.paretovariate(shape) - 1.0)
        else:
            draw = self._rng.gauss(0.0, self.jitter)
        c = self.correlation
        self._noise = c * self._noise + (1.0 - c * c) ** 0.5 * draw
        return self._noise

    def _lost(self) -> bool:
        if self.burst_enter > 0.0:
            if self._bad:
                self._bad = self._rng.random() >= self.burst_exit
            else:
                self._bad = self._rng.random() < self.burst_enter
        p = self.burst_loss if self._bad else self.loss
        lost = self._rng.random() < p
        if lost and self._bad:
            self.stats.burst_losses += 1
        return lost

    def schedule(self, send_time: float) -> list[float]:
        """Arrival times of a packet sent at ``send_time``: empty if lost, two if duplicated."""
        if send_time < self._last_send:
            raise ValueError(
                f"Impairment.schedule: send times must not decrease ({send_time} after "
                f"{self._last_send})"
            )
        self._last_send = send_time
        self.stats.sent += 1
        # Draw every random number for every packet, so that changing one probability does
        # not shift the others' sequences.
        jitter = self._jitter()
        lost = self._lost()
        reordered = self._rng.random() < self.reorder
        duplicated = self._rng.random() < self.duplicate
        arrival = send_time + max(0.0, self.delay + jitter)
        if reordered:
            arrival += self.reorder_delay
        elif self.fifo:
            arrival = max(arrival, self._queue_free)
            self._queue_free = arrival
        if lost:
            self.stats.lost += 1
            return []
        if reordered:
            self.stats.reordered += 1
        if duplicated:
            self.stats.duplicated += 1
            return [arrival, arrival + self.duplicate_gap]
        return [arrival]


class _Forwarder(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpImpairmentProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.proxy._client = (str(addr[0]), int(addr[1]))
        self.proxy._forward(data)


class _Replies(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpImpairmentProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.proxy._reply(data)


class _Lane:
    """One direction of a proxy: datagrams held for the delivery times an
    :class:`Impairment` gives them, then handed to ``send``."""

    def __init__(self, impairment: Impairment, send: Callable[[bytes], None]) -> None:
        self.impairment = impairment
        self.send = send
        self._handles: set[asyncio.TimerHandle] = set()
        self._pending: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()

    def put(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for when in self.impairment.schedule(loop.time()):
            # asyncio runs timers with equal deadlines in no set order, so each timer
            # sends everything up to its own (time, arrival order) key from one heap
            key = (when, next(self._order))
            heapq.heappush(self._pending, (*key, data))
            self._handles.add(loop.call_at(when, self._deliver, key))

    def _deliver(self, key: tuple[float, int]) -> None:
        # Forget the timers that have fired (this one included); the rest are in flight.
        now = asyncio.get_running_loop().time()
        self._handles = {h for h in self._handles if h.when() > now}
        while self._pending and self._pending[0][:2] <= key:
            self.send(heapq.heappop(self._pending)[2])

    def clear(self) -> None:
        """Drop what is still in flight."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self._pending.clear()


class UdpImpairmentProxy:
    """Forwards UDP datagrams from a local port to ``target`` through an :class:`Impairment`.

    >>> async def main():                                         # doctest: +SKIP
    ...     proxy = UdpImpairmentProxy(("127.0.0.1", 40000), Impairment(seed=3, loss=0.02))
    ...     host, port = await proxy.start()                      # send RTP here
    ...     ...
    ...     proxy.close()

    Delivery times come from the model relative to the moment each datagram arrives (the
    event loop's clock), and are kept with ``loop.call_at``; nothing sleeps per packet.
    Datagrams whose delivery times tie (packets leaving the model's queue together) go out
    in the order they came in.

    With ``replies`` the proxy is a relay both ways: what ``target`` sends back to the
    proxy's forwarding socket goes, unimpaired, to the address the last datagram came from
    (:attr:`replied` counts them; without a sender yet they are dropped). Two peers that
    answer each other (ICE, DTLS, RTCP) then talk through it, and only the direction
    towards ``target`` is impaired, unless ``reply_impairment`` impairs the way back too
    (an :class:`Impairment` of its own, its statistics apart). ``only`` picks the
    datagrams the impairments apply to, both ways (say, RTP but not the ICE and DTLS
    handshakes); the others are relayed at once.
    """

    def __init__(
        self,
        target: tuple[str, int],
        impairment: Impairment,
        host: str = "127.0.0.1",
        *,
        replies: bool = False,
        only: Callable[[bytes], bool] | None = None,
        reply_impairment: Impairment | None = None,
    ) -> None:
        if reply_impairment is not None and not replies:
            raise ValueError("UdpImpairmentProxy: reply_impairment needs replies=True")
        self.target = target
        self.impairment = impairment
        self.reply_impairment = reply_impairment
        self.host = host
        self.replies = replies
        self.only = only
        self._client: tuple[str, int] | None = None
        #: datagrams relayed back from ``target`` (with ``replies``)
        self.replied = 0
        self._listen: asyncio.DatagramTransport | None = None
        self._send: asyncio.DatagramTransport | None = None
        self._out = _Lane(impairment, self._send_out)
        self._back = None if reply_impairment is None else _Lane(reply_impairment, self._send_back)
        self.forwarded = 0

    async def start(self, port: int = 0) -> tuple[str, int]:
        """Bind the listening socket and return its address."""
        loop = asyncio.get_running_loop()
        self._send, _ = await loop.create_datagram_endpoint(
            (lambda: _Replies(self)) if self.replies else asyncio.DatagramProtocol,
            remote_addr=self.target,
        )
        self._listen, _ = await loop.create_datagram_endpoint(
            lambda: _Forwarder(self), local_addr=(self.host, port)
        )
        address: tuple[str, int] = self._listen.get_extra_info("sockname")[:2]
        return address

    def _forward(self, data: bytes) -> None:
        if self.only is not None and not self.only(data):
            self._send_out(data)
            return
        self._out.put(data)

    def _send_out(self, data: bytes) -> None:
        if self._send is not None and not self._send.is_closing():
            self._send.sendto(data)
            self.forwarded += 1

    def _reply(self, data: bytes) -> None:
        if self._back is not None and (self.only is None or self.only(data)):
            self._back.put(data)
            return
        self._send_back(data)

    def _send_back(self, data: bytes) -> None:
        listen, client = self._listen, self._client
        if listen is not None and client is not None and not listen.is_closing():
            listen.sendto(data, client)
            self.replied += 1

    def close(self) -> None:
        """Stop listening and drop what is still in flight."""
        self._out.clear()
        if self._back is not None:
            self._back.clear()
        for transport in (self._listen, self._send):
            if transport is not None:
                transport.close()
