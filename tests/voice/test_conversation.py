"""The conversation core, sans-I/O: synthetic speech fed frame by frame on a virtual clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from voxwire.errors import ServiceError
from voxwire.services.base import SpeechAudio, TextDelta, ToolCall, Transcript, Word
from voxwire.services.fake import speech_signal
from voxwire.voice.conversation import (
    END_CALL,
    MAX_SAY_CHARS,
    MAX_SAYS_WAITING,
    Action,
    CancelLlm,
    CancelTts,
    Clear,
    Conversation,
    EndTts,
    FinalizeStt,
    HangUp,
    Mark,
    Play,
    RunTool,
    SpeakText,
    StartLlm,
    StartTts,
    SttAudio,
    ToolOutcome,
    VoiceConfig,
)
from voxwire.voice.history import History
from voxwire.voice.turns import Prosody, TurnPolicy

RATE = 16000
FRAME = RATE // 50


@dataclass
class FixedPolicy:
    """A turn policy with one delay: the core's timing is what is under test."""

    wait: float = 0.1
    hangover_ms: int = 200
    texts: list[str] = field(default_factory=list)

    def delay(self, text: str) -> float:
        self.texts.append(text)
        return self.wait


def words_of(text: str, start: float = 0.0, per_word: float = 0.3) -> tuple[Word, ...]:
    return tuple(
        Word(w, start + i * per_word, start + i * per_word + 0.25)
        for i, w in enumerate(text.split())
    )


def tone(seconds: float, level: float = 0.2) -> np.ndarray:
    """Speech-like audio: the fake TTS's voiced signal, cut to length."""
    sig = speech_signal("hello there how are you doing today my friend", RATE)[0]
    reps = int(np.ceil(seconds * RATE / len(sig))) + 1
    out = np.tile(sig, reps)[: round(seconds * RATE)].astype(np.float64)
    return np.clip(out * level / 0.1, -32768, 32767).astype(np.int16)


class Harness:
    """Feeds a Conversation 20 ms at a time and collects what it asks for."""

    def __init__(self, config: VoiceConfig | None = None, wait: float = 0.1) -> None:
        self.policy = FixedPolicy(wait)
        self.history = History("You are a test.")
        self.conv = Conversation(RATE, self.policy, self.history, config=config)
        self.now = 0.0
        self.actions: list[Action] = []
        self.played: list[Play] = []
        self.marks: list[Mark] = []

    def take(self, actions: list[Action]) -> list[Action]:
        self.actions += actions
        for a in actions:
            if isinstance(a, Play):
                self.played.append(a)
            elif isinstance(a, Mark):
                self.marks.append(a)
        return actions

    def feed(self, pcm: np.ndarray) -> list[Action]:
        got: list[Action] = []
        for i in range(0, len(pcm), FRAME):
            self.now += FRAME / RATE
            got += self.take(self.conv.audio(pcm[i : i + FRAME], self.now))
            timer = self.conv.get_timer()
            while timer is not None and timer <= self.now:
                got += self.take(self.conv.handle_timer(self.now))
                timer = self.conv.get_timer()
        return got

    def silence(self, seconds: float) -> list[Action]:
        return self.feed(np.zeros(round(seconds * RATE), np.int16))

    def of(self, kind: type, actions: list[Action] | None = None) -> list[Action]:
        return [a for a in (self.actions if actions is None else actions) if isinstance(a, kind)]

    def say_turn(self, text: str, seconds: float = 0.8) -> StartLlm:
        """The caller says ``text``; the recogniser's final comes 100 ms after it ends."""
        self.silence(0.2)
        self.feed(tone(seconds))
        self.silence(0.1)
        self.take(self.conv.transcript(Transcript(text, True, 0, seconds), self.now))
        got = self.silence(0.5)
        starts = self.of(StartLlm, got)
        assert len(starts) == 1, got
        start = starts[0]
        assert isinstance(start, StartLlm)
        return start

    def reply(self, reply: int, text: str, *, done: bool = True) -> list[Action]:
        got = self.take(self.conv.llm_event(reply, TextDelta(text), self.now))
        if done:
            got += self.take(self.conv.llm_done(reply, self.now))
        return got

    def synth(self, reply: int, text: str, start: float = 0.0, seconds: float = 0.0) -> Play:
        """The TTS answers one SpeakText with audio and word timings."""
        n = len(text.split())
        seconds = seconds or 0.3 * n
        pcm = tone(seconds)
        got = self.take(
            self.conv.tts_audio(
                reply, SpeechAudio(pcm, words_of(text, start), text), self.now, RATE
            )
        )
        plays = self.of(Play, got)
        assert plays, got
        play = plays[-1]
        assert isinstance(play, Play)
        return play


