"""The multi-turn simulated caller against a scripted server over loopback sockets.

The server runs on voxwire's real adapters (the ``websockets`` server, the AudioSocket
TCP server) with a pacer of one frame's lead. It listens with :class:`voxwire.vad.Vad`;
at the end of each caller utterance it plays reply tone ``n`` (a frequency of its own)
and a mark ``reply-n``; when the caller speaks while a reply is on the line it counts
the samples it has sent and clears. The dialogs of the module run concurrently, once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from voxwire.aio import Call, Handler, Pacer
from voxwire.aio.tcp import serve_audiosocket
from voxwire.aio.websockets_server import serve
from voxwire.protocols import Audio, CallStarted, MarkPlayed, Stopped
from voxwire.sim import PROVIDERS, Network
from voxwire.sim.dialog import DialogReport, ReceivedAudio, Turn, place_dialog
from voxwire.vad import SpeechEnd, SpeechStart, Vad

QUIET = 0.25
REPLY = 0.4  # seconds of each reply tone, unless a dialog says otherwise
BARGE_AFTER, BARGE_REPLY = 0.25, 1.0  # the barge-in dialog
WAIT, WAIT_REPLY = 0.4, 0.6  # the dialog with a turn that does not wait for the reply


def voice(seconds: float, rate: int, f0: float = 140.0) -> np.ndarray:
    """A voiced, syllable-modulated signal with no pause in it (one VAD utterance)."""
    t = np.arange(round(seconds * rate)) / rate
    harmonics = [h for h in range(1, 12) if f0 * h < 0.45 * rate]
    sig = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in harmonics)
    envelope = (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * np.minimum(
        1.0, np.minimum(t, t[-1] - t) / 0.02
    )
    return np.asarray(5000 * sig * envelope, dtype=np.int16)


def reply_hz(n: int) -> float:
    """The frequency of reply ``n`` (0: the greeting)."""
    return 500.0 + 200.0 * n


def reply_tone(n: int, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.asarray(6000 * np.sin(2 * np.pi * reply_hz(n) * t), dtype=np.int16)


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


@dataclass
class Served:
    """What the scripted server did on one call."""

    replies: int = 0
    #: the stream's sent samples when each clear was asked for
    sent_at_clear: list[int] = field(default_factory=list)
    marks: list[MarkPlayed] = field(default_factory=list)
    rate: int = 0


def scripted(
    served: Served, reply_s: float, *, greet: bool = False, hang_up_after: int | None = None
) -> Handler:
    async def handler(call: Call) -> None:
        vad: Vad | None = None
        speaking: str | None = None

        def reply(n: int) -> None:
            nonlocal speaking
            if reply_s <= 0:
                return  # a server that never answers
            call.play(reply_tone(n, served.rate, reply_s))
            speaking = f"reply-{n}"
            call.mark(speaking)

        async for event in call:
            if isinstance(event, CallStarted):
                served.rate = event.media_format.sample_rate
                vad = Vad(served.rate, hangover_ms=100)
                if greet:
                    reply(0)
            elif isinstance(event, Audio) and vad is not None:
                for found in vad.feed(event.pcm):
                    if isinstance(found, SpeechStart) and speaking is not None:
                        assert call.stream is not None
                        served.sent_at_clear.append(call.stream.sent_samples)
                        call.clear()
                        speaking = None
                    elif isinstance(found, SpeechEnd):
                        served.replies += 1
                        reply(served.replies)
            elif isinstance(event, MarkPlayed):
                served.marks.append(event)
                if event.name == speaking:
                    speaking = None
                if event.name == f"reply-{hang_up_after}" and not event.cleared:
                    return  # the agent hangs up
            elif isinstance(event, Stopped):
                return

    return handler


Outcome = tuple[DialogReport, Served]


async def dialog(
    protocol: str,
    turns: list[Turn],
    *,
    reply_s: float = REPLY,
    greet: bool = False,
    hang_up_after: int | None = None,
    network: Network | None = None,
    lead: float = 0.2,
    reply_timeout: float = 3.0,
) -> Outcome:
    served = Served()
    handler = scripted(served, reply_s, greet=greet, hang_up_after=hang_up_after)
    pacer = Pacer(lead=0.0)  # one frame ahead of real time: the pacer's least

    def call(url: str) -> Awaitable[DialogReport]:
        return place_dialog(
            url,
            protocol,
            turns,
            network=network,
            quiet=QUIET,
            reply_timeout=reply_timeout,
            lead=lead,
            tail=0.2,
        )

    try:
        if protocol == "audiosocket":
            tcp = await serve_audiosocket(handler, "127.0.0.1", 0, pacer=pacer)
            async with tcp:
                port = tcp.sockets[0].getsockname()[1]
                report = await call(f"tcp://127.0.0.1:{port}")
        else:
            async with serve(handler, protocol, "127.0.0.1", 0, pacer=pacer) as ws:
                port = next(iter(ws.sockets)).getsockname()[1]
                report = await call(f"ws://127.0.0.1:{port}/")
    finally:
        await pacer.aclose()
    return report, served


def said(protocol: str, n: int, seconds: float = 0.4) -> Turn:
    rate = PROVIDERS[protocol].default_rate
    return Turn(voice(seconds, rate, f0=120.0 + 20 * n), text=f"utterance {n}")


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    calls = {
        "turns": dialog("twilio", [said("twilio", n) for n in range(3)]),
        "barge-in": dialog(
            "rawpcm",
            [said("rawpcm", 0), replace(said("rawpcm", 1), barge_in_after=BARGE_AFTER)],
            reply_s=BARGE_REPLY,
        ),
        "audiosocket": dialog("audiosocket", [said("audiosocket", n) for n in range(2)]),
        "hang-up": dialog("vonage", [said("vonage", n) for n in range(3)], hang_up_after=2),
        "wait": dialog(
            "telnyx",
            [
                Turn(text="(listens)"),
                said("telnyx", 1),
                replace(said("telnyx", 2), wait=WAIT),
            ],
            greet=True,
            reply_s=WAIT_REPLY,
            lead=0.0,  # the caller listens from the start
        ),
        "no reply": dialog(
            "exotel", [said("exotel", n) for n in range(2)], reply_s=0.0, reply_timeout=0.5
        ),
        "impaired": dialog(
            "twilio",
            [said("twilio", n) for n in range(2)],
            network=Network(delay=0.03, jitter=0.01, loss=0.04, seed=5),
        ),
    }

    async def main() -> dict[str, Outcome]:
        results = await asyncio.wait_for(asyncio.gather(*calls.values()), 30)
        return dict(zip(calls, results, strict=True))

    return asyncio.run(main())


def check_reply(report: DialogReport, i: int, n: int, seconds: float) -> None:
    """Turn ``i`` got reply ``n``, all of it, after the turn and before the next one."""
    turn = report.turns[i]
    info = report.summary()
    assert turn.onset <= turn.end, info
    assert turn.reply_start is not None, info
    assert turn.reply_latency is not None
    assert turn.reply_latency > 0, info
    assert len(turn.heard) == round(seconds * report.rate), info
    assert turn.heard_duration == pytest.approx(seconds)
    assert abs(dominant_hz(turn.heard, report.rate) - reply_hz(n)) < 10, info
    assert not turn.cut, info
    assert turn.reply_end is not None
    assert turn.reply_end >= turn.reply_start + turn.heard_duration - 1e-9, info
    if i + 1 < len(report.turns):
        assert turn.reply_end < report.turns[i + 1].onset, info


def test_each_turn_waits_for_its_reply(outcomes: dict[str, Outcome]) -> None:
    report, served = outcomes["turns"]
    assert [t.text for t in report.turns] == ["utterance 0", "utterance 1", "utterance 2"]
    assert report.planned == 3
    for i in range(3):
        check_reply(report, i, i + 1, REPLY)
    # the caller waits for the reply to go quiet before its next turn
    for before, after in zip(report.turns, report.turns[1:], strict=False):
        assert before.reply_end is not None
        assert after.onset >= before.reply_end + QUIET - 1e-9
    # every mark echoed once its audio had played; the server saw each one played
    assert [m.name for m in report.marks] == ["reply-1", "reply-2", "reply-3"]
    for mark in report.marks:
        assert mark.echoed is not None
        assert mark.echoed >= mark.position / report.rate - 1e-6
        assert not mark.cleared
    assert served.marks == [MarkPlayed("reply-1"), MarkPlayed("reply-2"), MarkPlayed("reply-3")]
    assert report.clears == []
    total = 3 * round(REPLY * report.rate)
    assert report.received_samples == report.played_samples == total
    assert report.played_received_samples == total
    assert sum(len(t.heard) for t in report.turns) == total
    assert abs(len(report.heard) - report.duration * report.rate) <= 1  # the speaker, from t0
    assert not report.closed_by_server
    assert report.closed_at is None
    assert report.unexpected == []
    assert report.duration > report.turns[-1].end


def test_a_barge_in_clears_the_reply_and_counts_what_was_heard(
    outcomes: dict[str, Outcome],
) -> None:
    report, served = outcomes["barge-in"]
    info = report.summary()
    first, barge = report.turns
    assert barge.barge_in
    assert not first.barge_in
    # said over the reply, once it had played for barge_in_after
    assert first.reply_start is not None
    assert barge.onset >= first.reply_start + BARGE_AFTER
    assert first.reply_end is not None
    assert first.reply_end > barge.onset, info
    # the server heard it and cleared; the clear cut the first reply
    (clear,) = report.clears
    (sent,) = served.sent_at_clear
    assert barge.onset < clear.at < barge.end, info
    assert clear.turn == 0
    assert first.cut, info
    assert not barge.cut, info
    assert len(first.heard) < round(BARGE_REPLY * report.rate)
    # What the phone says it had played, against what the server had sent: everything
    # sent before the clear arrived before it, and with the pacer one frame ahead at most
    # a frame of it had not played. (Plus the loopback's transit jitter: the phone starts
    # a reply when its first frame arrives and falls behind the send clock when a later
    # frame is slower; a few ms on a loaded machine.)
    frame = report.rate // 50
    jitter = round(0.005 * report.rate)
    assert clear.received_samples == sent, info
    assert sent - frame - jitter <= clear.played_received_samples <= sent, (sent, clear)
    assert clear.played_received_samples == len(first.heard)  # the first audio received
    assert clear.played_received_samples + clear.dropped_samples == clear.received_samples
    # the reply to the barge-in played in full; the first reply's mark was dropped
    check_reply(report, 1, 2, BARGE_REPLY)
    # (the pacer sends a mark after its audio: the clear dropped reply-1's at the server)
    (mark,) = report.marks
    assert mark.name == "reply-2"
    assert mark.echoed is not None
    assert not mark.cleared
    assert served.marks == [MarkPlayed("reply-1", cleared=True), MarkPlayed("reply-2")]
    assert report.received_samples == clear.received_samples + round(BARGE_REPLY * report.rate)
    assert report.played_received_samples == report.received_samples
    assert report.played_samples == report.received_samples - clear.dropped_samples
    assert report.unexpected == []


def test_an_audiosocket_dialog_has_no_marks_and_no_clears(
    outcomes: dict[str, Outcome],
) -> None:
    report, served = outcomes["audiosocket"]
    assert len(report.turns) == 2
    check_reply(report, 0, 1, REPLY)
    check_reply(report, 1, 2, REPLY)
    assert report.marks == []
    assert report.clears == []
    # the server timed its marks itself, from its send clock
    assert served.marks == [MarkPlayed("reply-1"), MarkPlayed("reply-2")]
    assert report.received_samples == 2 * round(REPLY * report.rate)
    assert report.played_received_samples == report.received_samples
    assert not report.closed_by_server
    assert report.unexpected == []


def test_the_server_hanging_up_ends_the_dialog(outcomes: dict[str, Outcome]) -> None:
    report, _ = outcomes["hang-up"]
    info = report.summary()
    assert report.closed_by_server, info
    assert report.planned == 3
    assert len(report.turns) == 2, info  # the third turn was never said
    check_reply(report, 1, 2, REPLY)
    last = report.turns[1]
    assert report.closed_at is not None
    assert last.reply_end is not None
    assert report.closed_at >= last.reply_end - 1e-6, info
    assert report.duration >= report.closed_at
    assert "the server closed the call" in info


def test_a_waiting_turn_does_not_wait_for_the_reply(outcomes: dict[str, Outcome]) -> None:
    report, served = outcomes["wait"]
    info = report.summary()
    listen, first, second = report.turns
    # a turn without speech: the caller listened to the greeting, then spoke
    assert listen.onset == listen.end == 0.0
    check_reply(report, 0, 0, WAIT_REPLY)
    assert listen.reply_end is not None
    assert first.onset >= listen.reply_end + QUIET - 1e-9
    # the second turn came WAIT after the first (to the next 20 ms frame), over the
    # reply the first one had started
    assert WAIT - 1e-9 <= second.onset - first.end < WAIT + 0.02 + 0.02, info
    assert first.reply_start is not None
    assert first.reply_end is not None
    assert first.reply_start < second.onset < first.reply_end, info
    assert first.cut, info
    assert [c.turn for c in report.clears] == [1]
    assert served.sent_at_clear == [c.received_samples for c in report.clears]
    check_reply(report, 2, 2, WAIT_REPLY)


def test_the_caller_goes_on_when_no_reply_comes(outcomes: dict[str, Outcome]) -> None:
    report, served = outcomes["no reply"]
    first, second = report.turns
    assert first.reply_start is None
    assert first.reply_latency is None
    assert len(first.heard) == 0
    assert served.replies == 2  # the server heard both turns
    # the caller waited reply_timeout from the end of its audio, to the next frame
    assert 0.5 - 1e-9 <= second.onset - first.end < 0.5 + 0.04
    assert report.received_samples == 0
    assert report.played_received_samples == 0
    assert "no reply heard" in report.summary()


def test_an_impaired_line_still_carries_the_dialog(outcomes: dict[str, Outcome]) -> None:
    report, _ = outcomes["impaired"]
    assert report.media_lost > 0
    assert [t.reply_start is not None for t in report.turns] == [True, True], report.summary()
    assert report.unexpected == []
    assert not report.closed_by_server


def test_the_report_as_json_and_text(outcomes: dict[str, Outcome]) -> None:
    report, _ = outcomes["barge-in"]
    figures = json.loads(json.dumps(report.as_dict()))
    assert [t["barge_in"] for t in figures["turns"]] == [False, True]
    assert figures["turns"][0]["cut"] is True
    (clear,) = figures["clears"]
    assert clear["played_received_samples"] == report.clears[0].played_received_samples
    assert [m["name"] for m in figures["marks"]] == ["reply-2"]
    text = report.summary()
    assert text.startswith("rawpcm dialog at 16000 Hz: 2 of 2 turn(s) said")
    assert '2. "utterance 1" (barge-in)' in text
    assert "cut by a clear" in text
    assert f"{clear['played_received_samples']} of {clear['received_samples']}" in text


def test_received_audio_numbers_samples_in_arrival_order() -> None:
    r = ReceivedAudio()
    r.add(100, 160)  # received 0..160, plays at 100..260
    r.add(260, 160)  # received 160..320, queued behind it
    assert r.played_index(50) == 0
    assert r.played_index(200) == 100
    assert r.played_index(300) == 200
    assert r.clear(300) == 120  # 300..420 never plays
    assert r.played_index(1000) == r.played_count(1000) == 200
    r.add(500, 100)  # received 320..420 after a pause
    assert r.played_index(450) == 200  # nothing plays in between
    assert r.played_index(550) == 370  # dropped samples keep their place in the numbering
    assert r.played_count(550) == 250
    assert r.received == 420
    r.add(600, 0)
    assert r.received == 420
    with pytest.raises(ValueError, match="overlaps"):
        r.add(550, 10)
    with pytest.raises(ValueError, match=">= 0"):
        r.add(700, -1)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 120), st.integers(0, 150)),
        min_size=1,
        max_size=20,
    )
)
def test_received_audio_matches_a_sample_by_sample_phone(
    steps: list[tuple[bool, int, int]],
) -> None:
    """Against the phone-side rule applied to every received sample one by one."""
    r = ReceivedAudio()
    position = np.zeros(0, np.int64)  # where each received sample was queued to play
    dropped = np.zeros(0, bool)
    now = end = 0
    for is_clear, advance, n in steps:
        now += advance  # the playout clock only moves forward
        if is_clear:
            gone = (position >= now) & ~dropped
            dropped |= gone
            assert r.clear(now) == np.count_nonzero(gone)
            end = min(end, now)
        else:
            start = max(end, now)  # the Playout's rule: queued behind, or at once
            r.add(start, n)
            position = np.concatenate([position, np.arange(start, start + n)])
            dropped = np.concatenate([dropped, np.zeros(n, bool)])
            end = start + n
        for cut in (now, now + advance // 2, end, end + 1):
            played = np.flatnonzero((position < cut) & ~dropped)
            assert r.played_index(cut) == (int(played[-1]) + 1 if len(played) else 0)
            assert r.played_count(cut) == len(played)
    assert r.received == len(position)


def test_bad_turns_and_settings_are_refused() -> None:
    with pytest.raises(TypeError):
        Turn(np.zeros(10, np.float32))
    with pytest.raises(TypeError):
        Turn(np.zeros((2, 10), np.int16))
    with pytest.raises(ValueError, match="not both"):
        Turn(barge_in_after=0.2, wait=0.2)
    with pytest.raises(ValueError, match="wait must be"):
        Turn(wait=-1.0)
    with pytest.raises(ValueError, match="barge_in_after must be"):
        Turn(barge_in_after=float("nan"))
    with pytest.raises(TypeError):
        Turn(wait="1")  # type: ignore[arg-type]

    def refused(*args: object, **kwargs: object) -> None:
        asyncio.run(place_dialog("ws://127.0.0.1:9/", *args, **kwargs))  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="unknown protocol"):
        refused("nope", [Turn()])
    with pytest.raises(ValueError, match="at least one"):
        refused("twilio", [])
    with pytest.raises(ValueError, match="barge in"):
        refused("twilio", [Turn(barge_in_after=0.1)])
    with pytest.raises(TypeError):
        refused("twilio", ["hello"])
    with pytest.raises(ValueError, match="quiet"):
        refused("twilio", [Turn()], quiet=0.0)
    with pytest.raises(ValueError, match="lead must be"):
        refused("twilio", [Turn()], lead=-1.0)
    with pytest.raises(ValueError, match="16000"):
        refused("twilio", [Turn()], rate=16000)


# --- RTP ------------------------------------------------------------------------------


@dataclass
class RtpServerLog:
    stopped: list[tuple[int, int]] = field(default_factory=list)  # (sent, send clock)
    sent: int = 0  # samples sent over the call, at its end


def test_an_rtp_dialog_measures_where_the_agent_stopped_sending() -> None:
    """A scripted RTP server answers each turn with a tone and, when the caller talks
    over one, stops sending; the phone's StopRecord says it played exactly what the
    server had sent by then (RTP cannot take a packet back), which is one to two frames
    more than the server's send clock had reached."""
    from voxwire.aio.rtp_call import RtpCall, serve_rtp
    from voxwire.sim.dialog import place_rtp_dialog

    rate = 8000
    log = RtpServerLog()

    async def handler(call: RtpCall) -> None:
        loop = asyncio.get_running_loop()
        vad = Vad(rate)
        replies = 0
        async for event in call:
            if not isinstance(event, Audio):
                continue
            for ev in vad.process(event.pcm):
                if isinstance(ev, SpeechStart) and call.queued_samples > 0:
                    log.stopped.append((call.committed_samples, call.playout_position(loop.time())))
                    call.clear()
                elif isinstance(ev, SpeechEnd):
                    replies += 1
                    t = np.arange(round((3.0 if replies == 1 else 0.3) * rate)) / rate
                    tone = 6000 * np.sin(2 * np.pi * reply_hz(replies) * t)
                    call.play(tone.astype(np.int16))
                    call.flush()
            log.sent = call.committed_samples

    async def main() -> DialogReport:
        server = await serve_rtp(handler, pipeline_rate=rate, idle_timeout=0.3)
        try:
            host, port = server.local_addr
            turns = [
                Turn(voice(0.6, rate), "ask"),
                Turn(voice(0.5, rate, 180.0), "barge", barge_in_after=0.8),
            ]
            return await asyncio.wait_for(
                place_rtp_dialog(host, port, turns, quiet=QUIET, lead=0.2, tail=0.2), 15
            )
        finally:
            await server.aclose()

    report = asyncio.run(main())
    assert report.protocol == "rtp"
    assert report.rate == rate
    assert report.clears == []
    assert report.marks == []
    assert report.unexpected == []
    assert len(report.turns) == 2
    assert report.turns[1].barge_in
    assert report.turns[0].cut
    assert not report.turns[1].cut
    (stop,) = report.stops
    ((sent, clock),) = log.stopped
    assert stop.turn == 0
    assert stop.played_received_samples == sent
    assert 0 <= sent - clock <= 320  # the lead: up to two frames sent ahead of the clock
    assert 0 < stop.latency < 0.5
    assert stop.position > round(stop.onset * rate)
    assert report.turns[1].reply_start is not None  # the short reply came after
    assert report.received_samples == log.sent
    assert report.played_samples == report.received_samples  # nothing is dropped
    assert report.as_dict()["stops"][0]["played_received_samples"] == sent
    assert "reply stopped" in report.summary()
    assert "cut by a clear" not in report.summary()


