"""When the caller's turn is over: an end-of-turn delay from the words said so far.

The voice activity detector says when speech stops; it cannot say whether the caller
stopped or only paused ("my number is five five five, ..." / "I'd like, um, ..."). The
transcript can: a turn that ends on "and", "um", "the", "to", a preposition, a list with a
trailing comma or a number read out digit by digit is not over, while a question or a
whole sentence usually is. :class:`TurnPolicy` turns the transcript so far into how much
longer to wait.

>>> from voxwire.voice.turns import Prosody, TurnPolicy
>>> policy = TurnPolicy()
>>> policy.delay("Can you move my appointment to Friday?") == policy.min_delay
True
>>> policy.delay("my number is five five five") > 0.5
True
>>> round(policy.completeness("I'd like to book a table for,"), 2)
0.05
>>> falling, rising = Prosody(-2.0, 0.8), Prosody(0.5, 0.8)
>>> policy.delay("i went to the pharmacy", falling) < 0.25
True
>>> policy.delay("i went to the pharmacy", rising) > 1.2
True

The rule
--------
The conversation core creates its detector with this policy's hangover,
``voxwire.Vad(rate, hangover_ms=policy.hangover_ms)``. When the detector reports
:class:`~voxwire.vad.SpeechEnd` (``hangover_ms`` after the last speech frame, at the end of
the frame that produced the event) it takes the latest transcript text and waits::

    delay = min_delay + (max_delay - min_delay) * (1 - completeness(text))

seconds more; if no :class:`~voxwire.vad.SpeechStart` comes first, the caller's turn
ends then. In terms of the event's own timestamp the turn ends at
``SpeechEnd.time + policy.silence(text)``. The policy is a pure function of the text, so
the deadline may be worked out again whenever a newer transcript arrives.

``completeness(text)`` is a score in [0, 1] from the end of the text alone (the last
160 characters; closing quotes and brackets ignored):

* a final ``?`` or ``!``: 1. A final ``.``: 0.9, except after a word that cannot end a
  sentence (a hesitation, conjunction, article or preposition: "the.", "um."), where
  it adds only 0.1 to that word's score;
* a trailing ``,`` ``;`` ``:`` or dash: at most 0.05; a trailing ellipsis: at most 0.2;
* otherwise the last words decide:

  - hesitations (um, uh, er, hmm): 0;
  - conjunctions (and, or, but, so, because, if, ...; "then" after "and" / "so"),
    articles and possessives (the, a, my, your, ...), prepositions (to, for, with, of,
    at, ...): 0.05 ("like" and "as": 0.2); "so" after "think", "hope", ...: 0.8;
  - "first", "also", "actually", ..., and "well", "now", "look" as the whole text: 0.15;
  - contractions that need more ("it's", "I'm", "that's", "I'd"): 0.1;
  - "is", "was", "have", "can", ... : 0.1 ("my number is"), 0.6 after a pronoun
    ("yes it is");
  - a subject pronoun (I, we, they, he, she): 0.1; a verb waiting for its object after
    one ("I want", "I'd like", "I think", "I mean"): 0.2; "tell me", "let me", ...: 0.2;
  - "point", "hundred", "thousand", "double": 0.1;
  - a run of digits read one by one ("five five five", "555"): 0.1, unless it has the
    length of a whole phone, card or account number (7, 10, 11 or 16 digits): 0.7; one
    number alone ("for four", "is twelve"): 0.5;
  - short answers and closings ("yes", "no thanks", "that's all", "thank you"): 0.95;
  - any other word ends a plausible sentence: 0.7 when the transcript carries no
    punctuation and no capitals (a recognizer that never punctuates, as pocketsphinx),
    0.25 when it does (a punctuating recognizer that has put no full stop there is
    saying that the sentence goes on);

* an empty transcript (the recognizer has not caught up): 0.5.

Prosody
-------
Plain text (no punctuation, no capitals: pocketsphinx and many streaming recognizers)
cannot tell "i went to the pharmacy" finished from "i went to the pharmacy [pause] and
then ...". The voice often can: a statement said to its end falls in pitch, a list item,
a clause with more to come or a hesitation stays level or rises. :func:`prosody` measures
that from the last 400 ms of audio before the speech end (a few dozen numpy calls per
speech end), and ``completeness(text, prosody)`` weighs it in, on plain text only (a
punctuating recognizer has heard the prosody already):

* words that say the turn goes on (a score under 0.25 above: "and", "um", "the", ...)
  keep their score whatever the voice does;
* any other text is weighed by how far the pitch of its last two voiced frames lies below
  the median of the 400 ms: a fall of 1.5 semitones or more gives 0.85, a fall of 0.5
  semitone or less (a level or rising end) gives 0.05, linear between; a question ("can
  you ...", "what time ...") gives 0.85 either way (questions end rising as often as
  falling);
* a number said falling is a group of digits read out ("seven seven two [pause] nine four
  one"): 0.1, as digits; said rising it keeps its text score;
* an end too little voiced to tell (``Prosody.known`` false) leaves the text's score.

The scores and the defaults (``min_delay``, ``max_delay``, ``hangover_ms``) were tuned
on a labelled corpus of synthetic caller turns with pauses inside them;
``python bench/turn_taking.py`` measures false cut-offs and end-of-turn delay on a
held-out part of it, side by side with fixed-silence endpointing (``docs/turn-taking.md``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["Prosody", "TurnPolicy", "prosody"]


def _words(text: str) -> frozenset[str]:
    """The words of ``text``, split at whitespace."""
    return frozenset(text.split())


_FILLERS: Final = _words("um umm uh uhh uhm er erm hmm hm mm mmm ah eh")
_CONJUNCTIONS: Final = _words(
    """
    and or but so because cause cuz if nor plus whereas although though while unless
    """
)
_DETERMINERS: Final = _words(
    """
    the a an my your his her our their its some any every each another either neither
    """
)
_PREPOSITIONS: Final = _words(
    """
    to of in on at for with from by about into onto over under between through after before
    during without within against towards toward among around near than via per like as
    until till
    """
)
_AUXILIARIES: Final = _words(
    """
    is are was were am be been being will would can could should shall may might must have
    has had do does did get got
    """
)
_PRONOUNS: Final = _words("i you we they he she it that there this who")
_OPEN_CONTRACTIONS: Final = _words(
    """
    it's that's there's i'm you're we're they're he's she's what's i've you've we've they've
    i'll you'll we'll they'll i'd you'd we'd they'd let's here's where's who's how's
    """
)
_WANTING: Final = _words(
    """
    want wanna need needs like gonna wondering think mean guess said says hoping trying
    """
)
_SUBJECTS: Final = _words("i we they he she")
_CLOSINGS: Final = _words(
    """
    yes yeah yep yup no nope nah okay ok sure right correct exactly thanks please bye
    goodbye perfect great fine alright absolutely definitely
    """
)
_CLOSING_PAIRS: Final = frozenset(
    (
        "thank you",
        "that's all",
        "that's it",
        "that's right",
        "that's correct",
        "that's fine",
        "no thanks",
        "yes please",
        "all good",
        "go ahead",
        "sounds good",
        "not really",
        "of course",
    )
)
_DIGITS: Final = _words("zero oh o one two three four five six seven eight nine")
_NUMBERS: Final = _words(
    """
    ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty
    thirty forty fifty sixty seventy eighty ninety
    """
)
_NUMBER_WAITS: Final = _words("point hundred thousand million double triple dot")
_WHOLE_NUMBER_LENGTHS: Final = frozenset({7, 10, 11, 16})

_TELLING: Final = _words("tell give show send let ask")
_SO_ENDS: Final = _words("think hope guess believe suppose expect say said do did not so")
_DISCOURSE: Final = _words("first firstly secondly also actually basically")
_OPENERS: Final = frozenset(["well", "now", "see", "look", "listen"])  # as the whole turn
_OPEN_WORD_PUNCTUATED: Final = 0.25
_OPEN_WORD_PLAIN: Final = 0.7

_WH: Final = _words("what when where why how which who whose whom")
_QUESTION_AUX: Final = _words(
    "can could would will is are was were do does did may might should shall have has"
)
_LEADERS: Final = (
    _FILLERS | _CONJUNCTIONS | _DISCOURSE | _OPENERS | _words("okay ok then please sorry hi hello")
)
_ASKED: Final = _words("you i we it there he she they someone anyone somebody anybody this that")

# Weighing plain text with the pitch at its end (``_with_prosody``): a final pitch at or
# below _FALL_AT semitones is a sure fall, at or above _RISE_AT a sure level or rising end,
# linear between. Tuned on the tune split of bench/turn_taking.py.
_FALL_AT: Final = -1.5
_RISE_AT: Final = -0.5
_FALL: Final = 0.85  # a text that could end, said falling
_RISE: Final = 0.05  # ... said level or rising: a list item, a clause with more to come
_QUESTION_RISE: Final = 0.85  # a question said rising: asked (as often as said falling)
_DIGITS_FALL: Final = 0.1  # a number short of a whole one, said falling

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_TAIL: Final = 160  # characters of the text's end that decide


# --- prosody -------------------------------------------------------------------------------

_PITCH_RATE: Final = 8000  # the pitch tracker's working rate (audio is decimated to it)
_PITCH_WINDOW_S: Final = 0.4  # audio before the speech end that is analysed
_PITCH_FRAME: Final = 320  # 40 ms frames at 8 kHz (two periods of a 50 Hz voice)
_PITCH_HOP: Final = 160  # every 20 ms
_PITCH_LAGS: Final = (_PITCH_RATE // 400, _PITCH_RATE // 60)  # 60-400 Hz
_VOICED: Final = 0.5  # normalised autocorrelation peak of a voiced frame
_FINAL_FRAMES: Final = 2  # the last voiced frames that give the final pitch
_FINAL_SPAN: Final = 10  # ... when they lie within the last 200 ms of the window
_MAX_SAMPLES: Final = 1 << 24


@functools.cache
def _window_terms() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The Hann window and its own autocorrelation (to undo its taper at each lag)."""
    window = np.hanning(_PITCH_FRAME)
    spectrum = np.fft.rfft(window, 2 * _PITCH_FRAME)
    own = np.fft.irfft(np.abs(spectrum) ** 2)[:_PITCH_FRAME]
    return window, np.maximum(own / own[0], 1e-3)