def test_a_turn_is_answered_and_the_history_holds_it() -> None:
    h = Harness()
    start = h.say_turn("what are your opening hours")
    assert start.messages[0].role == "system"
    assert start.messages[-1].content == "what are your opening hours"
    assert any(t.name == END_CALL for t in start.tools)
    got = h.reply(start.reply, "We open at nine. We close at five.")
    speaks = [a.text for a in h.of(SpeakText, got)]
    assert speaks == ["We open at nine.", "We close at five."]
    assert h.of(StartTts, got)
    assert h.of(EndTts, got)
    h.synth(start.reply, "We open at nine.")
    h.synth(start.reply, "We close at five.", start=1.2)
    end = h.take(h.conv.tts_done(start.reply, h.now))
    final = [m for m in h.of(Mark, end) if isinstance(m, Mark) and m.final]
    assert len(final) == 1
    start_mark = h.marks[0]
    h.take(h.conv.mark_played(start_mark.name, h.now))
    h.take(h.conv.mark_played(final[0].name, h.now + 2.4))
    assert h.conv.state == "listening"
    roles = [m.role for m in h.history.messages]
    assert roles == ["user", "assistant"]
    assert h.history.messages[1].content == "We open at nine. We close at five."
    turn = h.conv.turns[0]
    assert turn.speech_end is not None
    assert turn.endpoint is not None
    assert turn.first_audio_played is not None
    assert turn.reply_latency is not None
    assert h.conv.closed == [turn]


def test_the_first_sentence_is_spoken_before_the_model_finishes() -> None:
    h = Harness()
    start = h.say_turn("hello")
    got = h.reply(start.reply, "Hi! I am", done=False)
    assert [a.text for a in h.of(SpeakText, got)] == ["Hi!"]
    assert not h.of(EndTts, got)


def test_a_turn_waits_for_the_final_transcript_and_asks_for_it() -> None:
    h = Harness()
    h.silence(0.2)
    h.feed(tone(0.8))
    h.take(h.conv.transcript(Transcript("book a", False), h.now))
    got = h.silence(0.5)
    assert h.of(FinalizeStt, got)
    assert not h.of(StartLlm, got)
    got = h.take(h.conv.transcript(Transcript("book a table", True), h.now))
    starts = h.of(StartLlm, got)
    assert len(starts) == 1
    assert h.history.messages[-1].content == "book a table"


def test_without_a_final_the_interim_text_is_used_after_the_timeout() -> None:
    h = Harness(VoiceConfig(final_timeout=0.3))
    h.silence(0.2)
    h.feed(tone(0.6))
    h.take(h.conv.transcript(Transcript("hello there", False), h.now))
    got = h.silence(1.0)
    assert len(h.of(StartLlm, got)) == 1
    assert h.history.messages[-1].content == "hello there"


def test_speech_before_the_endpoint_continues_the_turn() -> None:
    h = Harness(wait=0.6)
    h.silence(0.2)
    h.feed(tone(0.6))
    h.take(h.conv.transcript(Transcript("my number is", True), h.now))
    h.silence(0.3)  # the VAD ended the utterance, the policy still waits
    h.feed(tone(0.5))
    h.take(h.conv.transcript(Transcript("four one five", True), h.now))
    got = h.silence(1.2)
    assert len(h.of(StartLlm, got)) == 1
    assert h.history.messages[-1].content == "my number is four one five"


def test_speech_while_thinking_cancels_the_draft_and_keeps_the_words() -> None:
    h = Harness()
    start = h.say_turn("i want to book")
    got = h.feed(tone(0.4))
    assert h.of(CancelLlm, got)
    assert [m.role for m in h.history.messages] == []
    h.take(h.conv.transcript(Transcript("a cleaning", True), h.now))
    got = h.silence(0.6)
    starts = h.of(StartLlm, got)
    assert len(starts) == 1
    assert isinstance(starts[0], StartLlm)
    assert starts[0].reply != start.reply
    assert h.history.messages[-1].content == "i want to book a cleaning"
    # the cancelled reply's late events are ignored
    assert h.conv.llm_event(start.reply, TextDelta("Sure."), h.now) == []


def start_speaking(h: Harness, text: str) -> tuple[StartLlm, Play]:
    start = h.say_turn("tell me about your services")
    h.reply(start.reply, text)
    play = h.synth(start.reply, text)
    h.take(h.conv.tts_done(start.reply, h.now))
    return start, play


LONG = "We offer check-ups and cleanings and whitening and fillings for the whole family."


