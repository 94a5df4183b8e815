"""Opus: packet inspection, FEC detection checked against libopus, recovery and errors."""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from voxwire.errors import CodecError, OpusPacketError, OpusUnavailable
from voxwire.opus import OpusDecoder, OpusEncoder, has_fec, packet_info


def opus_available() -> bool:
    try:
        OpusDecoder()
    except OpusUnavailable:
        return False
    return True


# CI installs libopus and opuslib, and there these tests must run rather than skip.
needs_opus = pytest.mark.skipif(
    not opus_available() and not os.environ.get("CI"), reason="opuslib or libopus missing"
)


def voiced(rate: int, seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(h * phase) / h for h in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.asarray(np.round(4000 * x), dtype=np.int16)


def encode_all(rate: int, seconds: float, **kw: Any) -> list[bytes]:
    enc = OpusEncoder(rate, **kw)
    pcm = voiced(rate, seconds)
    n = rate // 50
    return [enc.encode(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)]


def test_packet_info() -> None:
    info = packet_info(bytes([9 << 3]) + bytes(30))
    assert (info.config, info.mode, info.stereo, info.code, info.frames) == (9, "silk", False, 0, 1)
    assert info.duration == pytest.approx(0.02)
    assert info.samples(16000) == 320
    celt = packet_info(bytes([31 << 3 | 4 | 3, 3]) + bytes(6))  # CELT FB stereo, 3 CBR frames
    assert (celt.mode, celt.stereo, celt.frames, celt.samples(48000)) == ("celt", True, 3, 2880)
    assert packet_info(bytearray([13 << 3, 1])).mode == "hybrid"


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", "empty"),
        (bytes([1, 1, 2, 3]), "odd_cbr_pair"),
        (bytes([2, 9, 1]), "bad_length"),
        (bytes([3]), "no_frame_count"),
        (bytes([3, 0]), "zero_frames"),
        (bytes([3 << 3 | 3, 3, 1, 2, 3]), "too_long"),
        (bytes([3, 0x41, 255]), "bad_padding"),
        (bytes([3, 2, 1, 2, 3]), "uneven_cbr"),
    ],
)
def test_malformed_packets(packet: bytes, reason: str) -> None:
    with pytest.raises(OpusPacketError, match=f"{reason}, {len(packet)} bytes") as exc:
        packet_info(packet)
    assert exc.value.reason == reason
    assert isinstance(exc.value, CodecError)
    assert not has_fec(packet)


@needs_opus
def test_has_fec_agrees_with_libopus_on_every_packet() -> None:
    # libopus decodes FEC data when a packet has LBRR and falls back to concealment when it
    # has none: has_fec must predict which, packet by packet.
    rate, n = 48000, 960
    pcm = voiced(rate, 3.0)
    pcm[rate : rate + rate // 2] //= 200  # a quiet stretch: the encoder drops LBRR there
    enc = OpusEncoder(rate, packet_loss_percent=15)
    packets = [enc.encode(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)]
    flags = []
    for k in range(1, len(packets) - 1):
        a, b = OpusDecoder(rate), OpusDecoder(rate)
        for p in packets[max(0, k - 4) : k]:
            a.decode(p)
            b.decode(p)
        fec, how = a.recover(packets[k + 1], n)
        plain = b.conceal(n)
        flags.append(has_fec(packets[k + 1]))
        assert (how == "fec") == flags[-1]
        assert (not np.array_equal(fec, plain)) == flags[-1], k
    assert 0 < sum(flags) < len(flags)  # both kinds were seen


@needs_opus
def test_no_fec_without_loss_planning() -> None:
    assert not any(has_fec(p) for p in encode_all(48000, 1.0, packet_loss_percent=0))
    assert not any(has_fec(p) for p in encode_all(48000, 1.0, fec=False, packet_loss_percent=20))


@needs_opus
def test_fec_recovery_beats_concealment() -> None:
    rate, n = 16000, 320
    packets = encode_all(rate, 4.0, packet_loss_percent=20, bitrate=32000)
    reference = np.concatenate([d for d in map(OpusDecoder(rate).decode, packets)])
    lost = set(range(10, len(packets) - 1, 7))
    results = {}
    for mode in ("fec", "plc"):
        dec = OpusDecoder(rate)
        out = []
        for k, p in enumerate(packets):
            if k in lost:
                nxt = packets[k + 1] if mode == "fec" else None
                out.append(dec.recover(nxt, n)[0])
            else:
                out.append(dec.decode(p))
        y = np.concatenate(out).astype(np.float64)
        idx = np.concatenate([np.arange(k * n, (k + 1) * n) for k in sorted(lost)])
        ref = reference[idx].astype(np.float64)
        results[mode] = 10 * np.log10(np.sum(ref**2) / np.sum((ref - y[idx]) ** 2))
        if mode == "fec":
            assert dec.fec_recovered > len(lost) // 2
    assert results["fec"] > results["plc"] + 3.0


@needs_opus
def test_encoder_and_decoder_errors() -> None:
    enc = OpusEncoder(16000)
    with pytest.raises(TypeError, match="int16"):
        enc.encode(np.zeros(320, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="321 samples is not"):
        enc.encode(np.zeros(321, dtype=np.int16))
    assert len(enc.encode(np.zeros(160, dtype=np.int16))) > 0  # 10 ms
    with pytest.raises(ValueError, match="sample rate must be one of"):
        OpusDecoder(44100)
    with pytest.raises(ValueError, match="channels must be 1 or 2"):
        OpusEncoder(48000, 3)
    with pytest.raises(ValueError, match="packet_loss_percent"):
        OpusEncoder(48000, packet_loss_percent=101)
    with pytest.raises(OpusPacketError):
        OpusDecoder(48000).decode(b"")
    with pytest.raises(ValueError, match="samples must be > 0"):
        OpusDecoder(48000).conceal(0)


def test_missing_libopus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_libopus(name: str, *args: Any) -> Any:
        if name.startswith("opuslib"):
            raise Exception("Could not find Opus library. Make sure it is installed.")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_libopus)
    with pytest.raises(OpusUnavailable, match="apt-get install libopus0"):
        OpusDecoder()

    def no_opuslib(name: str, *args: Any) -> Any:
        if name.startswith("opuslib"):
            raise ModuleNotFoundError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_opuslib)
    with pytest.raises(OpusUnavailable, match=r"pip install 'voxwire\[opus\]'") as exc:
        OpusEncoder()
    assert isinstance(exc.value, ImportError)
