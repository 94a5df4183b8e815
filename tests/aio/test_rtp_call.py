"""The agents on RTP: serve_rtp and RtpCall against a phone written here, over loopback UDP.

The phone sends G.711 mu-law in real time (queued speech, otherwise digital silence, as
a phone without DTX does) and records every packet it gets back.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
import pytest

from tests.aio.rtp_peers import best_correlation
from voxwire.agents.echo import EchoStats, echo_handler
from voxwire.aio.rtp import RtpEndpoint
from voxwire.aio.rtp_call import CLOSE_GOING_AWAY, RtpCall, RtpServer, run_rtp_call, serve_rtp
from voxwire.aio.session import CLOSE_IDLE, CLOSE_INTERNAL
from voxwire.g711 import decode_ulaw, encode_ulaw
from voxwire.protocols.events import Audio, CallStarted, Event, MarkPlayed, Stopped
from voxwire.protocols.rtp_session import RtpSession
from voxwire.rtp import RtpPacket, RtpSender, parse_rtp

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")

from voxwire.sim import synthesize

T = TypeVar("T")
F = 0.020
N = 160  # samples per 20 ms frame at 8 kHz
Address = tuple[str, int]


def run(coro: Awaitable[T], timeout: float = 15.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def speech(text: str, seed: int = 1) -> np.ndarray:
    return synthesize(text, 8000, seed=seed)


class Phone(asyncio.DatagramProtocol):
    """Sends one PCMU frame every 20 ms on an absolute schedule; records what comes back."""

    def __init__(self, ssrc: int = 0x5EC0_0001) -> None:
        self.sender = RtpSender(0, ssrc=ssrc, first_sequence=65500, first_timestamp=2**32 - 480)
        self.received: list[tuple[float, RtpPacket]] = []
        self.sent_at: list[float] = []
        self._pending: deque[np.ndarray] = deque()
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received.append((asyncio.get_running_loop().time(), parse_rtp(data)))

    async def dial(self, server: Address) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0), remote_addr=server
        )
        self._task = loop.create_task(self._send())

    @property
    def addr(self) -> Address:
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def say(self, pcm: np.ndarray) -> int:
        """Queue speech; return the index of the frame it begins with."""
        first = len(self.sent_at) + len(self._pending)
        padded = np.concatenate([pcm, np.zeros(-len(pcm) % N, dtype=np.int16)])
        self._pending.extend(padded[i : i + N] for i in range(0, len(padded), N))
        return first

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        silence = np.zeros(N, dtype=np.int16)
        while True:
            k = len(self.sent_at)
            await asyncio.sleep(max(0.0, start + k * F - loop.time()))
            frame = self._pending.popleft() if self._pending else silence
            assert self._transport is not None
            self._transport.sendto(self.sender.packet(encode_ulaw(frame).tobytes(), N))
            self.sent_at.append(loop.time())

    async def hang_up(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    def packets_between(self, begin: float, end: float) -> int:
        return sum(1 for t, _ in self.received if begin <= t < end)

    async def wait_for_packets(self, count: int, timeout: float) -> float:
        """Wait until ``count`` packets came back; return the arrival time of the first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < count:
            assert loop.time() < deadline, f"{len(self.received)} packets back, wanted {count}"
            await asyncio.sleep(0.02)
        return self.received[0][0]

    async def wait_for_quiet(self, after: float, timeout: float, quiet: float = 0.25) -> None:
        """Wait until a packet came after ``after`` and none for ``quiet`` seconds since:
        the reply has ended (and its mark, timed by the send clock, has played)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (
            self.received
            and self.received[-1][0] > after
            and loop.time() - self.received[-1][0] > quiet
        ):
            assert loop.time() < deadline, "the reply did not end"
            await asyncio.sleep(0.02)


def line_audio(packets: Sequence[RtpPacket]) -> np.ndarray:
    """The received PCMU, each packet placed at its timestamp (pauses as zeros)."""
    ts0 = packets[0].timestamp
    end = max((p.timestamp - ts0) & 0xFFFFFFFF for p in packets) + N
    out = np.zeros(end, dtype=np.int16)
    for p in packets:
        at = (p.timestamp - ts0) & 0xFFFFFFFF
        out[at : at + N] = decode_ulaw(np.frombuffer(p.payload, dtype=np.uint8))
    return out


async def until(condition: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_echo_handler_runs_on_rtp_and_the_phone_hears_its_words_back() -> None:
    words = speech("Hello, echo test.")

    async def main() -> tuple[Phone, list[EchoStats], RtpServer]:
        ended: list[EchoStats] = []
        handler = functools.partial(echo_handler, on_end=lambda call, s: ended.append(s))
        server = await serve_rtp(handler, idle_timeout=0.4)
        phone = Phone()
        try:
            await phone.dial(server.local_addr)
            phone.say(np.concatenate([np.zeros(2400, dtype=np.int16), words]))
            reply = len(words) // N
            await phone.wait_for_packets(reply, timeout=len(words) / 8000 + 4.0)
            await phone.wait_for_quiet(after=0.0, timeout=2.0)
            await phone.hang_up()
            await until(lambda: bool(ended), 3.0)
        finally:
            await server.aclose()
        return phone, ended, server

    phone, ended, server = run(main())
    (stats,) = ended
    assert stats.utterances == 1
    assert stats.replies_played == 1, "the reply's mark came back from the send clock"
    assert stats.barge_ins == 0
    assert server.calls == 0
    assert server.calls_finished == 1
    packets = [p for _, p in phone.received]
    assert packets[0].marker, "a reply begins a talkspurt"
    assert {p.payload_type for p in packets} == {0}
    value, lag = best_correlation(words, line_audio(packets), max_lag=8000)
    assert value > 0.9, (value, lag)
    # the reply holds the whole utterance: 0.1 s of pre-roll, the words, the hangover
    assert len(packets) >= len(words) // N


def test_talking_over_the_reply_stops_the_rtp_stream() -> None:
    first = speech("I would like to book a table for two people tonight")
    second = speech("Stop right there.", seed=2)

    async def main() -> tuple[Phone, list[EchoStats], float, float]:
        ended: list[EchoStats] = []
        handler = functools.partial(echo_handler, on_end=lambda call, s: ended.append(s))
        server = await serve_rtp(handler, idle_timeout=0.4)
        phone = Phone()
        try:
            await phone.dial(server.local_addr)
            phone.say(np.concatenate([np.zeros(1600, dtype=np.int16), first]))
            await phone.wait_for_packets(20, timeout=len(first) / 8000 + 4.0)  # 0.4 s
            begins = phone.say(second)
            await until(lambda: len(phone.sent_at) > begins, 2.0)
            onset = phone.sent_at[begins]  # the phone's first frame of the barge-in
            speech_end = onset + len(second) / N * F
            await phone.wait_for_quiet(after=speech_end, timeout=4.0)
            await phone.hang_up()
            await until(lambda: bool(ended), 3.0)
        finally:
            await server.aclose()
        return phone, ended, onset, speech_end

    phone, ended, onset, speech_end = run(main())
    (stats,) = ended
    assert stats.barge_ins == 1
    assert stats.utterances == 2
    assert stats.replies_played == 1, "the first reply was cleared, the second played"
    before = phone.packets_between(onset - 0.3, onset)
    after = phone.packets_between(onset + 0.1, speech_end)
    # the first reply had seconds left to play; it stops with the caller's first words
    # (the VAD's onset frames and the pacer's 40 ms lead: a few packets at most)
    assert before >= 10, before
    assert after <= 3, (after, onset, speech_end)
    resumed = [p for t, p in phone.received if t > speech_end]
    assert resumed, "the second utterance was echoed"
    assert resumed[0].marker, "the echo after the barge-in is a new talkspurt"
    last = [p for t, p in phone.received if t < onset + 0.1][-1]
    gap = (resumed[0].timestamp - last.timestamp) & 0xFFFFFFFF
    assert gap > (resumed[0].sequence - last.sequence) % 65536 * N, "the pause is skipped"


def test_the_voice_agent_answers_a_turn_on_rtp() -> None:
    from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
    from voxwire.services.fake import FakeLlm, FakeStt, FakeTts

    question = "What are your opening hours?"
    answer = "We open at nine."
    words = speech(question)

    async def main() -> tuple[Phone, list[AgentCallResult]]:
        results: list[AgentCallResult] = []
        llm = FakeLlm(lambda messages: answer)
        agent = VoiceAgent(FakeStt([question.lower()]), llm, FakeTts(), system_prompt="Brief.")
        agent.on_end = lambda call, result: results.append(result)
        server = await serve_rtp(agent, pipeline_rate=agent.pipeline_rate, idle_timeout=0.4)
        phone = Phone()
        try:
            await phone.dial(server.local_addr)
            phone.say(np.concatenate([np.zeros(2400, dtype=np.int16), words]))
            await phone.wait_for_packets(25, timeout=len(words) / 8000 + 5.0)
            await phone.wait_for_quiet(after=0.0, timeout=5.0)  # the whole reply
            await phone.hang_up()
            await until(lambda: bool(results), 4.0)
        finally:
            await server.aclose()
        return phone, results

    phone, results = run(main())
    (result,) = results
    assert [m.role for m in result.history.messages] == ["user", "assistant"]
    assert result.history.messages[1].content == answer
    (turn,) = result.turns
    assert turn.user_text == question.lower()
    assert turn.first_audio_played is not None
    assert not turn.interrupted
    assert len(phone.received) >= 25  # half a second of reply at least
    assert phone.received[0][1].marker


def test_the_call_surface_on_one_endpoint() -> None:
    """CallStarted first (address and SSRC), Audio at the pipeline rate, a mark timed by
    the send clock, clear at once with its mark cleared, play before the start refused,
    Stopped when the peer goes quiet."""

    async def main() -> tuple[list[Event], RtpCall, Phone, list[str]]:
        events: list[Event] = []
        notes: list[str] = []
        endpoint = await RtpEndpoint.open(RtpSession("pcmu"), ("127.0.0.1", 0))
        phone = Phone(ssrc=0xABCD0123)

        async def handler(call: RtpCall) -> None:
            with pytest.raises(RuntimeError, match="not started"):
                call.play(np.zeros(160, dtype=np.int16))
            notes.append(f"position {call.playout_position(0.0)} {call.queued_total}")
            async for event in call:
                events.append(event)
                if isinstance(event, CallStarted):
                    call.play(np.full(480, 1000, dtype=np.int16), 16000)  # 30 ms
                    call.mark("m1")
                    notes.append(f"queued {call.queued_total}")
                elif isinstance(event, MarkPlayed) and event.name == "m1":
                    now = asyncio.get_running_loop().time()
                    notes.append(f"played {call.played_samples} {call.playout_position(now)}")
                    call.play(np.full(8000, 1000, dtype=np.int16))  # 1 s at the line rate
                    call.mark("m2")
                    call.clear()  # before the pacer ran: none of it goes out
                    notes.append(f"cleared {call.queued_samples} {call.queued_total}")
                elif isinstance(event, MarkPlayed):
                    await phone.hang_up()

        task = asyncio.create_task(
            run_rtp_call(endpoint, handler, pipeline_rate=16000, idle_timeout=0.3)
        )
        await phone.dial(endpoint.local_addr)
        phone.say(np.zeros(800, dtype=np.int16))
        call = await task
        return events, call, phone, notes

    events, call, phone, notes = run(main())
    started = events[0]
    assert isinstance(started, CallStarted)
    host, port = phone.addr
    assert started.stream_id == f"{host}:{port}/abcd0123"
    assert started.media_format.encoding == "mulaw"
    assert started.media_format.sample_rate == 8000
    assert call.codec.name == "rtp"
    audio = [e for e in events if isinstance(e, Audio)]
    assert audio
    assert all(a.sample_rate == 16000 and a.line_rate == 8000 for a in audio)
    assert sum(len(a.pcm) for a in audio[1:]) == 320 * len(audio[1:])
    # 30 ms at 16 kHz is 240 line samples, padded to two frames by the mark
    assert notes == ["position 0 0", "queued 320", "played 320 320", "cleared 0 320"]
    marks = [e for e in events if isinstance(e, MarkPlayed)]
    assert marks == [MarkPlayed("m1"), MarkPlayed("m2", cleared=True)]
    assert isinstance(events[-1], Stopped)
    assert call.close_code == CLOSE_IDLE
    assert len(phone.received) == 2
    assert call.stats.packets_sent == 2


def test_one_call_per_peer_junk_refused_and_no_rejoin_right_after_a_hang_up() -> None:
    async def main() -> tuple[RtpServer, list[str], list[Phone]]:
        seen: list[str] = []
        release = asyncio.Event()

        async def handler(call: RtpCall) -> None:
            async for event in call:
                if isinstance(event, CallStarted):
                    seen.append(event.stream_id)
                    await release.wait()
                    await call.close(1000, "bye")  # hang up: the peer goes on sending

        server = await serve_rtp(handler, idle_timeout=2.0, rejoin_after=1.0)
        loop = asyncio.get_running_loop()
        junk, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0), remote_addr=server.local_addr
        )
        phones = [Phone(ssrc=1), Phone(ssrc=2)]
        try:
            junk.sendto(b"not rtp at all")
            other = RtpSender(8, ssrc=3).packet(bytes(160), 160)  # PCMA to a PCMU server
            junk.sendto(other)
            for phone in phones:
                await phone.dial(server.local_addr)
            await until(lambda: server.calls == 2 and len(seen) == 2, 2.0)
            release.set()
            await until(lambda: server.calls == 0, 2.0)
            await asyncio.sleep(0.2)  # the phones keep sending to the ended calls
            assert server.calls == 0
            assert server.ignored > 0
        finally:
            junk.close()
            for phone in phones:
                await phone.hang_up()
            await server.aclose()
        return server, seen, phones

    server, seen, phones = run(main())
    assert sorted(seen) == sorted(
        f"{p.addr[0]}:{p.addr[1]}/{i + 1:08x}" for i, p in enumerate(phones)
    )
    assert server.refused == 2
    assert server.calls_finished == 2


def test_closing_the_server_ends_its_calls() -> None:
    async def main() -> list[int | None]:
        codes: list[int | None] = []

        async def handler(call: RtpCall) -> None:
            try:
                async for _ in call:
                    pass
            finally:
                codes.append(call.close_code)

        server = await serve_rtp(handler)
        phone = Phone()
        await phone.dial(server.local_addr)
        await until(lambda: server.calls == 1, 2.0)
        await server.aclose()
        await phone.hang_up()
        return codes

    assert run(main()) == [CLOSE_GOING_AWAY]


def test_a_handler_that_raises_ends_its_call_with_an_internal_error() -> None:
    async def main() -> tuple[RtpCall, bool]:
        endpoint = await RtpEndpoint.open(RtpSession("pcma"), ("127.0.0.1", 0))
        phone = Phone()

        async def handler(call: RtpCall) -> None:
            async for event in call:
                if isinstance(event, CallStarted):
                    raise ValueError("the application failed")

        task = asyncio.create_task(run_rtp_call(endpoint, handler, idle_timeout=2.0))
        await phone.dial(endpoint.local_addr)  # PCMU to a PCMA endpoint: never starts
        other = Phone(ssrc=7)
        other.sender = RtpSender(8, ssrc=7)
        await other.dial(endpoint.local_addr)
        call = await task
        await phone.hang_up()
        await other.hang_up()
        return call, endpoint.session.stats().other_payload_types.get(0, 0) > 0

    call, saw_pcmu = run(main())
    assert call.close_code == CLOSE_INTERNAL
    assert call.close_reason == "handler error"
    assert saw_pcmu
    assert call.started is not None
    assert call.started.media_format.encoding == "alaw"