def test_barge_in_clears_at_once_and_cuts_the_history_to_the_heard_words() -> None:
    h = Harness()
    start, _ = start_speaking(h, LONG)
    h.silence(1.0)
    got = h.feed(tone(0.06))
    clears = h.of(Clear, got)
    assert len(clears) == 1
    # the driver reports the played position: 1.05 s into the reply (words start every
    # 0.3 s: "We offer check-ups and" have started, "cleanings" at 1.2 s has not)
    h.take(h.conv.heard(start.reply, 1.05, h.now))
    h.feed(tone(0.4))
    turn = h.conv.turns[-1]
    assert turn.interrupted
    assert h.history.messages[-1].role == "assistant"
    assert h.history.messages[-1].content == "We offer check-ups and"
    assert turn.heard_text == "We offer check-ups and"
    assert h.conv.state == "listening"
    # the caller's words are the next turn
    h.take(h.conv.transcript(Transcript("how much is whitening", True), h.now))
    got = h.silence(0.6)
    assert len(h.of(StartLlm, got)) == 1
    assert [m.role for m in h.history.messages] == ["user", "assistant", "user"]


def test_barge_in_before_the_first_word_leaves_no_assistant_text() -> None:
    h = Harness()
    start = h.say_turn("tell me about your services")
    h.reply(start.reply, LONG, done=False)  # the model is still writing
    h.synth(start.reply, LONG)
    h.feed(tone(0.06))
    h.take(h.conv.heard(start.reply, 0.0, h.now))
    got = h.feed(tone(0.4))
    assert h.of(CancelLlm, got)
    assert h.of(CancelTts, got)
    assert [m.role for m in h.history.messages] == ["user"]


def test_a_short_noise_resumes_the_reply_from_the_word_it_stopped() -> None:
    h = Harness()
    start, first = start_speaking(h, LONG)
    h.silence(1.0)
    got = h.feed(tone(0.1))
    assert h.of(Clear, got)
    h.take(h.conv.heard(start.reply, 1.3, h.now))  # inside "cleanings" (1.2-1.45 s)
    got = h.silence(0.4)
    plays = h.of(Play, got)
    assert len(plays) == 1
    assert isinstance(plays[0], Play)
    assert plays[0].offset == pytest.approx(1.2)
    assert len(plays[0].pcm) == len(first.pcm) - round(1.2 * RATE)
    # and the reply still ends with a final mark that finishes it
    final = [m for m in h.of(Mark, got) if isinstance(m, Mark) and m.final]
    assert final
    h.take(h.conv.mark_played(final[-1].name, h.now + 5))
    assert h.conv.state == "listening"
    turn = h.conv.turns[-1]
    assert not turn.interrupted
    assert turn.false_interruptions == 1
    assert h.history.messages[-1].content == LONG


def test_the_agents_own_echo_does_not_interrupt_it() -> None:
    h = Harness()
    _start, play = start_speaking(h, LONG)
    # the line returns the reply 15 dB down, 40 ms late, for the whole reply
    echo = (play.pcm.astype(np.float64) * 10 ** (-15 / 20)).astype(np.int16)
    got = h.feed(np.concatenate([np.zeros(640, np.int16), echo]))
    assert not h.of(Clear, got)
    stt = [a for a in got if isinstance(a, SttAudio)]
    assert stt
    assert max(int(np.abs(a.pcm).max()) for a in stt) == 0


