"""Packet-loss concealment for decoded PCM16 (in the spirit of ITU-T G.711 Appendix I).

>>> import numpy as np
>>> from voxwire.plc import Concealer
>>> plc = Concealer(8000)
>>> frame = (1000 * np.sin(np.arange(160) * 2 * np.pi / 40)).astype(np.int16)
>>> _ = plc.good(frame)           # every decoded frame
>>> gap = plc.conceal(160)        # a lost 20 ms frame: the last pitch period, continued
>>> plc.pitch % 40
0

The concealment repeats the last pitch period (widening to two and three periods as a
loss goes on), holds full level for 10 ms, fades 20 % per 10 ms and is silent from 60 ms;
the first good frame after a loss is cross-faded with the continued synthesis, in place.
Unlike Appendix I it delays nothing, so it adds no latency. Any rate from 8 to 48 kHz.
"""

from __future__ import annotations

from voxwire._core import Concealer

__all__ = ["Concealer"]
