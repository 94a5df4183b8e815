"""Turn-taking: false cut-offs and end-of-turn delay of voxwire's TurnPolicy against
fixed-silence endpointing, on caller turns with pauses inside them.

python bench/turn_taking.py [--turns N] [--tune]

The corpus is synthesized with espeak-ng (:func:`voxwire.sim.speech.synthesize`, the
``espeakng-loader`` wheel) at 16 kHz: caller turns made of phrases, with pauses of
300-1200 ms inserted where callers pause (after a comma, a hesitation "um", between list
items and digit groups read out one by one, around "and then", and after a clause that
could have ended the turn), and a real end. Each turn has its own voice, speed, pitch and
pause lengths, drawn from a seed. Three splits share nothing: the policy's defaults were
tuned on the "tune" split (its own sentences, voices and seeds) and checked on the
"held-out" split; the "unseen" split was written after the policy was set and chose
nothing.

Scoring, per turn: :class:`voxwire.vad.Vad` runs over the audio in 20 ms frames. At each
``SpeechEnd`` (reported at the end of the frame that produced it) the transcript so far is
the words whose audio ended by then: an ideal recognizer with no lag and no errors (word
ends come from synthesizing each prefix of a phrase with the same voice). The policy gives
a delay; the agent would start at report time + delay, unless a ``SpeechStart`` is
reported first. A start before the end of the caller's last word is a false cut-off; the
first start after it gives the end-of-turn delay (start - end of the last word).
With ``prosodic`` scoring the policy also gets :func:`voxwire.voice.turns.prosody` of the
audio up to the speech end (the pitch movement at the end of the utterance), as a caller
that runs the pitch tracker on its own audio would.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voxwire.sim.speech import speech_bounds
from voxwire.vad import SpeechEnd, SpeechStart, Vad
from voxwire.voice.conversation import VoiceConfig
from voxwire.voice.turns import Prosody, TurnPolicy, prosody

__all__ = [
    "HELD_OUT",
    "RATE",
    "TUNE",
    "UNSEEN",
    "FixedSilence",
    "Policy",
    "Score",
    "Split",
    "Turn",
    "TurnResult",
    "build",
    "cost",
    "main",
    "score",
    "score_turn",
    "table",
    "transcript",
    "tune",
]

RATE = 16000
FRAME_MS = 20
PAUSE_S = (0.3, 1.2)
PREEMPTIVE_MIN_WAIT = VoiceConfig().preemptive_min_wait
PREEMPTIVE_MAX_WAIT = VoiceConfig().preemptive_max_wait
LEAD_S = 0.6
TAIL_S = 3.0
SNR_DB = 35.0

PCM = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Split:
    """One part of the corpus: the sentences, voices and seed it draws from."""

    name: str
    scripts: tuple[str, ...]
    languages: tuple[str, ...]
    variants: tuple[str, ...]
    seed: int


# "|" marks a pause. Words keep the punctuation a punctuating recognizer would give them.
TUNE = Split(
    "tune",
    (
        "I'd like to book a table for, | um, | four people tonight.",
        "My number is five five five, | one two three, | four five six seven.",
        "I need eggs, | milk, | bread, | and some butter.",
        "I went to the pharmacy | and then | they told me to call you.",
        "Can you tell me, | uh, | when the pharmacy closes today?",
        "The address is | twelve | Baker Street, | in London.",
        "My account number is four seven, | two nine, | one eight three.",
        "I want to change my flight | because | the meeting moved to Friday.",
        "So | the thing is, | my card was declined twice.",
        "Um, | I think | it was last Tuesday.",
        "Could you check the order for | uh | the blue jacket and the shoes?",
        "It's the | the second one on the list.",
        "I'd like the chicken, | a side salad, | and a lemonade.",
        "Yes, | that's right.",
        "I'm calling about my bill | and | I have a question about a charge.",
        "We'll be arriving on the | fifteenth of June.",
        "I ordered it on Monday, | but it still hasn't arrived.",
        "Okay so | first | I pressed the reset button, | and then | nothing happened.",
        "What time do you close tonight?",
        "I'd like to cancel my subscription.",
        "The reference is | seven seven two | nine four one | zero zero five five.",
        "Is it possible to | reschedule for next week?",
        "My date of birth is the | third of | March, | nineteen eighty five.",
        "Hmm, | I'm not sure, | let me check.",
    ),
    ("en-us", "en", "en-gb-x-rp"),
    ("m1", "m3", "m5", "f1", "f3", "klatt", "iven", "steph"),
    101,
)
HELD_OUT = Split(
    "held-out",
    (
        "Could I get a large pizza with | mushrooms, | peppers, | and olives?",
        "My card number is four one one one, | two two two two, | "
        "three three three three, | four four four four.",
        "I was wondering if | maybe | you could send it again?",
        "No, | I don't think so.",
        "I need to speak to someone in | billing, | please.",
        "Well, | let me think, | maybe around six thirty?",
        "Send it to my | work address | if that's okay.",
        "The problem started | when I | updated the app yesterday.",
        "I need a taxi to the airport | at | around seven tomorrow morning.",
        "And also, | um, | can you add my wife to the booking?",
        "It keeps making this | sort of | clicking noise.",
        "Could you repeat the | last part?",
        "I'll take two of the | small ones | and one large.",
        "The code they sent me is | three eight | one one | five two.",
        "That's all, thank you.",
        "My postcode is | two one oh | four five.",
        "We booked a room for | two nights, | but we only need one.",
        "The delivery was supposed to come at | uh | around noon.",
        "Can you put me through to the | manager?",
        "I paid with my | credit card | and it was charged twice.",
        "Please call me back on | oh seven seven | nine eight | six five four three two.",
        "I have a dentist appointment on | Thursday | and I need to move it.",
        "Where is my nearest branch?",
        "Er, | yes, | I think that's everything.",
    ),
    ("en-gb-scotland", "en-029", "en-us-nyc"),
    ("m2", "m4", "m6", "m7", "f2", "f4", "f5", "klatt3", "linda", "robert", "paul", "zac"),
    202,
)


# Written after the policy's prosody weights were set on the tune split and checked on the
# held-out split: its sentences, voices and seed were never used to choose anything.
UNSEEN = Split(
    "unseen",
    (
        "I'd like to order | uh | two large coffees, | please.",
        "My phone number is | oh one six one, | four nine six, | two two one three.",
        "Can you tell me if | the store | is open on Sunday?",
        "I bought a kettle last week | and | it stopped working.",
        "We need | towels, | soap, | and a hair dryer.",
        "Um, | I'm not really sure what | the problem is.",
        "The booking reference is | four four nine | seven one two.",
        "Could you send someone to | fix the heating?",
        "I called yesterday | but | nobody answered.",
        "Yeah, | that works for me.",
        "I'd like to pay | the rest of | the invoice today.",
        "My flight lands at | nine fifteen | in the morning.",
        "How much is | a return ticket | to Leeds?",
        "No thanks, | that's everything.",
        "So | basically | the screen keeps going black.",
        "I live at | forty two | Elm Road.",
        "The parcel was left outside | and it got wet.",
        "Is there a table free for | er | six people tomorrow?",
        "I want to upgrade my plan.",
        "Hmm, | let me see, | I think it was | the twentieth.",
        "Can I change the delivery address | to | my office?",
        "My son | and | my daughter both need a check-up.",
        "The meter reading is | three one five | eight.",
        "Thanks, | that's really helpful.",
    ),
    ("en-gb-x-gbclan", "en-gb-x-gbcwmd"),
    ("m8", "klatt2", "klatt4", "iven2", "steph2", "adam", "benjamin", "caleb", "david", "ed"),
    303,
)


@dataclass(frozen=True)
class Turn:
    """One caller turn and its truth.

    Attributes
    ----------
    audio : numpy.ndarray of int16
        The turn at :data:`RATE`, silence before and after it.
    words : tuple of (str, float)
        Each word as a punctuating recognizer writes it, with the time its audio ends.
    phrases : tuple of (float, float)
        Start and end of each stretch of speech between inserted pauses, in seconds.
    script : str
        The text, pauses marked with ``|``.
    voice : str
        The espeak-ng voice, speed and pitch it was spoken with.
    """

    audio: PCM
    words: tuple[tuple[str, float], ...]
    phrases: tuple[tuple[float, float], ...]
    script: str
    voice: str

    @property
    def end(self) -> float:
        """End of the last word, in seconds."""
        return self.phrases[-1][1]

    @property
    def pauses(self) -> int:
        """Pauses inserted inside the turn."""
        return len(self.phrases) - 1


class Policy(Protocol):
    """What the scoring needs of a policy (:class:`TurnPolicy` fits)."""

    @property
    def hangover_ms(self) -> int: ...

    def delay(self, text: str, prosody: Prosody | None = None) -> float: ...


@dataclass(frozen=True)
class FixedSilence:
    """Plain VAD endpointing: the turn ends after ``silence`` seconds without speech,
    whatever was said (``hangover_ms`` of it inside the detector, the rest after)."""

    silence: float
    hangover_ms: int = 200

    def delay(self, text: str, prosody: Prosody | None = None) -> float:
        return max(0.0, self.silence - self.hangover_ms / 1000.0)


# --- corpus --------------------------------------------------------------------------------


def _words_of(phrase: str) -> list[str]:
    return phrase.split()


def _spoken(words: Iterable[str]) -> str:
    """A prefix of a phrase as espeak-ng should say it: no final punctuation, which
    would add a pause of its own before the trim."""
    return " ".join(words).rstrip(",.;:?!")


def _noise(n: int, rng: np.random.Generator, level: float) -> npt.NDArray[np.float64]:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / RATE)
    spec *= 1.0 / np.sqrt(np.maximum(f, 50.0))  # pink above 50 Hz
    x = np.fft.irfft(spec, n)
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    out: npt.NDArray[np.float64] = x * (level / rms)
    return out


def _make_turn(
    script: str,
    synth: Callable[[str, str, int, int, int], PCM],
    voice: str,
    wpm: int,
    pitch: int,
    rng: np.random.Generator,
) -> tuple[list[PCM], list[list[tuple[str, float]]], list[float]]:
    phrases = [p.strip() for p in script.split("|")]
    audio: list[PCM] = []
    word_ends: list[list[tuple[str, float]]] = []
    for phrase in phrases:
        seed = int(rng.integers(1, 2**31))
        pcm = synth(phrase, voice, wpm, pitch, seed)
        audio.append(pcm)
        word_ends.append([(w, 0.0) for w in _words_of(phrase)])
    pauses = [float(rng.uniform(*PAUSE_S)) for _ in phrases[1:]]
    return audio, word_ends, pauses


def build(
    split: Split,
    turns: int,
    *,
    synth: Callable[[str, str, int, int, int], PCM] | None = None,
) -> list[Turn]:
    """``turns`` caller turns of ``split``, reproducible from its seed.

    Each script is used in turn (so every sentence appears about equally often), each time
    with a new voice, speed (135-200 words per minute), pitch and pause lengths.
    ``synth(text, voice, wpm, pitch, seed)`` gives mono PCM16 at :data:`RATE`, trimmed;
    the default is espeak-ng through :func:`voxwire.sim.speech.synthesize`.
    """
    if synth is None:
        from voxwire.sim.speech import synthesize

        def synth(text: str, voice: str, wpm: int, pitch: int, seed: int) -> PCM:
            return synthesize(text, RATE, voice=voice, wpm=wpm, pitch=pitch, seed=seed)

    rng = np.random.default_rng(split.seed)
    drafts = []
    # First every phrase (the audio), then every word end: espeak-ng keeps state from one
    # utterance to the next, so a fixed order keeps the audio the same from run to run.
    for i in range(turns):
        script = split.scripts[i % len(split.scripts)]
        language = split.languages[int(rng.integers(len(split.languages)))]
        variant = split.variants[int(rng.integers(len(split.variants)))]
        voice = f"{language}+{variant}"
        wpm = int(rng.integers(135, 201))
        pitch = int(rng.integers(30, 71))
        audio, words, pauses = _make_turn(script, synth, voice, wpm, pitch, rng)
        noise_seed = int(rng.integers(1, 2**31))
        drafts.append((script, voice, wpm, pitch, audio, words, pauses, noise_seed))
    out: list[Turn] = []
    for script, voice, wpm, pitch, audio, words, pauses, noise_seed in drafts:
        timed: list[list[tuple[str, float]]] = []
        for pcm, phrase_words in zip(audio, words, strict=True):
            _, length = speech_bounds(pcm, RATE)
            ends: list[tuple[str, float]] = []
            last = 0.0
            for k, (word, _) in enumerate(phrase_words):
                if k == len(phrase_words) - 1:
                    end = length
                else:
                    prefix = _spoken(w for w, _ in phrase_words[: k + 1])
                    end = (
                        speech_bounds(synth(prefix, voice, wpm, pitch, 1), RATE)[1] if prefix else 0
                    )
                last = min(length, max(last, end))
                ends.append((word, last / RATE))
            timed.append(ends)
        out.append(
            _assemble(script, f"{voice} {wpm} wpm p{pitch}", audio, timed, pauses, noise_seed)
        )
    return out


def _assemble(
    script: str,
    voice: str,
    audio: Sequence[PCM],
    words: Sequence[Sequence[tuple[str, float]]],
    pauses: Sequence[float],
    noise_seed: int,
) -> Turn:
    parts: list[npt.NDArray[np.float64]] = [np.zeros(round(LEAD_S * RATE))]
    pos = len(parts[0])
    phrases: list[tuple[float, float]] = []
    timed: list[tuple[str, float]] = []
    for i, pcm in enumerate(audio):
        if i:
            gap = round(pauses[i - 1] * RATE)
            parts.append(np.zeros(gap))
            pos += gap
        first, last = speech_bounds(pcm, RATE)
        start = pos / RATE
        parts.append(pcm.astype(np.float64))
        pos += len(pcm)
        phrases.append((start + first / RATE, start + last / RATE))
        timed += [(w, start + t) for w, t in words[i]]
    parts.append(np.zeros(round(TAIL_S * RATE)))
    x = np.concatenate(parts)
    x = np.concatenate([x, np.zeros(-len(x) % (RATE * FRAME_MS // 1000))])
    speech = np.concatenate([p.astype(np.float64) for p in audio])
    level = float(np.sqrt(np.mean(speech * speech))) * 10 ** (-SNR_DB / 20)
    x += _noise(len(x), np.random.default_rng(noise_seed), level)
    pcm16 = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return Turn(pcm16, tuple(timed), tuple(phrases), script, voice)


# --- scoring -------------------------------------------------------------------------------


def transcript(turn: Turn, at: float, *, punctuated: bool) -> str:
    """The words of ``turn`` whose audio ended by ``at`` (an ideal recognizer): as a
    punctuating recognizer writes them, or lowercase without punctuation (as pocketsphinx
    gives them)."""
    words = [w for w, end in turn.words if end <= at]
    if punctuated:
        return " ".join(words)
    plain = (w.lower().strip(',.;:?!"') for w in words)
    return " ".join(w for w in plain if w)


@dataclass(frozen=True)
class TurnResult:
    """How one turn went: the agent's false starts and when it finally started."""

    cut_offs: int
    delay: float | None  # end-of-turn delay in seconds; None if it never started
    # preemptive replies (VoiceConfig(preemptive=True)): a draft starts at each speech
    # end whose policy wait is at least PREEMPTIVE_MIN_WAIT; the caller going on throws it
    # away; the last one, when the agent starts on it, answered the turn
    drafts: int = 0
    wasted: int = 0
    answered_by_draft: bool = False
    hidden: float = 0.0  # the policy wait of that draft: time the services run in