def test_caller_speech_over_echo_still_barges_in() -> None:
    h = Harness()
    _start, play = start_speaking(h, LONG)
    echo = (play.pcm[: RATE // 2].astype(np.float64) * 10 ** (-15 / 20)).astype(np.int16)
    h.feed(echo)
    got = h.feed(tone(0.1, level=0.3))
    assert h.of(Clear, got)


def test_tools_run_and_their_results_go_back_to_the_model() -> None:
    h = Harness(VoiceConfig(filler_after=0.5))
    start = h.say_turn("book me for monday")
    call = ToolCall("call_1", "book", {"day": "monday"})
    h.take(h.conv.llm_event(start.reply, TextDelta("Let me check."), h.now))
    h.take(h.conv.llm_event(start.reply, call, h.now))
    got = h.take(h.conv.llm_done(start.reply, h.now))
    runs = h.of(RunTool, got)
    assert len(runs) == 1
    assert isinstance(runs[0], RunTool)
    assert runs[0].call == call
    got = h.silence(0.6)  # the tool is slow: the filler is said
    assert [a.text for a in h.of(SpeakText, got)] == ["One moment, please."]
    got = h.take(
        h.conv.tool_result(start.reply, ToolOutcome("call_1", "book", "booked: id 7"), h.now)
    )
    again = h.of(StartLlm, got)
    assert len(again) == 1
    assert isinstance(again[0], StartLlm)
    roles = [m.role for m in again[0].messages]
    assert roles[-3:] == ["user", "assistant", "tool"]
    assert again[0].messages[-2].tool_calls == (call,)
    assert again[0].messages[-2].content == "Let me check. One moment, please."
    assert h.conv.turns[-1].tools[0].name == "book"


def test_tool_results_survive_a_barge_in() -> None:
    h = Harness()
    start = h.say_turn("book me for monday")
    h.take(h.conv.llm_event(start.reply, TextDelta("Booking that now."), h.now))
    h.take(h.conv.llm_event(start.reply, ToolCall("call_1", "book", {}), h.now))
    h.take(h.conv.llm_done(start.reply, h.now))
    h.synth(start.reply, "Booking that now.")
    h.feed(tone(0.06))
    h.take(h.conv.heard(start.reply, 0.1, h.now))
    h.feed(tone(0.4))
    assert h.conv.turns[-1].interrupted
    # the booking finishes after the interruption: its result still enters the history
    h.take(h.conv.tool_result(start.reply, ToolOutcome("call_1", "book", "booked"), h.now))
    roles = [m.role for m in h.history.messages]
    assert roles == ["user", "assistant", "tool"]
    assert h.history.messages[1].tool_calls[0].id == "call_1"
    assert h.history.messages[1].content == "Booking"


def test_end_call_hangs_up_after_the_goodbye_played() -> None:
    h = Harness()
    start = h.say_turn("thanks goodbye")
    h.take(h.conv.llm_event(start.reply, TextDelta("Goodbye!"), h.now))
    h.take(h.conv.llm_event(start.reply, ToolCall("c1", END_CALL, {}), h.now))
    got = h.take(h.conv.llm_done(start.reply, h.now))
    assert not h.of(RunTool, got)
    assert h.of(EndTts, got)
    h.synth(start.reply, "Goodbye!")
    got = h.take(h.conv.tts_done(start.reply, h.now))
    assert not h.of(HangUp, got)
    final = [m for m in h.of(Mark, got) if isinstance(m, Mark) and m.final]
    got = h.take(h.conv.mark_played(final[0].name, h.now + 1))
    assert h.of(HangUp, got)
    assert h.conv.ended


def test_a_failing_model_gets_an_apology_and_the_call_goes_on() -> None:
    h = Harness()
    start = h.say_turn("hello")
    got = h.take(h.conv.llm_failed(start.reply, ServiceError("llm", "status_503"), h.now))
    assert [a.text for a in h.of(SpeakText, got)] == [VoiceConfig().apology_text]
    assert h.conv.errors == {"llm:status_503": 1}
    assert h.conv.turns[-1].errors == ["llm:status_503"]


def test_a_stalled_model_times_out_into_an_apology() -> None:
    h = Harness(VoiceConfig(llm_timeout=1.0))
    start = h.say_turn("hello")
    got = h.silence(1.2)
    assert h.of(CancelLlm, got)
    assert [a.text for a in h.of(SpeakText, got)] == [VoiceConfig().apology_text]
    assert h.conv.errors == {"llm:timeout": 1}
    assert start.reply == h.conv.turns[-1].index + 1


def test_a_failing_synthesiser_ends_the_reply_without_killing_the_call() -> None:
    h = Harness()
    start = h.say_turn("hello")
    h.reply(start.reply, "Hi there.", done=False)
    got = h.take(h.conv.tts_failed(start.reply, ServiceError("tts", "closed"), h.now))
    assert h.of(CancelLlm, got)
    assert h.conv.state == "listening"
    h.say_turn("are you there")  # the next turn is answered


def test_engines_without_word_timings_are_cut_by_an_estimate() -> None:
    h = Harness()
    start = h.say_turn("hello")
    h.reply(start.reply, "One two three four.")
    pcm = tone(2.0)
    h.take(h.conv.tts_audio(start.reply, SpeechAudio(pcm, (), "One two three four."), h.now, RATE))
    h.feed(tone(0.06))
    # by characters "three" starts at 8/19 of the 2 s (0.84 s): at 0.8 s "One two" started
    h.take(h.conv.heard(start.reply, 0.8, h.now))
    h.feed(tone(0.4))
    assert h.history.messages[-1].content == "One two"


def test_the_greeting_is_said_at_the_start() -> None:
    h = Harness(VoiceConfig(greeting="Hello, Harbor Dental."))
    got = h.take(h.conv.start(0.0))
    assert [a.text for a in h.of(SpeakText, got)] == ["Hello, Harbor Dental."]
    assert h.history.messages[-1].content == "Hello, Harbor Dental."


def test_a_resumed_call_says_the_resume_greeting_or_nothing() -> None:
    h = Harness(VoiceConfig(greeting="Hello, Harbor Dental."))
    assert h.take(h.conv.start(0.0, resumed=True)) == []
    assert h.history.messages == []
    h = Harness(VoiceConfig(greeting="Hello.", resume_greeting="Sorry, we were cut off."))
    got = h.take(h.conv.start(0.0, resumed=True))
    assert [a.text for a in h.of(SpeakText, got)] == ["Sorry, we were cut off."]


def test_a_text_said_on_a_free_line_is_spoken_at_once_as_an_assistant_turn() -> None:
    h = Harness()
    got = h.take(h.conv.say("This call may be recorded.", h.now))
    (speak,) = h.of(SpeakText, got)
    assert isinstance(speak, SpeakText)
    assert speak.text == "This call may be recorded."
    assert h.of(StartTts, got)
    assert h.of(EndTts, got)
    assert h.conv.live_reply == speak.reply
    assert h.history.messages[-1].role == "assistant"
    assert h.history.messages[-1].content == "This call may be recorded."
    assert h.conv.turns[-1].user_text == ""


def test_a_text_said_during_a_reply_waits_until_that_reply_has_played() -> None:
    h = Harness()
    start = h.say_turn("what are your opening hours")
    h.reply(start.reply, "We open at nine.")
    assert h.take(h.conv.say("One more thing.", h.now)) == []
    assert h.conv.says_waiting == 1
    h.synth(start.reply, "We open at nine.")
    end = h.take(h.conv.tts_done(start.reply, h.now))
    (final,) = [m for m in h.of(Mark, end) if isinstance(m, Mark) and m.final]
    assert isinstance(final, Mark)
    h.take(h.conv.mark_played(h.marks[0].name, h.now))
    got = h.take(h.conv.mark_played(final.name, h.now + 1.2))
    assert [a.text for a in h.of(SpeakText, got) if isinstance(a, SpeakText)] == ["One more thing."]
    assert h.conv.says_waiting == 0
    assert [m.content for m in h.history.messages[-2:]] == ["We open at nine.", "One more thing."]


def test_texts_to_say_are_bounded_and_refused_with_a_reason() -> None:
    h = Harness()
    for text in ("", "   "):
        with pytest.raises(ValueError, match="no text"):
            h.conv.say(text, h.now)
    with pytest.raises(ValueError, match="characters at most"):
        h.conv.say("a" * (MAX_SAY_CHARS + 1), h.now)
    h.take(h.conv.say("First.", h.now))
    for i in range(MAX_SAYS_WAITING):
        assert h.take(h.conv.say(f"Waiting {i}.", h.now)) == []
    with pytest.raises(ValueError, match="already wait"):
        h.conv.say("One too many.", h.now)
    h.take(h.conv.close())
    with pytest.raises(ValueError, match="ended"):
        h.conv.say("Too late.", h.now)


def test_a_call_that_ends_mid_reply_keeps_only_the_heard_words() -> None:
    h = Harness()
    _start, _ = start_speaking(h, LONG)
    h.silence(1.0)
    h.take(h.conv.close(heard=1.05))
    assert h.history.messages[-1].content == "We offer check-ups and"
    assert h.conv.turns[-1].heard_text == "We offer check-ups and"
    assert h.conv.ended


def test_a_call_that_ends_before_the_reply_played_drops_its_text() -> None:
    h = Harness()
    start = h.say_turn("hello")
    h.reply(start.reply, "Hi there.", done=False)
    got = h.take(h.conv.close())
    assert h.of(CancelLlm, got)
    assert [m.role for m in h.history.messages] == ["user"]


def test_a_short_sound_while_thinking_holds_the_reply_then_lets_it_play() -> None:
    h = Harness()
    start = h.say_turn("what are your hours")
    h.reply(start.reply, "We open at nine.", done=False)
    got = h.feed(tone(0.1))  # a cough before any audio played
    assert not h.of(CancelLlm, got)
    assert not h.of(Clear, got)  # nothing was playing
    h.take(h.conv.llm_done(start.reply, h.now))
    pcm = tone(1.0)
    words = words_of("We open at nine.")
    got = h.take(
        h.conv.tts_audio(start.reply, SpeechAudio(pcm, words, "We open at nine."), h.now, RATE)
    )
    assert not h.of(Play, got)  # held while the sound is judged
    h.take(h.conv.tts_done(start.reply, h.now))
    got = h.silence(0.4)
    plays = h.of(Play, got)
    assert len(plays) == 1
    assert isinstance(plays[0], Play)
    assert plays[0].offset == 0.0
    assert len(plays[0].pcm) == len(pcm)
    final = [m for m in h.of(Mark, got) if isinstance(m, Mark) and m.final]
    h.take(h.conv.mark_played(final[-1].name, h.now + 1.5))
    assert h.history.messages[-1].content == "We open at nine."
    assert h.conv.turns[-1].false_interruptions == 1


def test_each_service_time_to_first_result_is_on_the_turn() -> None:
    h = Harness()
    start = h.say_turn("hello")
    h.now += 0.2
    h.reply(start.reply, "Hi there.")
    h.now += 0.1
    h.synth(start.reply, "Hi there.")
    turn = h.conv.turns[-1]
    assert turn.llm_request is not None
    ttfb = turn.ttfb()
    assert ttfb["llm"] == pytest.approx(h.now - 0.1 - turn.llm_request)
    assert ttfb["tts"] == pytest.approx(0.1)
    assert ttfb["stt"] is not None
    assert ttfb["stt"] > 0
    assert h.conv.turns[-1].as_dict()["ttfb"] == ttfb


def test_the_knowledge_hook_runs_on_the_turn_and_its_context_reaches_the_model() -> None:
    from voxwire.voice.conversation import Retrieve

    h = Harness(VoiceConfig(knowledge=True, retrieve_timeout=2.0))
    h.silence(0.2)
    h.feed(tone(0.8))
    h.silence(0.1)
    h.take(h.conv.transcript(Transcript("when are you open", True), h.now))
    got = h.silence(0.5)
    (ask,) = h.of(Retrieve, got)
    assert isinstance(ask, Retrieve)
    assert ask.query == "when are you open"
    assert not h.of(StartLlm, got)
    got = h.take(h.conv.retrieved(ask.reply, "[1] Source: hours.md\nOpen 9 to 5.", h.now))
    (start,) = h.of(StartLlm, got)
    assert isinstance(start, StartLlm)
    assert start.messages[0].content == "You are a test."
    assert start.messages[1].role == "system"
    assert "hours.md" in start.messages[1].content
    assert start.messages[-1].content == "when are you open"


def test_a_slow_knowledge_hook_is_not_waited_for() -> None:
    from voxwire.voice.conversation import Retrieve

    h = Harness(VoiceConfig(knowledge=True, retrieve_timeout=0.2))
    h.silence(0.2)
    h.feed(tone(0.8))
    h.silence(0.1)
    h.take(h.conv.transcript(Transcript("when are you open", True), h.now))
    got = h.silence(1.0)
    assert h.of(Retrieve, got)
    (start,) = h.of(StartLlm, got)
    assert isinstance(start, StartLlm)
    assert [m.role for m in start.messages] == ["system", "user"]
    assert h.conv.turns[-1].errors == ["knowledge:timeout"]


def test_a_short_sound_before_any_reply_text_is_let_go_without_harm() -> None:
    h = Harness()
    start = h.say_turn("hello")
    h.feed(tone(0.1))  # a cough while the model has not written a word yet
    h.silence(0.4)  # released: nothing was held
    h.reply(start.reply, "Hi there.")
    play = h.synth(start.reply, "Hi there.")
    assert play.offset == 0.0
    assert h.conv.turns[-1].false_interruptions == 1


# --- preemptive replies -------------------------------------------------------------


def speak_until_vad_end(h: Harness, text: str, seconds: float = 0.8) -> list[Action]:
    """The caller says ``text`` (final 100 ms after it ends) and stays quiet until the
    VAD has ended the utterance (hangover 200 ms): what came in that time."""
    h.silence(0.2)
    got = h.feed(tone(seconds))
    got += h.silence(0.1)
    got += h.take(h.conv.transcript(Transcript(text, True, 0, seconds), h.now))
    got += h.silence(0.2)
    return got


def test_a_preemptive_reply_is_prepared_in_the_wait_and_plays_at_the_endpoint() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.6)
    got = speak_until_vad_end(h, "what are your opening hours")
    starts = h.of(StartLlm, got)
    assert len(starts) == 1  # the model started while the policy still waits
    start = starts[0]
    assert isinstance(start, StartLlm)
    assert start.messages[-1].content == "what are your opening hours"
    h.reply(start.reply, "We open at nine.")
    pcm = tone(0.9)
    held = h.take(
        h.conv.tts_audio(
            start.reply,
            SpeechAudio(pcm, words_of("We open at nine."), "We open at nine."),
            h.now,
            RATE,
        )
    )
    h.take(h.conv.tts_done(start.reply, h.now))
    assert not h.of(Play, held)  # held: the turn is not over yet
    assert not h.of(Play)
    assert h.conv.state == "listening"
    assert h.conv.turns == []
    got = h.silence(0.5)  # the endpoint passes
    plays = h.of(Play, got)
    assert len(plays) == 1
    play = plays[0]
    assert isinstance(play, Play)
    assert play.offset == 0.0
    assert np.array_equal(play.pcm, pcm)
    marks = [m for m in h.of(Mark, got) if isinstance(m, Mark)]
    assert [m.final for m in marks] == [False, True]  # the start mark, then the end
    assert len(h.of(StartLlm)) == 1  # no second request
    turn = h.conv.turns[-1]
    assert turn.preemptive
    assert turn.endpoint is not None
    assert turn.llm_request is not None
    assert turn.llm_request < turn.endpoint
    assert h.conv.drafts == {"started": 1, "used": 1, "discarded": 0}
    h.take(h.conv.mark_played(marks[0].name, h.now))
    h.take(h.conv.mark_played(marks[1].name, h.now + 1))
    assert [(m.role, m.content) for m in h.history.messages] == [
        ("user", "what are your opening hours"),
        ("assistant", "We open at nine."),
    ]
    assert h.conv.state == "listening"


def test_a_caller_who_goes_on_discards_the_draft_and_its_history() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.6)
    got = speak_until_vad_end(h, "my number is")
    (start,) = h.of(StartLlm, got)
    assert isinstance(start, StartLlm)
    h.reply(start.reply, "Thank you.")
    h.take(h.conv.tts_audio(start.reply, SpeechAudio(tone(0.5), (), "Thank you."), h.now, RATE))
    got = h.feed(tone(0.5))  # the caller goes on before the endpoint
    assert h.of(CancelTts, got)
    assert h.history.messages == []
    h.take(h.conv.transcript(Transcript("four one five", True), h.now))
    got = h.silence(1.5)
    assert not h.of(Play)  # nothing of the draft ever played
    starts = [s for s in h.of(StartLlm, got) if isinstance(s, StartLlm)]
    assert starts
    assert starts[0].messages[-1].content == "my number is four one five"
    assert h.conv.drafts["discarded"] == 1


