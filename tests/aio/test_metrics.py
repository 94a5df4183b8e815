"""Prometheus metrics and the per-call summary, over real sockets: an echo server with
``ServerMetrics`` under simulated calls, its ``GET /metrics`` parsed with
prometheus-client's own parser; a failing agent; voice-agent turns; the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the server needs websockets")
pytest.importorskip("prometheus_client", reason="the metrics need prometheus-client")

from prometheus_client.parser import text_string_to_metric_families

from tests.serving import serving
from voxwire.agents.server import serve_agent, serve_echo
from voxwire.aio import Call
from voxwire.aio.admission import Admission
from voxwire.aio.metrics import ServerMetrics
from voxwire.protocols.events import CallStarted
from voxwire.quality import mos, r_factor
from voxwire.sim import CallPlan, place_call
from voxwire.sim.load import run_load
from voxwire.voice.metrics import TurnMetrics


async def scrape(port: int) -> tuple[int, dict[str, str], dict[tuple[str, tuple[Any, ...]], float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    return int(lines[0].split()[1]), headers, samples


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_echo_server_metrics_and_call_summaries(caplog: pytest.LogCaptureFixture) -> None:
    admission = Admission(max_calls=5)
    metrics = ServerMetrics(admission, lead=0.06)

    async def main() -> tuple[Any, Any, Any]:
        stop = asyncio.Event()
        urls: list[str] = []
        server = asyncio.create_task(
            serve_echo(
                "twilio",
                "127.0.0.1",
                0,
                stop=stop,
                ready=urls.append,
                admission=admission,
                metrics=metrics,
                on_end=lambda c, s: None,
            )
        )
        while not urls:
            await asyncio.sleep(0.01)
        load = asyncio.create_task(run_load(urls[0], "twilio", 2, duration=4.0, ramp=0.0))
        while admission.active < 2:
            await asyncio.sleep(0.01)
        during = await scrape(port_of(urls[0]))
        report = await load
        after = await scrape(port_of(urls[0]))
        stop.set()
        await server
        return during, report, after

    with caplog.at_level(logging.INFO, logger="voxwire.calls"):
        (status, headers, during), report, (_, _, after) = asyncio.run(main())
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert during[("voxwire_active_calls", ())] == 2
    assert during[("voxwire_load", ())] == pytest.approx(0.4)
    assert after[("voxwire_active_calls", ())] == 0
    assert after[("voxwire_calls_total", (("outcome", "normal"),))] == 2
    # every reply and barge-in the phones saw, the server observed
    replies = after[("voxwire_reply_latency_seconds_count", ())]
    assert replies == report.replies_expected
    mean = after[("voxwire_reply_latency_seconds_sum", ())] / replies
    assert 0.2 <= mean <= 0.25  # the VAD's 200 ms hangover and its frame
    assert after[("voxwire_clear_latency_seconds_count", ())] == report.barge_ins > 0
    assert 0 < after[("voxwire_clear_latency_seconds_sum", ())] / report.barge_ins < 0.2
    # a loopback call loses nothing: its E-model rating is the delay's alone (80 ms)
    assert after[("voxwire_call_mos_count", ())] == 2
    expected_mos = mos(r_factor(80.0))
    assert after[("voxwire_call_mos_sum", ())] / 2 == pytest.approx(expected_mos, abs=1e-3)
    assert after[("voxwire_call_loss_ratio_sum", ())] == 0
    assert after[("voxwire_calls_refused_total", (("reason", "full"),))] == 0
    # each call runs tasks of its own (reader, writer, agent) that end with it
    assert during[("voxwire_asyncio_tasks", ())] >= after[("voxwire_asyncio_tasks", ())] + 4
    assert after[("voxwire_asyncio_tasks", ())] >= 1  # the server's own
    assert after[("process_open_fds", ())] >= 3
    assert after[("process_resident_memory_bytes", ())] > 10e6

    summaries = [
        json.loads(r.getMessage().split("call summary ", 1)[1])
        for r in caplog.records
        if r.name == "voxwire.calls"
    ]
    assert len(summaries) == 2
    for summary in summaries:
        assert summary["call_id"].startswith("MZ")
        assert summary["protocol"] == "twilio"
        assert summary["outcome"] == "normal"
        assert summary["agent"] == "echo"
        assert summary["quality"]["loss_ratio"] == 0
        assert summary["quality"]["mos"] == pytest.approx(expected_mos, abs=1e-3)
        assert summary["duration_s"] > 3
        assert summary["audio_in_s"] > 3
        assert summary["utterances"] == len(summary["reply_delays_s"]) > 0


def test_errors_and_outcomes_are_counted() -> None:
    admission = Admission()
    metrics = ServerMetrics(admission)

    async def fail(call: Call) -> None:
        async for event in call:
            if isinstance(event, CallStarted):
                raise RuntimeError("the agent fell over")

    async def main() -> dict[tuple[str, tuple[Any, ...]], float]:
        stop = asyncio.Event()
        urls: list[str] = []
        server = asyncio.create_task(
            serve_agent(
                fail,
                "vonage",
                "127.0.0.1",
                0,
                stop=stop,
                ready=urls.append,
                admission=admission,
                metrics=metrics,
            )
        )
        while not urls:
            await asyncio.sleep(0.01)
        await run_load(urls[0], "vonage", 2, duration=1.0, ramp=0.0)
        _, _, samples = await scrape(port_of(urls[0]))
        stop.set()
        await server
        return samples

    samples = asyncio.run(main())
    assert samples[("voxwire_calls_total", (("outcome", "internal_error"),))] == 2
    errors = samples[("voxwire_errors_total", (("stage", "handler"), ("type", "RuntimeError")))]
    assert errors >= 2  # the process's counter: other tests may have added to it


def test_voice_agent_turns_feed_the_latency_and_ttfb_histograms() -> None:
    metrics = ServerMetrics(Admission())
    turn = TurnMetrics(
        0,
        speech_end=10.0,
        stt_final=10.12,
        llm_request=10.13,
        llm_first_token=10.43,
        first_sentence=10.5,
        tts_first_audio=10.58,
        first_audio_played=10.7,
    )
    metrics.turn_ended(turn)
    metrics.turn_ended(TurnMetrics(1, speech_end=20.0))  # a turn with no reply yet
    _, body = metrics.exposition()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("voxwire_reply_latency_seconds_count", ())] == 1
    assert samples[("voxwire_reply_latency_seconds_sum", ())] == pytest.approx(0.7)
    for service, seconds in (("stt", 0.12), ("llm", 0.30), ("tts", 0.08)):
        key = (("service", service),)
        assert samples[("voxwire_service_ttfb_seconds_count", key)] == 1
        assert samples[("voxwire_service_ttfb_seconds_sum", key)] == pytest.approx(seconds)


def test_cli_serve_metrics() -> None:
    args = ["--protocol", "twilio", "--echo", "--port", "0", "--metrics", "--max-calls", "3"]
    with serving(*args) as server:
        status, _, samples = asyncio.run(scrape(server.port))
        assert status == 200
        assert samples[("voxwire_active_calls", ())] == 0
        assert samples[("voxwire_draining", ())] == 0


def test_counted_sources_are_read_at_each_scrape() -> None:
    metrics = ServerMetrics(Admission())
    counts = {"save": 3}
    metrics.count("store", lambda: counts)

    def samples() -> dict[tuple[str, tuple[Any, ...]], float]:
        _, body = metrics.exposition()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    key = "voxwire_state_operations_total"
    assert samples()[(key, (("operation", "save"), ("source", "store")))] == 3
    counts["save_failed"] = 1
    assert samples()[(key, (("operation", "save_failed"), ("source", "store")))] == 1


def test_cli_serve_metrics_count_the_state_operations(tmp_path: Path) -> None:
    old = tmp_path / "2020-01-01" / "old.wav"
    old.parent.mkdir()
    old.write_bytes(b"RIFF")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    args = ["--protocol", "twilio", "--agent", "demo", "--port", "0", "--metrics",
            "--record", str(tmp_path), "--record-retention-days", "1",
            "--records", str(tmp_path / "calls.db"),
            "--store", f"sqlite:{tmp_path / 'state.db'}"]  # fmt: skip
    with serving(*args) as server:
        # one call: the demo greets a caller who says nothing, and the call ends
        plan = CallPlan(np.zeros(1600, np.int16), quiet=0.8, reply_timeout=15.0)
        asyncio.run(asyncio.wait_for(place_call(server.url, "twilio", plan), 60))
        key = "voxwire_state_operations_total"
        added = (key, (("operation", "add"), ("source", "records")))
        for _ in range(200):  # the record is written as the call's handler ends
            _, _, samples = asyncio.run(scrape(server.port))
            if added in samples:
                break
            time.sleep(0.05)
    assert samples[added] == 1
    assert samples[(key, (("operation", "recorded"), ("source", "recordings")))] == 1
    store = {op: n for (name, labels), n in samples.items() if name == key
             for (_, op), (_, source) in [labels] if source == "store"}  # fmt: skip
    assert store.get("save", 0) >= 1, store  # the greeting's turn was saved
    assert "save_failed" not in store
    assert samples[(key, (("operation", "deleted"), ("source", "recordings")))] == 1
    assert samples[(key, (("operation", "failed"), ("source", "recordings")))] == 0
    assert not old.exists()