def score_turn(
    turn: Turn,
    policy: Policy,
    *,
    punctuated: bool = True,
    prosodic: bool = False,
    vad: Vad | None = None,
) -> TurnResult:
    """Run the detector over ``turn`` and the policy at each speech end (module docstring);
    ``prosodic``: give the policy the pitch movement at each speech end too."""
    if vad is None:
        vad = Vad(RATE, FRAME_MS, hangover_ms=policy.hangover_ms)
    else:
        vad.reset()
    frame_s = FRAME_MS / 1000.0
    events = vad.process_batch(turn.audio).events
    starts: list[float] = []
    pending: float | None = None
    drafted = False  # the pending start has a draft behind it
    wait = 0.0
    drafts = wasted = 0
    answered_by_draft = False
    hidden = 0.0
    for event in events:
        reported = (event.frame + 1) * frame_s
        if isinstance(event, SpeechStart):
            if pending is not None and pending <= reported:
                starts.append(pending)
                if not answered_by_draft and drafted and pending >= turn.end:
                    answered_by_draft, hidden = True, wait
            elif pending is not None and drafted:
                wasted += 1
            pending = None
        elif isinstance(event, SpeechEnd):
            text = transcript(turn, reported, punctuated=punctuated)
            if prosodic:
                wait = policy.delay(text, prosody(turn.audio[: event.sample], RATE))
            else:
                wait = policy.delay(text)
            pending = reported + wait
            drafted = bool(text) and PREEMPTIVE_MIN_WAIT <= wait <= PREEMPTIVE_MAX_WAIT
            drafts += drafted
    if pending is not None:
        starts.append(pending)
        if not answered_by_draft and drafted and pending >= turn.end:
            answered_by_draft, hidden = True, wait
    end = turn.end
    cut_offs = sum(1 for t in starts if t < end)
    after = [t - end for t in starts if t >= end]
    return TurnResult(
        cut_offs, after[0] if after else None, drafts, wasted, answered_by_draft, hidden
    )