def test_a_drafts_tool_calls_wait_for_the_end_of_the_turn() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.6)
    got = speak_until_vad_end(h, "book me for monday")
    (start,) = h.of(StartLlm, got)
    assert isinstance(start, StartLlm)
    h.take(h.conv.llm_event(start.reply, ToolCall("c1", "book", {"day": "monday"}), h.now))
    early = h.take(h.conv.llm_done(start.reply, h.now))
    assert not h.of(RunTool, early)
    assert not h.of(RunTool)
    got = h.silence(0.5)
    runs = h.of(RunTool, got)
    assert len(runs) == 1
    assert h.history.messages[-1].tool_calls


def test_a_drafts_tool_call_never_runs_when_the_caller_goes_on() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.6)
    got = speak_until_vad_end(h, "book me for")
    (start,) = h.of(StartLlm, got)
    assert isinstance(start, StartLlm)
    h.take(h.conv.llm_event(start.reply, ToolCall("c1", "book", {"day": "?"}), h.now))
    h.take(h.conv.llm_done(start.reply, h.now))
    h.feed(tone(0.5))
    h.take(h.conv.transcript(Transcript("tuesday", True), h.now))
    got = h.silence(1.0)
    assert not h.of(RunTool)
    starts = [s for s in h.of(StartLlm, got) if isinstance(s, StartLlm)]
    assert len(starts) == 1
    assert starts[0].messages[-1].content == "book me for tuesday"
    assert [m.content for m in h.history.messages] == ["book me for tuesday"]


