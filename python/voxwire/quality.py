"""Call quality estimates: the ITU-T G.107 E-model, from delay and packet loss.

:func:`r_factor` computes the transmission rating R of ITU-T Recommendation G.107 (06/2015)
"The E-model: a computational model for use in transmission planning", section 7, with
every parameter at its default value (G.107 Table 2) except the three that describe a VoIP
call as voxwire sees it: the one-way mouth-to-ear delay (``Ta``, and ``T``, ``Tr`` from it
for the echo paths), the packet-loss probability ``Ppl`` (percent) with the burst ratio
``BurstR``, and the codec's equipment impairment factor ``Ie`` with its packet-loss
robustness factor ``Bpl``. :func:`mos` maps R to the estimated mean opinion score
(G.107 Annex B).

* ``R = Ro - Is - Id - Ie,eff + A`` (G.107 formula 7-1), with ``Ro`` and ``Is`` from the
  default loudness, noise and sidetone values (they give ``Ro - Is = 93.2`` less the
  rounding of G.107: the default R is 93.2);
* ``Id = Idte + Idle + Idd`` (7.3): talker echo at the default TELR 65 dB with
  ``T = Ta``, listener echo at the default WEPL 110 dB with ``Tr = 2 Ta``, and the pure
  delay impairment ``Idd``, zero up to ``Ta = 100`` ms;
* ``Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)`` (7.29).

Codec values (:data:`CODECS`) are those of ITU-T G.113 Appendix I (Tables I.1 and I.3):
G.711 has ``Ie = 0`` with ``Bpl = 25.1`` when the receiver conceals lost packets (G.711
Appendix I concealment) and ``4.3`` when it does not; G.729A with VAD ``Ie = 11``,
``Bpl = 19.0``. The model is the narrow-band one (the wideband E-model is G.107.1): for
16 kHz lines use the G.711 values as a conservative estimate.

>>> round(r_factor(), 1)
93.2
>>> round(mos(r_factor()), 2)
4.41
>>> round(r_factor(delay_ms=0, loss_percent=2.0, codec="g711-plc"), 1)
86.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CODECS", "CodecImpairment", "mos", "r_factor"]


@dataclass(frozen=True)
class CodecImpairment:
    """A codec's equipment impairment factor ``Ie`` and packet-loss robustness ``Bpl``."""

    ie: float
    bpl: float


CODECS = {
    "g711-plc": CodecImpairment(0.0, 25.1),
    "g711": CodecImpairment(0.0, 4.3),
    "g729a": CodecImpairment(11.0, 19.0),
}
"""G.113 Appendix I values by name (see the module docstring)."""

# G.107 Table 2 defaults
_SLR, _RLR, _STMR, _LSTR = 8.0, 2.0, 15.0, 18.0
_DS, _DR = 3.0, 3.0
_TELR, _WEPL = 65.0, 110.0
_QDU = 1.0
_NC, _NFOR, _PS, _PR = -70.0, -64.0, 35.0, 35.0
_A = 0.0
_MT, _ST = 100.0, 1.0  # Idd knee (ms) and sharpness (G.107 7.3, defaults)


def _lg(x: float) -> float:
    return math.log10(x)


def _basic() -> tuple[float, float, float]:
    """(Ro, Is, No) at the default values (G.107 7.1, 7.2)."""
    olr = _SLR + _RLR
    nfo = _NFOR + _RLR
    pre = _PR + 10 * _lg(1 + 10 ** ((10 - _LSTR) / 10))
    nor = _RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = _PS - _SLR - _DS - 100 + 0.004 * (_PS - olr - _DS - 14) ** 2
    no = 10 * _lg(10 ** (_NC / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (_SLR + no)
    xolr = olr + 0.2 * (64 + no - _RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    return ro, iolr, no


def _is(ro: float, iolr: float, t: float) -> float:
    """Is = Iolr + Ist + Iq (G.107 7.2), Ist at STMRo for the talker-echo delay ``t``."""
    stmro = -10 * _lg(10 ** (-_STMR / 10) + math.exp(-t / 4) * 10 ** (-_TELR / 10))
    ist = (
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )
    q = 37 - 15 * _lg(_QDU)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    z = 46 / 30 - g / 40
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    iq = 15 * _lg(1 + 10**y + 10**z)
    return float(iolr + ist + iq)


def _id(ro: float, no: float, t: float, tr: float, ta: float) -> float:
    """Id = Idte + Idle + Idd (G.107 7.3)."""
    terv = _TELR - 40 * _lg((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t**2)
    roe = -1.5 * (no - _RLR)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    rle = 10.5 * (_WEPL + 7) * (tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    if ta <= _MT:
        idd = 0.0
    else:
        x = _lg(ta / _MT) / _lg(2)
        e = 6 * _ST
        idd = 25 * ((1 + x**e) ** (1 / e) - 3 * (1 + (x / 3) ** e) ** (1 / e) + 2)
    return float(idte + idle + idd)


def r_factor(
    delay_ms: float = 0.0,
    loss_percent: float = 0.0,
    *,
    codec: str | CodecImpairment = "g711-plc",
    burst_ratio: float = 1.0,
) -> float:
    """The E-model rating R for a one-way mouth-to-ear delay and a packet-loss rate.

    Parameters
    ----------
    delay_ms : float
        One-way mouth-to-ear delay ``Ta`` in milliseconds (also the talker-echo delay
        ``T``; the listener-echo round trip ``Tr`` is twice it).
    loss_percent : float
        Packet-loss probability ``Ppl`` in percent, 0-100.
    codec : str or CodecImpairment
        A name of :data:`CODECS`, or the codec's own ``Ie`` and ``Bpl``.
    burst_ratio : float
        ``BurstR``: 1 for random loss, above 1 for bursty loss.

    Raises
    ------
    ValueError
        For a negative or non-finite delay, a loss outside 0-100, a burst ratio below 1,
        or an unknown codec name.
    """
    if not (math.isfinite(delay_ms) and delay_ms >= 0):
        raise ValueError(f"delay_ms must be a finite number >= 0, got {delay_ms}")
    if not (0 <= loss_percent <= 100):
        raise ValueError(f"loss_percent must be in 0-100, got {loss_percent}")
    if not burst_ratio >= 1:
        raise ValueError(f"burst_ratio must be >= 1, got {burst_ratio}")
    if isinstance(codec, str):
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
        codec = CODECS[codec]
    ro, iolr, no = _basic()
    t = ta = float(delay_ms)
    tr = 2 * ta
    ie_eff = codec.ie + (95 - codec.ie) * loss_percent / (loss_percent / burst_ratio + codec.bpl)
    return ro - _is(ro, iolr, t) - _id(ro, no, t, tr, ta) - ie_eff + _A


def mos(r: float) -> float:
    """The estimated mean opinion score (conversational quality) for a rating ``r``
    (G.107 Annex B, formula B-4): 1 below 0, 4.5 above 100."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6