@dataclass(frozen=True)
class Score:
    """A policy over many turns."""

    turns: int
    cut_turns: int  # turns with at least one false cut-off
    cut_offs: int
    pauses: int
    delays: tuple[float, ...]
    drafts: int = 0
    wasted: int = 0
    hidden: tuple[float, ...] = ()  # per turn answered by a draft: the wait it ran in

    @property
    def cut_rate(self) -> float:
        """Share of turns the agent cut into at least once."""
        return self.cut_turns / self.turns if self.turns else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.delays) if self.delays else float("nan")

    @property
    def p90(self) -> float:
        return float(np.percentile(self.delays, 90)) if self.delays else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.delays, 95)) if self.delays else float("nan")


def score(
    turns: Sequence[Turn], policy: Policy, *, punctuated: bool = True, prosodic: bool = False
) -> Score:
    """Score ``policy`` on every turn."""
    vad = Vad(RATE, FRAME_MS, hangover_ms=policy.hangover_ms)
    results = [
        score_turn(t, policy, punctuated=punctuated, prosodic=prosodic, vad=vad) for t in turns
    ]
    return Score(
        turns=len(turns),
        cut_turns=sum(1 for r in results if r.cut_offs),
        cut_offs=sum(r.cut_offs for r in results),
        pauses=sum(t.pauses for t in turns),
        delays=tuple(r.delay for r in results if r.delay is not None),
        drafts=sum(r.drafts for r in results),
        wasted=sum(r.wasted for r in results),
        hidden=tuple(r.hidden for r in results if r.answered_by_draft),
    )