def test_a_changed_transcript_replaces_the_draft() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.6)
    got = speak_until_vad_end(h, "what time")
    (first,) = h.of(StartLlm, got)
    assert isinstance(first, StartLlm)
    # the recogniser's last words come late, with the caller silent
    got = h.take(h.conv.transcript(Transcript("do you open", True), h.now))
    assert h.of(CancelLlm, got)
    starts = [s for s in h.of(StartLlm, got) if isinstance(s, StartLlm)]
    assert len(starts) == 1
    assert starts[0].reply != first.reply
    assert starts[0].messages[-1].content == "what time do you open"
    assert [m.content for m in h.history.messages] == ["what time do you open"]
    assert h.conv.drafts == {"started": 2, "used": 0, "discarded": 1}


def test_a_failed_draft_is_dropped_and_the_reply_starts_at_the_endpoint() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.6)
    got = speak_until_vad_end(h, "hello")
    (start,) = h.of(StartLlm, got)
    assert isinstance(start, StartLlm)
    got = h.take(h.conv.llm_failed(start.reply, ServiceError("llm", "status_503"), h.now))
    assert not h.of(SpeakText, got)  # no apology for a draft nobody heard
    assert h.history.messages == []
    got = h.silence(0.5)
    starts = [s for s in h.of(StartLlm, got) if isinstance(s, StartLlm)]
    assert len(starts) == 1
    assert starts[0].reply != start.reply
    assert h.conv.errors == {"llm:status_503": 1}


