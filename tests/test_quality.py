"""The G.107 E-model against the values the Recommendation states and its own formulas."""

from __future__ import annotations

import math

import pytest

from voxwire.quality import CODECS, CodecImpairment, mos, r_factor


def test_default_rating_is_the_recommendations_93_2() -> None:
    # G.107: "the default values ... result in a rating R = 93.2"
    assert r_factor() == pytest.approx(93.2, abs=0.05)
    assert mos(r_factor()) == pytest.approx(4.41, abs=0.005)


def test_pure_delay_impairment_starts_at_100_ms() -> None:
    # Idd = 25 {(1 + X^6)^(1/6) - 3 (1 + (X/3)^6)^(1/6) + 2}, X = log2(Ta / 100)
    def idd(ta: float) -> float:
        x = math.log2(ta / 100)
        return 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)

    assert idd(200) == pytest.approx(3.04, abs=0.01)
    # beyond 100 ms the drop is Idd plus the growth of the echo terms (default TELR 65 dB,
    # WEPL 110 dB), a few points at most
    for ta in (200, 300, 400):
        extra = r_factor(100) - r_factor(ta) - idd(ta)
        assert 0 < extra < 5, ta
    # G.114 / G.107: one-way delay up to 150 ms keeps R near 90; 400 ms falls near 60
    assert 88 < r_factor(150) < 91
    assert 58 < r_factor(400) < 66
    ratings = [r_factor(d) for d in range(0, 600, 25)]
    assert ratings == sorted(ratings, reverse=True)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_packet_loss_follows_ie_eff(name: str) -> None:
    codec = CODECS[name]
    for ppl in (0.5, 1.0, 2.0, 5.0, 10.0):
        ie_eff = codec.ie + (95 - codec.ie) * ppl / (ppl + codec.bpl)
        assert r_factor(0, 0, codec=CodecImpairment(0, 1)) - r_factor(
            0, ppl, codec=name
        ) == pytest.approx(ie_eff)
    # concealment makes G.711 far more robust: 2 % loss costs 7 points, not 30
    assert r_factor(0, 2, codec="g711-plc") == pytest.approx(93.2 - 95 * 2 / 27.1, abs=0.05)
    assert r_factor(0, 2, codec="g711") < 65


def test_bursty_loss_hurts_more() -> None:
    assert r_factor(0, 3, burst_ratio=2.0) < r_factor(0, 3, burst_ratio=1.0)


def test_mos_mapping() -> None:
    assert mos(-5) == 1.0
    assert mos(0) == 1.0
    assert mos(60) == pytest.approx(3.1)
    assert mos(80) == pytest.approx(4.024)
    assert mos(100) == pytest.approx(4.5)
    assert mos(120) == 4.5


def test_bad_input() -> None:
    for kwargs in ({"delay_ms": -1}, {"delay_ms": math.inf}, {"loss_percent": 101},
                   {"burst_ratio": 0.5}, {"codec": "opus"}):  # fmt: skip
        with pytest.raises(ValueError, match=r"must be|unknown codec"):
            r_factor(**kwargs)  # type: ignore[arg-type]
