"""The trace generator, the replay harness and the jitter benchmark's tables."""

from __future__ import annotations

import numpy as np
import pytest

from voxwire.benchmarks import jitter as bench
from voxwire.benchmarks.traces import SCENARIOS, SEQ0, TS0, make_trace, oracle, replay
from voxwire.cli import main


def test_traces_are_seeded_and_wrap() -> None:
    a, b = make_trace("S5", 10, 1), make_trace("S5", 10, 1)
    assert np.array_equal(a.arrival_ms, b.arrival_ms, equal_nan=True)
    assert not np.array_equal(a.arrival_ms, make_trace("S5", 10, 2).arrival_ms, equal_nan=True)
    assert SEQ0 + a.frames > 0xFFFF  # sequence numbers wrap within 10 s
    assert TS0 + 160 * a.frames > 0xFFFFFFFF  # and so do timestamps
    assert (~np.isnan(a.dup_ms)).any()  # S5 duplicates
    events = a.events()
    assert [t for t, _ in events] == sorted(t for t, _ in events)
    with pytest.raises(ValueError, match="unknown scenario"):
        make_trace("S9", 1, 1)


def test_oracle_on_a_known_trace() -> None:
    t = make_trace("S1", 10, 3)
    d, late = oracle(t, 0.0)
    assert d == pytest.approx(float(np.max(t.arrival_ms - t.send_ms)))
    assert late == 0.0
    d1, late1 = oracle(t, 0.5)
    assert d1 < d
    assert late1 <= 0.5
    s3 = make_trace("S3", 30, 3)
    assert 0 < s3.unrecoverable < s3.raw_loss  # FEC rebuilds isolated losses only


def test_replay_scores_a_fixed_buffer_exactly() -> None:
    t = make_trace("S1", 10, 4)  # 1-3 ms transit, no loss: a 60 ms buffer plays everything
    s = replay(t, lambda: bench.FixedPlayer(60))
    assert s.disorder == 0
    assert s.late_loss == 0.0
    assert s.heard_loss == 0.0
    assert 60 <= s.mean_delay <= 64
    assert s.interruptions == 0


def test_a_frame_given_up_by_a_concealment_and_arriving_after_is_late() -> None:
    # A fixed 10 ms buffer on S1 with one packet held back 15 ms: the buffer conceals that
    # frame at its turn and the packet comes in before the next frame plays. It arrived
    # after the buffer gave its frame up, so it is late loss, not an in-time removal.
    t = make_trace("S1", 10, 4)
    t.arrival_ms[100] += 15.0
    s = replay(t, lambda: bench.FixedPlayer(10))
    assert s.late_loss == pytest.approx(1 / t.frames, rel=0.05)
    assert s.removed == 0.0


def test_red_traces_share_the_network_and_reach_further() -> None:
    plain, red = make_trace("S3", 30, 3), make_trace("S3", 30, 3, red=1)
    assert red.name == "S3+RED"
    assert (red.reach, plain.reach) == (2, 1)
    assert np.array_equal(plain.arrival_ms, red.arrival_ms, equal_nan=True)
    # A frame is lost for good only if its packet and the next two are all lost.
    lost = np.isnan(plain.arrival_ms)
    gone = lost & np.append(lost[1:], True) & np.append(lost[2:], [True, True])
    assert red.unrecoverable == pytest.approx(gone.mean())
    assert red.unrecoverable < plain.unrecoverable
    with pytest.raises(ValueError, match="red"):
        make_trace("S3", 1, 1, red=3)


def test_red_copies_go_only_to_players_that_take_them() -> None:
    t = make_trace("S3", 60, 7, red=1)
    v = replay(t, bench.VoxwirePlayer)
    fixed = replay(t, lambda: bench.FixedPlayer(120))  # no insert_copy: primaries only
    assert fixed.fec_recovery == 0.0
    assert fixed.heard_loss == pytest.approx(fixed.raw_loss, abs=0.002)
    assert v.fec_recovery > 0.95
    assert v.heard_loss < 0.5 * replay(make_trace("S3", 60, 7), bench.VoxwirePlayer).heard_loss
    assert v.disorder == 0