@dataclass(frozen=True, slots=True)
class Prosody:
    """How an utterance ended, from its audio (:func:`prosody`).

    Attributes
    ----------
    final_pitch : float
        The pitch of the last two voiced 40 ms frames (20 ms apart, within the last
        200 ms) against the median pitch of the 400 ms before the speech end, in
        semitones: negative for a final fall (a statement said to its end), around
        zero or positive for a level or rising end (a list item, "um", a comma, a
        question). ``nan`` when too little of the end
        was voiced to tell.
    voiced : float
        Share of voiced 10 ms steps in the analysed 400 ms, in [0, 1].
    """

    final_pitch: float
    voiced: float

    @property
    def known(self) -> bool:
        """Whether the end was voiced enough for :attr:`final_pitch` to mean anything."""
        return math.isfinite(self.final_pitch)


_UNKNOWN: Final = Prosody(math.nan, 0.0)


def prosody(pcm: npt.NDArray[np.int16], rate: int) -> Prosody:
    """The pitch movement at the end of ``pcm``: mono PCM16 at ``rate`` that ends where
    the speech ended (``SpeechEnd.sample``); only its last 400 ms are read.

    The pitch comes from the normalised autocorrelation of 40 ms Hann frames every
    20 ms at 8 kHz (the audio is averaged down to it), 60 to 400 Hz; a frame is voiced
    when its peak reaches 0.5 and it is within 30 dB of the loudest. A few dozen numpy
    calls on 17 frames; ``bench/turn_taking.py`` prints the cost per speech end.

    Raises
    ------
    TypeError
        If ``pcm`` is not an int16 array or ``rate`` not an int.
    ValueError
        If ``rate`` is not a multiple of 8000 up to 48000 or ``pcm`` is not 1-D.
    """
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise TypeError(f"prosody: rate must be an int, got {type(rate).__name__}")
    if rate % _PITCH_RATE or not _PITCH_RATE <= rate <= 48000:
        raise ValueError(f"prosody: rate must be 8000, 16000, 24000, 32000 or 48000, got {rate}")
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError("prosody: pcm must be an int16 numpy array")
    if pcm.ndim != 1:
        raise ValueError(f"prosody: pcm must be 1-D, got {pcm.ndim} dimensions")
    step = rate // _PITCH_RATE
    x = pcm[-round(_PITCH_WINDOW_S * rate) :].astype(np.float64)
    x = x[: len(x) // step * step].reshape(-1, step).mean(axis=1)
    if len(x) < _PITCH_FRAME + _PITCH_HOP:
        return _UNKNOWN
    count = (len(x) - _PITCH_FRAME) // _PITCH_HOP + 1
    start = len(x) - _PITCH_FRAME - (count - 1) * _PITCH_HOP  # the last frame ends at the end
    index = start + _PITCH_HOP * np.arange(count)[:, None] + np.arange(_PITCH_FRAME)[None, :]
    frames = x[index]
    frames -= frames.mean(axis=1, keepdims=True)
    window, own = _window_terms()
    spectrum = np.fft.rfft(frames * window, 2 * _PITCH_FRAME, axis=1)
    corr = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, axis=1)[:, :_PITCH_FRAME]
    energy = corr[:, 0]
    if energy.max() <= 0.0:
        return _UNKNOWN
    low, high = _PITCH_LAGS
    lags = corr[:, low:high] / np.maximum(energy[:, None], 1e-9) / own[None, low:high]
    peak = lags.max(axis=1)
    # the shortest lag near the best one: an octave too low is the usual error
    lag = low + np.argmax(lags >= 0.9 * peak[:, None], axis=1)
    voiced = (peak >= _VOICED) & (energy >= energy.max() * 1e-3)
    share = float(voiced.mean())
    where = np.flatnonzero(voiced)
    if len(where) < _FINAL_FRAMES + 1 or where[-_FINAL_FRAMES] < count - _FINAL_SPAN:
        return Prosody(math.nan, share)
    semitones = 12.0 * np.log2(_PITCH_RATE / lag[where])
    final = float(semitones[-_FINAL_FRAMES:].mean() - np.median(semitones))
    return Prosody(final, share)