def test_no_draft_when_the_policy_answers_at_once_or_without_a_final() -> None:
    h = Harness(VoiceConfig(preemptive=True), wait=0.05)
    speak_until_vad_end(h, "what are your hours?")
    h.silence(0.2)
    # the endpoint was 50 ms away: the ordinary reply started then, no draft
    assert h.conv.drafts["started"] == 0
    assert len(h.of(StartLlm)) == 1
    assert not h.conv.turns[-1].preemptive
    h2 = Harness(VoiceConfig(preemptive=True), wait=0.6)
    h2.silence(0.2)
    h2.feed(tone(0.8))
    h2.take(h2.conv.transcript(Transcript("book a", False), h2.now))
    h2.silence(0.3)
    assert h2.conv.drafts["started"] == 0  # interim words only: nothing stable to answer


def _stt_pcm(actions: list[Action]) -> np.ndarray:
    return np.concatenate([a.pcm for a in actions if isinstance(a, SttAudio)])


def test_without_agc_the_recogniser_hears_the_line_as_it_is() -> None:
    h = Harness(VoiceConfig(agc=False))
    assert h.conv.agc is None
    quiet = (tone(2.0).astype(np.float64) * 0.05).astype(np.int16)
    np.testing.assert_array_equal(_stt_pcm(h.feed(quiet)), quiet)