def tune(
    turns: Sequence[Turn],
    *,
    punctuated: bool = True,
    prosodic: bool = False,
    max_cut_rate: float = 0.025,
    min_delays: Iterable[float] = (0.0, 0.05, 0.1),
    max_delays: Iterable[float] = (1.1, 1.2, 1.3, 1.4, 1.5),
    hangovers: Iterable[int] = (160, 180, 200, 220, 240),
) -> list[tuple[TurnPolicy, Score]]:
    """Every setting of the grid, best first: those within ``max_cut_rate`` by median
    end-of-turn delay, then the rest by cut-off rate."""
    rows = []
    for low, high, hang in itertools.product(min_delays, max_delays, hangovers):
        policy = TurnPolicy(low, high, hang)
        rows.append((policy, score(turns, policy, punctuated=punctuated, prosodic=prosodic)))

    def key(row: tuple[TurnPolicy, Score]) -> tuple[int, float, float]:
        s = row[1]
        ok = s.cut_rate <= max_cut_rate
        return (0, s.median, s.cut_rate) if ok else (1, s.cut_rate, s.median)

    return sorted(rows, key=key)


def table(turns: Sequence[Turn], policy: TurnPolicy | None = None) -> list[list[str]]:
    """The comparison rows: voxwire with punctuated text, with plain text and the pitch at
    each speech end, with plain text alone, and plain VAD endpointing at 200, 550 and
    800 ms of silence."""
    voxwire = policy if policy is not None else TurnPolicy()
    rows = []
    entries: list[tuple[str, Policy, bool, bool]] = [
        (f"voxwire TurnPolicy, punctuated text ({voxwire!r})", voxwire, True, False),
        ("voxwire TurnPolicy, plain lowercase text + prosody", voxwire, False, True),
        ("voxwire TurnPolicy, plain lowercase text alone", voxwire, False, False),
        (
            "VAD + 200 ms silence (pipecat's stop_secs with turn strategies)",
            FixedSilence(0.2),
            True,
            False,
        ),
        (
            "VAD + 550 ms silence (LiveKit's Silero min_silence_duration)",
            FixedSilence(0.55),
            True,
            False,
        ),
        ("VAD + 800 ms silence (pipecat's VADParams stop_secs)", FixedSilence(0.8), True, False),
    ]
    for name, pol, punctuated, prosodic in entries:
        s = score(turns, pol, punctuated=punctuated, prosodic=prosodic)
        rows.append(
            [
                name,
                f"{100 * s.cut_rate:.1f}% ({s.cut_turns}/{s.turns})",
                f"{s.cut_offs}/{s.pauses}",
                f"{1000 * s.median:.0f}",
                f"{1000 * s.p95:.0f}",
            ]
        )
    return rows


