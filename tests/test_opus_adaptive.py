"""Opus rate adaptation: the controller's rule, the encoder's setters, RED switched on and
off during a stream."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("opuslib", reason="needs opuslib (libopus)")

from voxwire.opus import OpusEncoder, OpusRateController, OpusSetting, has_fec
from voxwire.protocols.rtp_session import RtpSession
from voxwire.rtp import parse_rtp


def test_the_controller_saves_bits_on_a_clean_link_and_steps_up_with_loss() -> None:
    c = OpusRateController()
    assert c.setting == OpusSetting(24000, 10)  # FEC stays planned even when clean
    assert c.report(0.0) is None
    c = OpusRateController()
    got = c.report(0.03)  # smoothed loss 3%: the middle tier
    assert got == OpusSetting(32000, 10)
    got = c.report(0.20)  # smoothed 11.5%: the top tier, FEC planned for 15%
    assert got == OpusSetting(40000, 15)
    # hysteresis: 6% is below the top tier's 8% but not a third below it
    c2 = OpusRateController(alpha=1.0)
    assert c2.report(0.09) == OpusSetting(40000, 12)
    assert c2.report(0.06) == OpusSetting(40000, 10)
    assert c2.report(0.05) == OpusSetting(32000, 10)
    assert c2.report(0.008) is None  # still above two thirds of 1%
    assert c2.report(0.0) == OpusSetting(24000, 10)


def test_red_only_in_the_top_tier_and_only_when_the_peer_takes_it() -> None:
    with_red = OpusRateController(alpha=1.0, red=True)
    assert with_red.report(0.03) == OpusSetting(32000, 10, 0)
    assert with_red.report(0.15) == OpusSetting(40000, 20, 1)
    assert with_red.report(0.0) == OpusSetting(24000, 10, 0)
    without = OpusRateController(alpha=1.0)
    assert without.report(0.15) == OpusSetting(40000, 20, 0)
    with pytest.raises(ValueError, match="alpha"):
        OpusRateController(alpha=0)
    with pytest.raises(ValueError, match="low <= mid"):
        OpusRateController(low=40000, mid=32000)


def _speech(n: int) -> np.ndarray:
    t = np.arange(n) / 48000
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 25))
    return (6000 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)


def test_the_encoder_setters_change_the_stream() -> None:
    enc = OpusEncoder(48000, bitrate=32000, packet_loss_percent=10)
    pcm = _speech(48000 * 2)
    frames = [pcm[i : i + 960] for i in range(0, len(pcm), 960)]
    before = sum(len(enc.encode(f)) for f in frames[:50])
    enc.set_bitrate(16000)
    enc.set_packet_loss_percent(0)
    after = [enc.encode(f) for f in frames[50:]]
    assert (enc.bitrate, enc.packet_loss_percent) == (16000, 0)
    assert sum(len(p) for p in after) < before * 0.7
    assert not any(has_fec(p) for p in after[5:])  # no FEC planned: no LBRR copies
    with pytest.raises(ValueError, match="bitrate"):
        enc.set_bitrate(100)
    with pytest.raises(ValueError, match="packet_loss_percent"):
        enc.set_packet_loss_percent(101)


def test_red_is_switched_on_and_off_mid_stream_and_received() -> None:
    tx = RtpSession("opus", payload_type=111, red_payload_type=63, first_sequence=0)
    rx = RtpSession("opus", payload_type=111, red_payload_type=63)
    pcm = _speech(960 * 30)
    types = []
    for k in range(30):
        if k == 10:
            tx.set_red_depth(1)
        if k == 20:
            tx.set_red_depth(0)
        wire = tx.send(pcm[k * 960 : (k + 1) * 960])
        types.append(parse_rtp(wire).payload_type)
        if k != 15:  # one packet lost while RED is on: the next one carries it
            rx.receive(wire, k * 0.02)
        rx.pull(k * 0.02)
    assert types == [111] * 10 + [63] * 10 + [111] * 10
    # packets 11-19 repeat the frame before (the first RED packet has none yet), 15 lost
    assert rx.stats().red_copies == 8
    assert rx.stats().frames["fec"] == 1  # frame 15, from packet 16's copy
    with pytest.raises(ValueError, match="red_payload_type"):
        RtpSession("opus").set_red_depth(1)
