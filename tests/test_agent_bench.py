"""The scoring of the voice-agent benchmarks (bench/agent_latency.py, bench/agent_load.py).

No timing is asserted here: these check the arithmetic that turns what the phone and the
agent measured into the tables.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


al = _load("agent_latency")
load = _load("agent_load")


def test_the_first_sentence_is_counted_in_tokens() -> None:
    assert al.first_sentence_tokens("Sure. We open at nine.") == 2
    assert al.first_sentence_tokens("We open at nine. Bye.") == 5
    assert al.first_sentence_tokens("no full stop here") == 4
    assert al.first_sentence_tokens("Really?! Yes.") == 2


def test_the_budget_takes_the_longer_of_endpointing_and_the_recogniser() -> None:
    # the 100 ms recogniser runs during a 260 ms endpoint wait: only the wait counts
    assert al.budget(0.26, "Sure. We open.") == pytest.approx(0.26 + 0.2 + 0.02 + 0.1)
    # an endpoint wait shorter than the recogniser waits for the transcript
    assert al.budget(0.05, "Sure.") == pytest.approx(0.1 + 0.2 + 0.02 + 0.1)
    # a longer first sentence costs one token interval per extra token
    assert al.budget(0.2, "We open at nine.") - al.budget(0.2, "Sure.") == pytest.approx(0.06)


def test_overhead_is_the_latency_beyond_the_budget() -> None:
    assert al.overhead(0.60, 0.26, "Sure.") == pytest.approx(0.02)
    assert al.overhead(0.50, 0.26, "Sure.") == pytest.approx(-0.08)
    assert al.serial_overhead(0.70, 0.2) == pytest.approx(0.70 - 0.6)
    with pytest.raises(ValueError, match="finite"):
        al.overhead(math.nan, 0.2)
    with pytest.raises(ValueError, match="finite"):
        al.overhead(0.5, math.inf)


def test_percentiles() -> None:
    p50, p95 = al.p50_p95([float(v) for v in range(1, 21)])
    assert p50 == pytest.approx(10.5)
    assert p95 == pytest.approx(19.05)
    assert all(math.isnan(v) for v in al.p50_p95([]))


def test_stale_audio_is_what_played_between_the_clear_and_the_end_of_the_barge_in() -> None:
    rate = 8000
    played = [(0, 8000), (12000, 800), (20000, 4000)]  # 0-1 s, 1.5-1.6 s, 2.5-3 s
    # a clear at 1.0 s and a barge-in ending at 2.0 s: only the 1.5 s message is stale
    assert al.stale_audio(played, rate, 1.0, 2.0) == pytest.approx(0.1)
    # a clear in the middle of a message counts its rest
    assert al.stale_audio(played, rate, 0.5, 1.0) == pytest.approx(0.5)
    assert al.stale_audio(played, rate, 1.7, 2.4) == 0.0
    assert al.stale_audio([], rate, 0.0, 9.0) == 0.0


def test_the_tables_name_a_framework_that_was_not_measured() -> None:
    turns = al.Turns(
        latency=[0.5, 0.6],
        endpoint=[0.26, 0.26],
        overhead=[-0.08, 0.02],
        serial=[-0.16, -0.06],
        endpoint_source="policy",
    )
    lines = al.overhead_table({"voxwire": turns, "pipecat 1.14": "not measured: no venv"})
    assert lines[2].startswith("| voxwire | 2 | 260 ms (policy) | 550 / 595 |")
    assert "not measured: no venv" in lines[3]
    barge = al.barge_table({"voxwire": al.Turns(clear=[0.1, 0.2], stale=[0.0, 0.05])})
    assert barge[2] == "| voxwire | 2 | 150 / 195 | 1 | 50 |"


def test_a_missing_pipecat_interpreter_is_reported(tmp_path: Path) -> None:
    why = al.pipecat_available(tmp_path / "nowhere" / "python")
    assert why is not None
    assert "no pipecat interpreter" in why
    # an interpreter without pipecat
    why = al.pipecat_available(Path(sys.executable))
    if why is None:  # pragma: no cover - pipecat installed in the test interpreter
        pytest.skip("this interpreter has pipecat")
    assert "cannot import pipecat" in why
    with pytest.raises(ValueError, match="unknown server kind"):
        al.server_command("livekit", "Hi.", Path(sys.executable))


def _caller(ends: list[float], received: list[float]) -> object:
    c = load.Caller(0, 1, ["x"], 0)
    c.speech_ends = ends
    c.received = received
    return c


def test_the_load_score_counts_missed_replies_and_intervals() -> None:
    answered = _caller([10.0, 15.0], [10.5, 10.52, 10.56, 15.4, 15.42])
    silent = _caller([11.0, 16.0], [])
    outside = _caller([2.0], [2.5])  # before the window
    late = _caller([12.0], [15.5])  # after the next question began: missed
    expected, missed, latency, intervals = load.score([answered, silent, outside, late], 5.0, 20.0)
    assert expected == 5
    assert missed == 3
    assert latency == pytest.approx([0.5, 0.4])
    assert intervals == pytest.approx([0.02, 0.04, 0.02])


def test_the_callers_cycle_is_whole_frames_of_mu_law() -> None:
    speech = np.full(8000, 8000, np.int16)  # 1 s of loud "speech"
    payloads, end = load.cycle_payloads(speech)
    assert len(payloads) == round(load.CYCLE / load.TICK)
    assert {len(base64.b64decode(p)) for p in payloads} == {160}
    assert end == 8000
    # mu-law silence after the speech
    assert len(set(base64.b64decode(payloads[-1]))) == 1
    with pytest.raises(ValueError, match="longer than the cycle"):
        load.cycle_payloads(np.ones(8000 * 6, np.int16))


def test_the_callers_media_message_is_the_json_of_the_event() -> None:
    caller = load.Caller(0, 1, ["AAAA"], 0)
    fast = caller.media(4, "f/+AgA==")
    slow = caller.message(
        {
            "event": "media",
            "media": {"track": "inbound", "chunk": "5", "timestamp": "80", "payload": "f/+AgA=="},
        }
    )
    assert json.loads(fast) == {**json.loads(slow), "sequenceNumber": "1"}
    assert json.loads(slow)["sequenceNumber"] == "2"  # one counter for both


def test_process_cpu_reads_proc() -> None:
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("no /proc")
    before = load.process_cpu(os.getpid())
    sum(i * i for i in range(200_000))
    assert load.process_cpu(os.getpid()) >= before > 0
    assert load.run_queue_wait(os.getpid()) >= 0
    assert math.isnan(load.run_queue_wait(2**22 + 12345))  # no such process


def test_the_load_table() -> None:
    r = load.LoadResult(
        n=10,
        cores=0.2,
        per_call=0.02,
        expected=40,
        missed=1,
        latency_p50=0.5,
        latency_p99=0.7,
        interval_p99=0.023,
        generator_cores=0.1,
        late_p99=0.002,
        errors=0,
        starved=0.25,
    )
    lines = load.table([("voxwire", r), ("pipecat 1.14", "not measured: no venv")])
    assert lines[2] == (
        "| voxwire | 10 | 0.200 | 0.0200 | 1 / 40 | 500 / 700 | 23.0 | 0.100 | 2.0 | 25% |"
    )
    assert "not measured: no venv" in lines[3]


def test_the_inbound_cost_is_cpu_per_call_second() -> None:
    cost = load.inbound_cost(2, 0.4)
    # the work of 0.8 call-seconds was done: some CPU, far less than real time
    assert 0 < cost < 1


def test_the_servers_are_websocket_libraries_each_optionally_on_uvloop() -> None:
    import argparse

    assert load._libraries("websockets, picows+uvloop") == ["websockets", "picows+uvloop"]
    for bad in ("", "aiohttp", "picows+trio", "picows+"):
        with pytest.raises(argparse.ArgumentTypeError):
            load._libraries(bad)