def test_agc_is_on_by_default_and_leaves_a_loud_caller_alone() -> None:
    h = Harness()
    assert h.conv.agc is not None
    loud = (tone(2.0).astype(np.float64) * 0.5).astype(np.int16)  # about -20 dBFS
    np.testing.assert_array_equal(_stt_pcm(h.feed(loud)), loud)
    assert h.conv.agc.gain_db == 0.0


def test_agc_lifts_a_quiet_caller_for_the_recogniser_and_the_vad() -> None:
    h = Harness()
    assert h.conv.agc is not None
    quiet = (tone(3.0).astype(np.float64) * 10 ** (-24 / 20)).astype(np.int16)
    h.silence(0.2)
    heard = _stt_pcm(h.feed(quiet))
    assert h.conv.agc.gain_db == pytest.approx(-26.0 - h.conv.agc.speech_level_dbfs, abs=0.5)
    assert h.conv.agc.gain_db > 10.0
    tail = slice(len(quiet) // 2, len(quiet))
    lift = 20 * np.log10(np.abs(heard[tail]).max() / np.abs(quiet[tail]).max())
    assert lift > 10.0
    assert h.conv.vad.active


def test_agc_holds_its_gain_while_the_reply_plays() -> None:
    h = Harness()
    _start, play = start_speaking(h, LONG)
    agc = h.conv.agc
    assert agc is not None
    gain, frames = agc.target_gain_db, agc.speech_frames
    # the reply's own echo, 15 dB down: never the caller's level
    echo = (play.pcm.astype(np.float64) * 10 ** (-15 / 20)).astype(np.int16)
    got = h.feed(np.concatenate([np.zeros(640, np.int16), echo]))
    assert agc.hold
    assert agc.target_gain_db == gain
    assert agc.speech_frames == frames
    assert not h.of(Clear, got)


def glide(seconds: float, start_hz: float, end_hz: float) -> np.ndarray:
    """A voiced sound whose pitch moves from ``start_hz`` to ``end_hz`` in its last 0.2 s."""
    n, tail = round(seconds * RATE), round(0.2 * RATE)
    f0 = np.concatenate([np.full(n - tail, start_hz), np.geomspace(start_hz, end_hz, tail)])
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    return np.round(8000 * x / np.abs(x).max()).astype(np.int16)


@dataclass
class ProsodicPolicy:
    """A turn policy that takes the pitch at the end of speech and records it."""

    hangover_ms: int = 200
    given: list[Prosody | None] = field(default_factory=list)

    def delay(self, text: str, prosody: Prosody | None = None) -> float:
        self.given.append(prosody)
        return 0.1


def ended(policy: object, end_hz: float, config: VoiceConfig | None = None) -> list[float]:
    """Seconds from the VAD's end of speech to the end of the turn, and what the policy got."""
    conv = Conversation(RATE, policy, History("You are a test."), config=config)  # type: ignore[arg-type]
    h = Harness()
    h.conv = conv
    h.silence(0.3)
    h.feed(glide(0.9, 150.0, end_hz))
    h.take(conv.transcript(Transcript("i need eggs", True, 0, 0.9), h.now))
    spoke_until = h.now
    for _ in range(100):
        got = h.silence(0.02)
        if h.of(StartLlm, got):
            return [h.now - spoke_until]
    raise AssertionError("the turn never ended")


PROSODY = VoiceConfig(prosody=True)


def test_the_policy_is_given_how_the_speech_ended() -> None:
    rising, falling = ProsodicPolicy(), ProsodicPolicy()
    ended(rising, 210.0, PROSODY)
    ended(falling, 100.0, PROSODY)
    up, down = rising.given[-1], falling.given[-1]
    assert up is not None
    assert down is not None
    assert up.final_pitch > 2.0, up
    assert down.final_pitch < -2.0, down
    off = ProsodicPolicy()
    ended(off, 210.0)  # off by default
    assert off.given
    assert set(off.given) == {None}


def test_a_plain_transcript_ending_rising_waits_longer_than_one_ending_falling() -> None:
    (rising,) = ended(TurnPolicy(), 210.0, PROSODY)
    (falling,) = ended(TurnPolicy(), 100.0, PROSODY)
    (unheard,) = ended(TurnPolicy(), 210.0)
    assert rising > falling + 0.2, (rising, falling)
    assert abs(unheard - rising) > 0.1, (unheard, rising)  # the pitch made the difference
