"""Seeded network traces and a virtual-clock replay harness for jitter buffers.

A trace is one stream of 20 ms packets: for every frame its send time (on the receiver's
clock, so sender clock drift is part of the trace), the arrival time of its packet (or none:
lost in the network), an optional duplicate arrival, whether the stream carries in-band FEC
(packet N+1 can rebuild N), how many earlier frames each packet repeats as RFC 2198
redundant blocks (0 for most scenarios), and a low-energy flag for frames of silence.
Sequence numbers start at 65,500 so they wrap; timestamps start a few frames before 2^32,
so they wrap too.

:func:`replay` drives any buffer that implements the small :class:`Player` protocol on a
virtual clock (one pull every 20 ms; every arrival up to the pull's time is inserted first)
and scores only what it observes at each pull: which frame came out, and when. A player
that defines ``insert_copy(index, ts, arrival_ms, has_fec)`` is handed the redundant copies
a packet carries, after the packet; the others see primaries only.

:func:`oracle` is the static oracle D*(eps): the (1 - eps) quantile of the trace's delay
demand, where a frame's demand is its FEC-effective arrival (the earliest of its own packet
and the packets that can rebuild it: with in-band FEC the next one, with RED copies the
next ``red`` ones, and with both one more, whose copy of the next frame carries its FEC)
minus its send time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "SCENARIOS",
    "FrameOut",
    "FrameStarts",
    "Player",
    "Score",
    "Trace",
    "make_trace",
    "oracle",
    "replay",
]

FRAME_MS = 20
CLOCK_RATE = 8000
SPF = CLOCK_RATE * FRAME_MS // 1000
SEQ0 = 65500
TS0 = 0xFFFFFFFF - 40 * SPF + 1
INTERRUPTION_MS = 150

FrameOut = tuple[str, int]
"""What a pull produced: (kind, frame index). Kinds: "normal", "fec" (a frame rebuilt from
FEC): the index is the frame played. Any other kind means nothing played; its index is the
frame the unit stands in for when the buffer gives that frame up with it (a concealment that
moves the playout past a missing frame), else -1 (a wait, an insertion, silence)."""

FrameStarts = list[tuple[str, int, float]]
"""What a pull of a player that time-stretches produced: (kind, frame index, offset ms) for
every unit whose audio starts in these 20 ms, at that offset from the pull (a shortened
frame makes the next one start in the same 20 ms; a lengthened one can fill 20 ms on its
own: then the list is empty, and the pull plays audio already started)."""


class Player(Protocol):
    """A buffer under test, driven by :func:`replay`. Times are ms of the virtual clock."""

    def insert(
        self, index: int, seq: int, ts: int, arrival_ms: int, has_fec: bool, quiet: bool
    ) -> None: ...

    def pull(self, now_ms: int) -> FrameOut | FrameStarts: ...


@dataclass(frozen=True)
class Trace:
    """One scenario's packets (index = frame number from 0)."""

    name: str
    description: str
    send_ms: npt.NDArray[np.float64]
    arrival_ms: npt.NDArray[np.float64]  # nan: lost
    dup_ms: npt.NDArray[np.float64]  # nan: no duplicate
    quiet: npt.NDArray[np.bool_]
    fec: bool
    red: int = 0
    """Earlier frames every packet repeats as RFC 2198 redundant blocks."""

    @property
    def frames(self) -> int:
        """Number of frames sent."""
        return len(self.send_ms)

    def events(self) -> list[tuple[int, int]]:
        """(arrival ms, frame index) for every packet received, duplicates included, in
        order of arrival."""
        out: list[tuple[int, int]] = []
        for arr in (self.arrival_ms, self.dup_ms):
            ok = ~np.isnan(arr)
            idx = np.nonzero(ok)[0]
            out += zip(np.ceil(arr[ok]).astype(np.int64).tolist(), idx.tolist(), strict=True)
        out.sort()
        return out

    @property
    def reach(self) -> int:
        """How many later packets can rebuild a frame: ``red`` copies, one more with FEC."""
        return self.red + int(self.fec)

    def effective_arrival(self) -> npt.NDArray[np.float64]:
        """Arrival of each frame's data: its own packet or one of the :attr:`reach` next."""
        own = np.where(np.isnan(self.arrival_ms), np.inf, self.arrival_ms)
        out: npt.NDArray[np.float64] = own.copy()
        for j in range(1, self.reach + 1):
            out[:-j] = np.minimum(out[:-j], own[j:])
        return out

    @property
    def unrecoverable(self) -> float:
        """Fraction of frames with neither their packet nor one that can rebuild it."""
        return float(np.isinf(self.effective_arrival()).mean())

    @property
    def raw_loss(self) -> float:
        """Fraction of packets lost in the network."""
        return float(np.isnan(self.arrival_ms).mean())