def _check(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"TurnPolicy: {name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"TurnPolicy: {name} must be in [{low:g}, {high:g}], got {value!r}")
    return number


def _goes_on(word: str) -> bool:
    """Words that cannot end a sentence, whatever punctuation follows them."""
    return (
        word in _FILLERS or word in _CONJUNCTIONS or word in _DETERMINERS or word in _PREPOSITIONS
    )


def _digit_run(words: list[str]) -> int:
    """Digits in the run of digit words (or numerals) that ends the text, 0 when none or
    when the run is a single spoken number ("four", "twenty")."""
    digits = 0
    tokens = 0
    for word in reversed(words):
        if word.isdigit():
            digits += len(word)
        elif word in _DIGITS:
            digits += 1
        elif word in _NUMBERS:
            digits += 2
        elif word in ("double", "triple"):
            digits += 1 if word == "double" else 2
        else:
            break
        tokens += 1
    if tokens == 1 and not words[-1].isdigit():
        return 0
    return digits


def _question(words: list[str]) -> bool:
    """Whether the text opens as a question ("can you ...", "could I ...", "what
    time ...", "and also um where is ...") and has its verb ("what time do you" has
    not yet), as far as the words tell."""
    start = 0
    for i, word in enumerate(words):
        if word not in _LEADERS:
            break
        start = i + 1
    head = words[start : start + 2]
    if not head:
        return False
    if len(words) - start > 2 and words[-2] in _QUESTION_AUX and words[-1] in _ASKED:
        return False  # "what time do you": the verb is still to come
    if head[0] in _WH:
        return True
    return len(head) == 2 and head[0] in _QUESTION_AUX and head[1] in _ASKED


def _with_prosody(score: float, words: list[str], final_pitch: float) -> float:
    """The text's score on plain text weighed with the pitch at its end (semitones).

    Only a text that could end there is weighed (score at least 0.25, or a number): a
    final fall makes a clause complete, a level or rising end makes it wait (a question
    less: it may end rising). A number said falling is a group of digits read out, as
    callers read numbers, and waits as digits do.
    """
    last = words[-1]
    one_number = score == 0.5 and (last.isdigit() or last in _DIGITS or last in _NUMBERS)
    short_digits = one_number or (score == 0.1 and _digit_run(words) > 0)
    if score < 0.25 and not short_digits:
        return score  # the words say it goes on, whatever the voice does
    fall = min(1.0, max(0.0, (_RISE_AT - final_pitch) / (_RISE_AT - _FALL_AT)))
    if short_digits:
        rise_score, fall_score = score, _DIGITS_FALL
    elif _question(words):
        rise_score, fall_score = _QUESTION_RISE, _FALL
    else:
        rise_score, fall_score = min(score, _RISE), max(score, _FALL)
    return rise_score + fall * (fall_score - rise_score)


class TurnPolicy:
    """End-of-turn delay from the transcript so far (rule in the module docstring).

    Parameters
    ----------
    min_delay : float
        Seconds to wait after a reported speech end when the text is surely complete (a
        question, a full sentence). 0 to 5.
    max_delay : float
        Seconds to wait when the text surely goes on ("and", "um", "five five five").
        ``min_delay`` to 10.
    hangover_ms : int
        The detector hangover this policy is tuned for, 0 to 500 ms: create the detector
        with ``voxwire.Vad(rate, hangover_ms=policy.hangover_ms)``.

    Raises
    ------
    TypeError
        If a setting is not a number (``hangover_ms``: not an int).
    ValueError
        If a setting is out of range (the message names it and its value).
    """

    __slots__ = ("_hangover_ms", "_max", "_min")

    def __init__(
        self, min_delay: float = 0.0, max_delay: float = 1.4, hangover_ms: int = 160
    ) -> None:
        low = _check("min_delay", min_delay, 0.0, 5.0)
        high = _check("max_delay", max_delay, 0.0, 10.0)
        if high < low:
            raise ValueError(
                f"TurnPolicy: max_delay must be >= min_delay ({low:g}), got {max_delay!r}"
            )
        if isinstance(hangover_ms, bool) or not isinstance(hangover_ms, int):
            raise TypeError(
                f"TurnPolicy: hangover_ms must be an int, got {type(hangover_ms).__name__}"
            )
        if not 0 <= hangover_ms <= 500:
            raise ValueError(f"TurnPolicy: hangover_ms must be in [0, 500], got {hangover_ms}")
        self._min = low
        self._max = high
        self._hangover_ms = hangover_ms

    @property
    def min_delay(self) -> float:
        """Seconds to wait after a complete sentence."""
        return self._min

    @property
    def max_delay(self) -> float:
        """Seconds to wait after text that goes on."""
        return self._max

    @property
    def hangover_ms(self) -> int:
        """The detector hangover the delays assume, in ms."""
        return self._hangover_ms

    def delay(self, text: str, prosody: Prosody | None = None) -> float:
        """Seconds to wait, after the detector reports the end of speech, before the
        caller's turn counts as over, given the transcript ``text`` so far and, where the
        caller has it, how the speech ended (:func:`prosody` of the audio up to
        ``SpeechEnd.sample``)."""
        score = self.completeness(text, prosody)
        return self._min + (self._max - self._min) * (1.0 - score)

    def silence(self, text: str, prosody: Prosody | None = None) -> float:
        """Seconds of silence after the last speech frame (``SpeechEnd.time``) before the
        turn counts as over: ``hangover_ms / 1000 + delay(text, prosody)``."""
        return self._hangover_ms / 1000.0 + self.delay(text, prosody)

    def completeness(self, text: str, prosody: Prosody | None = None) -> float:
        """How surely ``text`` is a whole turn, in [0, 1] (see the module docstring).
        ``prosody`` weighs in only on plain text (no punctuation, no capitals)."""
        if not isinstance(text, str):
            raise TypeError(f"TurnPolicy: text must be a str, got {type(text).__name__}")
        if prosody is not None and not isinstance(prosody, Prosody):
            raise TypeError(
                f"TurnPolicy: prosody must be a Prosody or None, got {type(prosody).__name__}"
            )
        tail = text[-_TAIL:].rstrip()
        # Closing quotes and brackets do not change where the text ends.
        tail = tail.rstrip("\"')]}\u201d\u2019\u00bb*_")
        if not tail:
            return 0.5
        punctuated = any(
            ch.isupper() or not (ch.isalnum() or ch.isspace() or ch == "'") for ch in tail
        )
        words = _WORD.findall(tail.lower())
        last = tail[-1]
        if not words:
            return 0.5 if last not in ",;:-\u2013\u2014" else 0.05
        score = self._words(words, punctuated)
        if last in "?!\uff1f\uff01":
            return 1.0
        if tail.endswith(("...", "\u2026")):
            return min(score, 0.2)
        if last in ".\u3002":
            # A recognizer's full stop is its own end-of-sentence call; only a word that
            # cannot end one ("the.", "um.") outweighs it.
            return score + 0.1 if _goes_on(words[-1]) else 0.9
        if last in ",;:-\u2013\u2014":
            return min(score, 0.05)
        if punctuated or prosody is None or not prosody.known:
            return score
        return _with_prosody(score, words, prosody.final_pitch)

    @staticmethod
    def _words(words: list[str], punctuated: bool) -> float:
        """Score of a text that ends on ``words`` (lowercase), punctuation aside."""
        last = words[-1]
        before = words[-2] if len(words) > 1 else ""
        if last in _FILLERS:
            return 0.0
        pair = f"{before} {last}"
        if pair in _CLOSING_PAIRS or (last in _CLOSINGS and len(words) <= 3):
            return 0.95
        if last == "so" and before in _SO_ENDS:
            return 0.8  # "I think so", "I hope so"
        if last in _CONJUNCTIONS or (last == "then" and before in ("and", "so", "but")):
            return 0.05
        if last in _DISCOURSE or (len(words) == 1 and last in _OPENERS):
            return 0.15
        if last in _DETERMINERS or last in _PREPOSITIONS:
            return 0.05 if last not in ("like", "as") else 0.2
        if last in _OPEN_CONTRACTIONS:
            return 0.1
        if last in _AUXILIARIES:
            return 0.6 if before in _PRONOUNS else 0.1
        if last in _SUBJECTS:
            return 0.1
        if last in _WANTING and (before in _SUBJECTS or before.endswith("'d") or before == "would"):
            return 0.2
        if last in _NUMBER_WAITS:
            return 0.1
        if last == "me" and before in _TELLING:
            return 0.2  # "can you tell me", "let me"
        run = _digit_run(words)
        if run:
            return 0.7 if run in _WHOLE_NUMBER_LENGTHS else 0.1
        if last.isdigit() or last in _DIGITS or last in _NUMBERS:
            return 0.5  # one number: a count, or the first of a house number and street
        return _OPEN_WORD_PUNCTUATED if punctuated else _OPEN_WORD_PLAIN

    def __repr__(self) -> str:
        return (
            f"TurnPolicy(min_delay={self._min:g}, max_delay={self._max:g}, "
            f"hangover_ms={self._hangover_ms})"
        )
