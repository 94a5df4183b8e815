"""The Python fuzz targets: their seeds are valid sessions, their checks can fail, and a
few thousand mutations of the seeds hold the contract (atheris runs the long search)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz import targets
from tests.fuzz.targets import (
    Finding,
    codec_input,
    decode_case,
    encode_case,
    sip_input,
    twcc_input,
)
from voxwire.errors import SipParseError
from voxwire.protocols import CODECS, Audio
from voxwire.protocols.base import MediaStreamCodec
from voxwire.protocols.registry import codec_factory
from voxwire.sip.message import parse_message
from voxwire.sip.uas import SipServer


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        k = rng.randrange(len(data))
        op = rng.random()
        if op < 0.4:
            data[k] = rng.randrange(256)
        elif op < 0.6:
            del data[k : k + rng.randint(1, 16)]
        elif op < 0.8:
            data[k:k] = bytes([rng.randrange(256)]) * rng.randint(1, 8)
        else:  # a digit run grown: rates, lengths, sequence numbers out of range
            data[k:k] = b"9" * rng.randint(1, 40)
    return bytes(data)


def test_the_seeds_are_calls_of_every_protocol_at_every_rate() -> None:
    heard: dict[tuple[str, int], int] = {}
    for seed in targets.codec_seeds():
        name, messages, _ = decode_case(seed)
        codec = codec_factory(name)()
        samples = 0
        for i, message in enumerate(messages):
            for event in codec.receive(message, 0.02 * i):
                if isinstance(event, Audio):
                    samples += event.pcm.size
        assert codec.started is not None, name
        assert codec.stats.skipped == 0, (name, codec.stats.first_reason)
        heard[(name, codec.started.media_format.sample_rate)] = samples
        codec_input(seed)
    expected = {(name, rate) for name, cls in CODECS.items() for rate in cls.rates}
    assert set(heard) == expected
    assert all(samples >= 3 * rate // 50 for (_, rate), samples in heard.items()), heard


def test_cases_round_trip() -> None:
    messages: list[str | bytes] = ['{"event":"connected"}', b"\x00\x1e\x1d\x1d\x3e\x01"]
    assert decode_case(encode_case("twilio", messages)) == ("twilio", messages, False)
    assert decode_case(b"") == (targets.NAMES[0], [], False)
    name, messages, resample = decode_case(bytes([len(targets.NAMES) + 1]) + b"tx")
    assert (name, messages, resample) == (targets.NAMES[1], ["x"], True)


@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_codec_sessions_hold_the_contract(seed: int) -> None:
    rng = random.Random(seed)
    seeds = targets.codec_seeds()
    for _ in range(1500):
        case = mutate(rng.choice(seeds), rng)
        codec_input(case)  # raises Finding on a breach


def test_mutated_sip_datagrams_hold_the_contract() -> None:
    rng = random.Random(3)
    seeds = targets.sip_seeds()
    for seed in seeds:
        sip_input(seed)
    for _ in range(1500):
        sip_input(mutate(rng.choice(seeds), rng))


def test_the_codec_checks_catch_a_crash_and_amplified_audio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = next(s for s in targets.codec_seeds() if decode_case(s)[0] == "twilio")
    cls = CODECS["twilio"]
    original = cls._receive

    def crashes(self: MediaStreamCodec, data: str | bytes, now: float) -> list[object]:
        raise KeyError("media")

    monkeypatch.setattr(cls, "_receive", crashes)
    with pytest.raises(Finding, match="KeyError"):
        codec_input(seed)

    def amplifies(self: MediaStreamCodec, data: str | bytes, now: float) -> list[object]:
        events = original(self, data, now)  # type: ignore[arg-type]
        return [
            Audio(np.zeros(1_000_000, np.int16), e.sample_rate, e.line_rate)
            if isinstance(e, Audio)
            else e
            for e in events
        ]

    monkeypatch.setattr(cls, "_receive", amplifies)
    with pytest.raises(Finding, match="samples out of"):
        codec_input(seed)


def test_the_sip_checks_catch_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def crashes(self: SipServer, data: bytes, source: object, now: float) -> None:
        raise IndexError("vias")

    monkeypatch.setattr(SipServer, "receive", crashes)
    with pytest.raises(Finding, match="IndexError"):
        sip_input(targets.sip_seeds()[1])


def test_the_inputs_the_fuzzers_found_hold_the_contract() -> None:
    # each file is an input a long run found to break a contract, kept once fixed
    found = sorted((Path(__file__).parent / "regressions").glob("*.bin"))
    assert found
    for path in found:
        target = sip_input if path.name.startswith("sip-") else codec_input
        target(path.read_bytes())


def test_an_empty_via_is_refused_by_the_parser() -> None:
    data = (Path(__file__).parent / "regressions" / "sip-empty-via.bin").read_bytes()
    with pytest.raises(SipParseError, match="empty Via"):
        parse_message(data)


def test_the_twcc_seeds_are_valid_feedback_and_packets_and_mutations_hold() -> None:
    from voxwire.twcc import parse_transport_feedback, split_rtcp

    seeds = targets.twcc_seeds()
    kinds = {seed[0] & 1 for seed in seeds}
    assert kinds == {0, 1}
    for seed in seeds:
        twcc_input(seed)
        if not seed[0] & 1:
            parts = [p for t, f, p in split_rtcp(seed[1:]) if (t, f) == (205, 15)]
            assert len(parts) == 1
            parse_transport_feedback(parts[0])  # valid: raises on any fault
    rng = random.Random(5)
    for _ in range(3000):
        twcc_input(mutate(rng.choice(seeds), rng))


def test_the_twcc_checks_catch_a_crash_and_a_miscount(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxwire import twcc

    seed = targets.twcc_seeds()[1]

    def crashes(packet: bytes) -> None:
        raise IndexError("chunk")

    monkeypatch.setattr(targets, "parse_transport_feedback", crashes)
    with pytest.raises(Finding, match="IndexError"):
        twcc_input(seed)
    monkeypatch.undo()

    def overcounts(self: twcc.TransportCcSender, fb: twcc.TransportFeedback) -> object:
        got = original(self, fb)
        self.lost += 1000
        return got

    original = twcc.TransportCcSender.feedback
    monkeypatch.setattr(twcc.TransportCcSender, "feedback", overcounts)
    with pytest.raises(Finding, match="do not add up"):
        twcc_input(seed)
    monkeypatch.undo()

    def drops_number(self: twcc.TransportCcSender, packet: bytes) -> bytes:
        self.sent += 1
        return bytes(packet)

    monkeypatch.setattr(twcc.TransportCcSender, "stamp", drops_number)
    with pytest.raises(Finding, match="unchanged"):
        twcc_input(targets.twcc_seeds()[-1])