def test_the_rtp_phone_side_refuses_what_is_not_its_stream() -> None:
    from voxwire.rtp import RtpSender
    from voxwire.sim.dialog import _RtpSide
    from voxwire.sim.providers import PlayAudio, Unexpected

    side = _RtpSide()
    assert side.opening() == []
    assert side.closing() == []
    packet = side.audio(np.full(160, 1000, np.int16))
    (played,) = side.parse(packet)
    assert isinstance(played, PlayAudio)
    assert len(played.pcm) == 160
    assert abs(int(played.pcm[0]) - 1000) < 40  # mu-law's step near 1000
    assert side.talkspurts == 1  # the stream's first packet carries the marker
    assert side.parse(side.audio(np.zeros(160, np.int16)))
    assert side.talkspurts == 1
    for junk in (b"\x00\x01", "text", RtpSender(8).packet(b"\xd5" * 160, 160)):
        (event,) = side.parse(junk)
        assert isinstance(event, Unexpected)


def test_bad_rtp_dialogs_are_refused() -> None:
    from voxwire.sim.dialog import place_rtp_dialog

    speech = voice(0.3, 8000)

    async def attempt(*turns: object, port: object = 4000, **kw: float) -> None:
        await place_rtp_dialog("127.0.0.1", port, turns, **kw)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="at least one turn"):
        asyncio.run(attempt())
    with pytest.raises(ValueError, match="barge in"):
        asyncio.run(attempt(Turn(speech, barge_in_after=0.2)))
    with pytest.raises(TypeError, match="Turn objects"):
        asyncio.run(attempt(speech))
    with pytest.raises(ValueError, match="port"):
        asyncio.run(attempt(Turn(speech), port=0))
    with pytest.raises(ValueError, match="stop_gap"):
        asyncio.run(attempt(Turn(speech), stop_gap=-1.0))
