"""The simulated caller's speech depends on its arguments only, not on what was said before."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from voxwire.benchmarks.corpus import espeak_available

pytestmark = pytest.mark.skipif(not espeak_available(), reason="needs espeakng-loader")


def test_a_phrase_is_the_same_whatever_was_synthesized_before_it() -> None:
    from voxwire.sim.speech import synthesize

    first = synthesize("It is for Maria.", 8000)
    # espeak-ng's wave generator keeps its pitch flutter phase in a C static that no API
    # call resets: in one shared instance these would change the phrase that follows.
    synthesize("Testing the voxwire echo line, with a pause.", 16000, voice="en-us")
    synthesize("A browser caller says hello to the agent", 8000, wpm=190, pitch=30)
    again = synthesize("It is for Maria.", 8000)
    np.testing.assert_array_equal(first, again)


def test_arguments_still_change_the_phrase() -> None:
    from voxwire.sim.speech import synthesize

    base = synthesize("It is for Maria.", 8000)
    assert not np.array_equal(base, synthesize("It is for Maria.", 8000, pitch=70))
    assert not np.array_equal(base, synthesize("It is for Mario.", 8000))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="unloading checked on Linux")
def test_each_phrase_runs_in_an_instance_that_is_unloaded_after_it() -> None:
    from voxwire.sim.speech import _engine, synthesize

    synthesize("Hello.", 8000)
    assert _engine().fresh
    with open("/proc/self/maps") as maps:
        assert "libespeak-ng-private" not in maps.read()