def preemptive_table(turns: Sequence[Turn], policy: TurnPolicy | None = None) -> list[list[str]]:
    """What preemptive replies would do on ``turns``: drafts started and thrown away per
    turn, and the turns a draft answered with the wait the services could run in."""
    voxwire = policy if policy is not None else TurnPolicy()
    rows = []
    variants = (
        ("punctuated text", True, False),
        ("plain lowercase text + prosody", False, True),
        ("plain lowercase text alone", False, False),
    )
    for name, punctuated, prosodic in variants:
        s = score(turns, voxwire, punctuated=punctuated, prosodic=prosodic)
        n = max(1, s.turns)
        hidden = f"{1000 * statistics.median(s.hidden):.0f}" if s.hidden else "-"
        rows.append(
            [
                name,
                f"{s.drafts / n:.2f}",
                f"{s.wasted / n:.2f}",
                f"{100 * len(s.hidden) / n:.0f}%",
                hidden,
            ]
        )
    return rows


def cost(turns: Sequence[Turn], policy: TurnPolicy | None = None) -> tuple[float, float]:
    """Microseconds per speech end of :func:`~voxwire.voice.turns.prosody` and of
    ``policy.completeness(text, prosody)``, over every speech end of ``turns``."""
    voxwire = policy if policy is not None else TurnPolicy()
    cases: list[tuple[PCM, str]] = []
    vad = Vad(RATE, FRAME_MS, hangover_ms=voxwire.hangover_ms)
    for turn in turns:
        vad.reset()
        for event in vad.process_batch(turn.audio).events:
            if isinstance(event, SpeechEnd):
                reported = (event.frame + 1) * FRAME_MS / 1000.0
                text = transcript(turn, reported, punctuated=False)
                cases.append((turn.audio[: event.sample], text))
    if not cases:
        return float("nan"), float("nan")
    t0 = time.perf_counter()
    cues = [prosody(pcm, RATE) for pcm, _ in cases]
    t1 = time.perf_counter()
    for (_, text), cue in zip(cases, cues, strict=True):
        voxwire.completeness(text, cue)
    t2 = time.perf_counter()
    return 1e6 * (t1 - t0) / len(cases), 1e6 * (t2 - t1) / len(cases)