def _gilbert_elliott(
    rng: np.random.Generator, n: int, p_gb: float, p_bg: float, loss_good: float, loss_bad: float
) -> npt.NDArray[np.bool_]:
    """Bursty loss (Gilbert 1960, Elliott 1963): a two-state Markov chain, loss per state."""
    lost = np.zeros(n, dtype=bool)
    bad = False
    u = rng.random((n, 2))
    for i in range(n):
        bad = (u[i, 0] >= p_bg) if bad else (u[i, 0] < p_gb)
        lost[i] = u[i, 1] < (loss_bad if bad else loss_good)
    return lost


def _hold_until(
    send: npt.NDArray[np.float64], arrival: npt.NDArray[np.float64], start: float, held: float
) -> None:
    """Packets sent during [start, start + held) are released together at start + held, so
    their delay drains at slope -1 (a queue or a stalled transport flushing)."""
    in_spike = (send >= start) & (send < start + held)
    arrival[in_spike] = np.maximum(
        arrival[in_spike], start + held + 0.1 * np.arange(in_spike.sum())
    )


def _fifo(arrival: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """In-order delivery: no packet overtakes the one before it."""
    return np.maximum.accumulate(arrival)


def make_trace(name: str, seconds: float, seed: int, *, red: int = 0) -> Trace:
    """Build scenario ``name`` ("S1".."S8") of ``seconds`` length from ``seed``.

    ``red`` > 0: the same network trace, with every packet repeating the ``red`` frames
    before it as RFC 2198 redundant blocks; the trace is named e.g. "S3+RED".
    """
    if not 0 <= red <= 2:
        raise ValueError(f"make_trace: red must be 0, 1 or 2, got {red}")
    rng = np.random.default_rng([seed, int(name[1:])])
    n = int(seconds * 1000 / FRAME_MS)
    k = np.arange(n, dtype=np.float64)
    send = k * FRAME_MS
    quiet = np.zeros(n, dtype=bool)
    dup = np.full(n, np.nan)
    fec = False
    if name == "S1":
        desc = "clean LAN: 1 ms + up to 2 ms jitter, no loss"
        arrival = send + 1.0 + rng.uniform(0, 2, n)
    elif name == "S2":
        desc = "broadband: 20 ms + AR(1) queueing (sd ~25 ms) + 2 ms noise, 0.5% loss"
        q = np.zeros(n)
        noise = rng.normal(0, 6.0, n)
        for i in range(1, n):
            q[i] = max(0.0, 0.97 * q[i - 1] + noise[i])
        arrival = _fifo(send + 20.0 + q + rng.exponential(2.0, n))
        arrival[rng.random(n) < 0.005] = np.nan
    elif name == "S3":
        desc = "bursty Gilbert-Elliott loss (~5%, bursts) with in-band FEC, 30 ms + 5 ms jitter"
        arrival = send + 30.0 + rng.exponential(5.0, n)
        arrival[_gilbert_elliott(rng, n, 0.03, 0.4, 0.002, 0.55)] = np.nan
        fec = True
    elif name == "S4":
        desc = "delay spikes of 200-600 ms every 8-15 s, draining at slope -1"
        arrival = send + 25.0 + rng.exponential(3.0, n)
        t = rng.uniform(3000, 8000)
        while t < send[-1]:
            _hold_until(send, arrival, t, rng.uniform(200, 600))
            t += rng.uniform(8000, 15000)
        arrival = _fifo(arrival)
    elif name == "S5":
        desc = "reordering (4% of packets 20-80 ms late) and duplicates (3%), 30 ms + 5 ms"
        arrival = send + 30.0 + rng.exponential(5.0, n)
        late = rng.random(n) < 0.04
        arrival[late] += rng.uniform(20, 80, late.sum())
        d = rng.random(n) < 0.03
        dup[d] = arrival[d] + rng.uniform(1, 40, d.sum())
        arrival[rng.random(n) < 0.003] = np.nan
    elif name == "S6":
        desc = "mobile: 60 ms + Pareto jitter, x4 for 30 s from 1/4 of the trace, 1% loss"
        jitter = 4.0 * (rng.pareto(2.5, n))
        t0 = send[-1] / 4
        regime = (send >= t0) & (send < t0 + 30000)
        jitter[regime] *= 4.0
        arrival = send + 60.0 + jitter
        arrival[rng.random(n) < 0.01] = np.nan
    elif name == "S7":
        desc = "WebSocket/TCP: head-of-line stalls of 150-500 ms every 4-10 s, released as bursts"
        arrival = send + 40.0 + rng.exponential(2.0, n)
        t = rng.uniform(2000, 6000)
        while t < send[-1]:
            _hold_until(send, arrival, t, rng.uniform(150, 500))
            t += rng.uniform(4000, 10000)
        arrival = _fifo(arrival)
    elif name == "S8":
        desc = "sender clock +250 ppm then -250 ppm; talk 1-4 s / silence 0.5-2 s; 30 + 4 ms"
        half = n // 2
        rate = np.where(k < half, 1.0 - 250e-6, 1.0 + 250e-6)
        send = np.concatenate(([0.0], np.cumsum(rate[:-1] * FRAME_MS)))
        arrival = send + 30.0 + rng.exponential(4.0, n)
        i = 0
        talking = True
        while i < n:
            span = int(rng.uniform(1000, 4000) if talking else rng.uniform(500, 2000)) // FRAME_MS
            quiet[i : i + span] = not talking
            talking = not talking
            i += span
        arrival[rng.random(n) < 0.002] = np.nan
    else:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if red:
        name = f"{name}+RED" if red == 1 else f"{name}+RED{red}"
        desc += f"; RFC 2198 RED repeating {red} frame{'s' if red > 1 else ''}"
    return Trace(name, desc, send, arrival, dup, quiet, fec, red)


SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
"""The scenarios :func:`make_trace` knows."""


def oracle(trace: Trace, eps: float) -> tuple[float, float]:
    """The static oracle D*(eps) and the late loss it gives.

    D*(eps) is the smallest fixed delay after send at which at most a fraction ``eps`` of
    the frames arrive too late: the (1 - eps) quantile of the delay demand, a frame's
    demand being its FEC-effective arrival minus its send time. Frames with neither their
    own packet nor a usable FEC copy are lost outright and do not count as late.
    """
    demand = trace.effective_arrival() - trace.send_ms
    n = len(demand)
    finite = np.sort(demand[np.isfinite(demand)])
    if len(finite) == 0:
        return 0.0, 0.0
    allowed = math.floor(eps * n + 1e-9)
    if allowed >= len(finite):
        return float(finite[0]), float(len(finite) / n)
    d = float(finite[len(finite) - 1 - allowed])
    return d, float((finite > d).sum() / n)


@dataclass(frozen=True)
class Score:
    """What a replay observed."""

    mean_delay: float
    p50: float
    p95: float
    p99: float
    late_loss: float
    removed: float
    heard_loss: float
    raw_loss: float
    concealment: float
    interruptions: int
    fec_recovery: float
    disorder: int
    us_per_pull: float


def replay(trace: Trace, make: Callable[[], Player]) -> Score:
    """Replay ``trace`` against a fresh player on a virtual clock and score it."""
    player = make()
    events = trace.events()
    start = events[0][0]
    end = int(np.nanmax(np.concatenate([trace.arrival_ms, trace.dup_ms]))) + 1500
    n = trace.frames
    quiet = trace.quiet
    fec = trace.fec
    played_at = np.full(n, np.nan)
    pass_at = np.full(n, np.inf)  # when the player gave the frame up (or played a later one)
    fec_played = np.zeros(n, dtype=bool)
    disorder = 0
    last = -1
    pulls = 0
    silent_pulls = 0
    run = 0
    interruptions = 0
    started = False
    pulls_at_last = silent_at_last = 0
    busy_ns = 0
    ev = 0
    perf = time.perf_counter_ns
    seqs = [(SEQ0 + i) & 0xFFFF for i in range(n)]
    stamps = [(TS0 + SPF * i) & 0xFFFFFFFF for i in range(n)]
    quiet_list = quiet.tolist()
    insert_copy = getattr(player, "insert_copy", None) if trace.red else None
    for now in range(start, end, FRAME_MS):
        t0 = perf()
        while ev < len(events) and events[ev][0] <= now:
            a, i = events[ev]
            player.insert(i, seqs[i], stamps[i], a, fec, quiet_list[i])
            if insert_copy is not None:
                for j in range(max(0, i - trace.red), i):
                    insert_copy(j, stamps[j], a, fec)
            ev += 1
        out = player.pull(now)
        busy_ns += perf() - t0
        starts = [(out[0], out[1], 0.0)] if isinstance(out, tuple) else out
        played_any = not starts and started  # 20 ms that go on with audio already started
        for kind, idx, offset in starts:
            if kind in ("normal", "fec") and idx >= 0:
                if idx <= last or not np.isnan(played_at[idx]):
                    disorder += 1
                    continue
                # Frames passed over were given up at this pull; a frame's delay runs to
                # the moment its audio starts.
                if last >= 0 and idx > last + 1:
                    pass_at[last + 1 : idx] = np.minimum(pass_at[last + 1 : idx], now)
                played_at[idx] = now + offset
                if kind == "fec":
                    fec_played[idx] = True
                last = idx
                played_any = True
            elif 0 <= idx < n and np.isnan(played_at[idx]):
                pass_at[idx] = min(pass_at[idx], now)
        if played_any:
            started = True
            if run * FRAME_MS >= INTERRUPTION_MS:
                interruptions += 1
            run = 0
            pulls += 1
            pulls_at_last = pulls
            silent_at_last = silent_pulls
        elif started:
            pulls += 1
            silent_pulls += 1
            run += 1
    # Pulls after the last frame played (the trace has ended) are not scored.
    pulls, silent_pulls = pulls_at_last, silent_at_last
    played = ~np.isnan(played_at)
    own = trace.arrival_ms
    received = ~np.isnan(own)
    covered = np.arange(n) <= last  # frames the player's timeline reached
    not_played = ~played & covered
    late = not_played & received & (own > pass_at)
    removed = not_played & received & ~late
    delays = (played_at - trace.send_ms)[played]
    talk = ~quiet & covered
    heard = float((~played & talk).sum() / max(1, talk.sum()))
    if trace.reach:
        later = np.zeros(n, dtype=bool)
        for j in range(1, trace.reach + 1):
            later[:-j] |= received[j:]
        recoverable = ~received & later & covered
        fec_ratio = float((fec_played & recoverable).sum() / max(1, recoverable.sum()))
    else:
        fec_ratio = math.nan
    return Score(
        mean_delay=float(delays.mean()) if len(delays) else math.nan,
        p50=float(np.percentile(delays, 50)) if len(delays) else math.nan,
        p95=float(np.percentile(delays, 95)) if len(delays) else math.nan,
        p99=float(np.percentile(delays, 99)) if len(delays) else math.nan,
        late_loss=float(late.sum() / max(1, covered.sum())),
        removed=float(removed.sum() / max(1, covered.sum())),
        heard_loss=heard,
        raw_loss=float((~received & covered).sum() / max(1, covered.sum())),
        concealment=silent_pulls / max(1, pulls),
        interruptions=interruptions,
        fec_recovery=fec_ratio,
        disorder=disorder,
        us_per_pull=busy_ns / max(1, (end - start) // FRAME_MS) / 1000.0,
    )
