"""The phone side of a call, simulated: what ``voxwire call`` runs.

* :mod:`voxwire.sim.providers`: each protocol as the provider speaks it, one module per
  protocol, lenient like the provider or strict (raising
  :class:`~voxwire.errors.ConformanceError` on any wire-format violation);
* :mod:`voxwire.sim.phone`: the phone's speaker on a clock, and :class:`FakePhone`, a
  provider side and its speaker in memory, for testing an application's wire format;
* :mod:`voxwire.sim.caller`: a caller that speaks in real time, plays the replies, echoes
  marks once played, honours clear, and reports what it heard and the timings;
* :mod:`voxwire.sim.dialog`: a caller that holds a conversation of several turns (each
  said when the last reply ends, or over it), for testing voice agents;
* :mod:`voxwire.sim.load`: many such phones at once against one server (``voxwire
  loadtest``): latency percentiles, pacing, errors by close code, CPU per call;
* :mod:`voxwire.sim.speech`: espeak-ng phrases and WAV files for it to say.
"""

from __future__ import annotations

from voxwire.sim.caller import CallPlan, CallReport, Network, place_call
from voxwire.sim.dialog import DialogReport, Turn, place_dialog
from voxwire.sim.load import LoadReport, run_load
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import PROVIDERS, ProviderSide
from voxwire.sim.speech import DEFAULT_PHRASE, read_wav, synthesize

__all__ = [
    "DEFAULT_PHRASE",
    "PROVIDERS",
    "CallPlan",
    "CallReport",
    "DialogReport",
    "FakePhone",
    "LoadReport",
    "Network",
    "ProviderSide",
    "Turn",
    "place_call",
    "place_dialog",
    "read_wav",
    "run_load",
    "synthesize",
]