def _print(rows: list[list[str]], header: list[str]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=240, help="turns per split (default 240)")
    parser.add_argument(
        "--tune", action="store_true", help="also search the policy grid on the tune split"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    tune_turns = build(TUNE, args.turns)
    held = build(HELD_OUT, args.turns)
    unseen = build(UNSEEN, args.turns)
    built = time.perf_counter() - t0
    header = [
        "endpointing",
        "turns cut off",
        "cut-offs / pauses",
        "median delay (ms)",
        "p95 delay (ms)",
    ]
    print(
        f"{len(held)} held-out turns ({sum(t.pauses for t in held)} inner pauses of "
        f"{int(PAUSE_S[0] * 1000)}-{int(PAUSE_S[1] * 1000)} ms), espeak-ng at {RATE} Hz, "
        f"pink noise {SNR_DB:.0f} dB below the speech; voxwire.Vad in {FRAME_MS} ms frames. "
        "Transcripts: an ideal recognizer (every word whose audio ended, no lag, no errors). "
        "Delay: agent start - end of the caller's last word."
    )
    print()
    _print(table(held), header)
    print()
    print(
        "Preemptive replies (VoiceConfig(preemptive=True), held-out split): a draft reply "
        f"starts at each speech end whose policy wait is {PREEMPTIVE_MIN_WAIT:.2f}-"
        f"{PREEMPTIVE_MAX_WAIT:.2f} s; "
        "the caller going on throws it away."
    )
    print()
    _print(
        preemptive_table(held),
        [
            "transcripts",
            "drafts / turn",
            "thrown away / turn",
            "turns answered by a draft",
            "median wait they ran in (ms)",
        ],
    )
    print()
    print(
        f"The unseen split ({len(unseen)} turns, {sum(t.pauses for t in unseen)} inner pauses), "
        "same settings:"
    )
    print()
    _print(table(unseen), header)
    print()
    print(f"The tune split ({len(tune_turns)} turns), same settings:")
    print()
    _print(table(tune_turns), header)
    if args.tune:
        for label, punctuated, prosodic in (
            ("punctuated text", True, False),
            ("plain text + prosody", False, True),
        ):
            print()
            print(f"Grid on the tune split, {label} (best 8):")
            print()
            best = tune(tune_turns, punctuated=punctuated, prosodic=prosodic)[:8]
            _print(
                [
                    [
                        repr(p),
                        f"{100 * s.cut_rate:.1f}%",
                        f"{1000 * s.median:.0f}",
                        f"{1000 * s.p95:.0f}",
                    ]
                    for p, s in best
                ],
                ["policy", "turns cut off", "median (ms)", "p95 (ms)"],
            )
    pitch_us, text_us = cost(held)
    print()
    print(
        f"Cost per speech end (held-out split): prosody() {pitch_us:.0f} us, "
        f"completeness(text, prosody) {text_us:.0f} us."
    )
    print()
    print(f"(corpus built in {built:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