def test_frame_starts_inside_a_pull_are_scored_at_their_offset() -> None:
    # A player that plays each frame one pull after it arrives, its audio starting
    # `offset` ms into the pull; every tenth pull starts nothing (its audio goes on).
    class Offset:
        def __init__(self, offset: float) -> None:
            self.offset = offset
            self.next = 0
            self.pulls = 0
            self.have: set[int] = set()

        def insert(
            self, index: int, seq: int, ts: int, arrival_ms: int, has_fec: bool, quiet: bool
        ) -> None:
            self.have.add(index)

        def pull(self, now_ms: int) -> list[tuple[str, int, float]]:
            self.pulls += 1
            if self.pulls % 10 == 0 or self.next not in self.have:
                return []
            self.next += 1
            return [("normal", self.next - 1, self.offset)]

    t = make_trace("S1", 10, 4)
    at0, at7 = replay(t, lambda: Offset(0.0)), replay(t, lambda: Offset(7.0))
    assert at7.disorder == 0
    assert at7.concealment == 0.0  # an empty list is audio going on, not a gap
    assert at7.mean_delay - at0.mean_delay == pytest.approx(7.0)


def test_time_stretching_keeps_in_time_frames_that_whole_frames_drop() -> None:
    t = make_trace("S2", 60, 9)
    stretched = replay(t, bench.VoxwirePlayer)
    whole = replay(t, lambda: bench.VoxwirePlayer(stretch=False))
    assert whole.removed > 0.002
    assert stretched.removed < whole.removed / 4
    assert stretched.heard_loss < whole.heard_loss
    assert stretched.late_loss <= whole.late_loss + 0.001
    assert stretched.mean_delay <= whole.mean_delay + 3.0
    assert stretched.disorder == 0


def test_ring_model_stalls_and_keeps_the_latency() -> None:
    t = make_trace("S2", 20, 5)  # a few losses: each one holds the ring until it skips
    s = replay(t, bench.RingPlayer)
    assert s.disorder == 0
    assert s.mean_delay > 200


@pytest.mark.skipif(not bench._aiortc_available(), reason="aiortc not installed")
def test_aiortcs_own_buffer_prefetches_four_frames_and_stalls_on_a_loss() -> None:
    clean = replay(make_trace("S1", 10, 6), bench.AiortcPlayer)
    assert clean.heard_loss == 0
    assert 70 < clean.mean_delay < 100  # four frames of prefetch, then one released per packet
    lossy = replay(make_trace("S2", 20, 5), bench.AiortcPlayer)
    ours = replay(make_trace("S2", 20, 5), bench.VoxwirePlayer)
    assert lossy.mean_delay > 200  # a loss holds the buffer until it overflows
    assert lossy.heard_loss > ours.heard_loss


@pytest.mark.skipif(bench._SPEEX is None, reason="libspeexdsp not installed")
def test_speexdsp_baseline_plays_a_clean_trace() -> None:
    s = replay(make_trace("S1", 10, 6), bench.SpeexPlayer)
    assert s.heard_loss < 0.01
    assert s.mean_delay < 60


def test_bench_jitter_quick_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "jitter"]) == 0
    out = capsys.readouterr().out
    assert "Jitter buffers on network traces" in out
    for name in SCENARIOS:
        assert f"\n{name}  " in out or f"\n{name} " in out
    goals = out[out.index("Jitter buffer goals") :]
    assert goals.count("PASS") + goals.count("MISS") == 5
    assert "zero out-of-order or repeated frames (voxwire)             PASS" in goals
    # The quick run judges the goals on the full run's traces (a 60 s S8 turned the speexdsp
    # verdict), and leaves out only the seed sweep.
    assert f"{bench.SECONDS:.0f} s per scenario" in out
    assert f"{bench.SECONDS:.0f} s traces, quick run or full: the same verdicts" in goals
    assert bench.SECONDS >= 180
    assert "over 6 seeds" not in out
