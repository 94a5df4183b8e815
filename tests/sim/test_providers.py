"""The simulated providers' strict mode: every wire-format rule raises a ConformanceError,
and the lenient mode lets the same message through or reports it, never raising."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from voxwire.errors import ConformanceError
from voxwire.protocols import CODECS, MediaStreamCodec, protocol_names
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import PROVIDERS, ProviderSide, TwilioSide, Unexpected

WEBSOCKET = protocol_names(transport="websocket")


def opened(name: str, strict: bool) -> tuple[ProviderSide, MediaStreamCodec]:
    side = PROVIDERS[name](strict=strict, call_id="0f0e0d0c-0b0a-4908-8706-050403020100")
    codec = CODECS[name]()
    for message in side.opening():
        codec.receive(message, 0.0)
    assert codec.started is not None
    return side, codec


def sent(codec: MediaStreamCodec, side: ProviderSide) -> dict[str, str | bytes]:
    """One message of each kind the codec sends: audio, mark, clear."""
    out = {"audio": codec.send_audio(np.zeros(side.frame, np.int16))[0]}
    if codec.supports_marks:
        out["mark"] = codec.send_mark("m1")[0]
    if codec.supports_clear:
        out["clear"] = codec.send_clear()[0]
    return out


def edited(message: str | bytes, change: Callable[[dict[str, Any]], None]) -> str:
    assert isinstance(message, str)
    obj = json.loads(message)
    change(obj)
    return json.dumps(obj)


def set_payload(obj: dict[str, Any], value: object) -> None:
    for key in ("payload", "audio_b64"):
        for holder in (obj, *(v for v in obj.values() if isinstance(v, dict))):
            if key in holder:
                holder[key] = value
                return
    raise AssertionError(f"no payload in {obj}")


def violations(name: str) -> list[tuple[str, str | bytes]]:
    """(what, message) pairs, each breaking one documented rule of ``name``'s format."""
    side, codec = opened(name, strict=False)
    messages = sent(codec, side)
    out: list[tuple[str, str | bytes]] = []
    for kind, message in messages.items():
        if isinstance(message, str):
            out.append((f"{kind} with an extra key", edited(message, lambda o: o.update(x=1))))
    audio = messages["audio"]
    if isinstance(audio, str):
        out.append(("binary frame", b"\x00\x01"))
        out.append(("bad base64", edited(audio, lambda o: set_payload(o, "@@@@"))))
        out.append(("payload not a string", edited(audio, lambda o: set_payload(o, 12))))
    if name != "audiosocket":
        key = "type" if "type" in json.loads(messages.get("clear", '{"event": 1}')) else None
        key = key or ("action" if name == "vonage" else "event")
        out.append(("unknown message", json.dumps({key: "transcription"})))
    if "mark" in messages:

        def number_name(obj: dict[str, Any]) -> None:
            holder = next((v for v in obj.values() if isinstance(v, dict)), obj)
            holder["name"] = 7

        out.append(("mark name not a string", edited(messages["mark"], number_name)))
    return out


SPECIFIC: dict[str, list[tuple[str, Callable[[str | bytes], str | bytes]]]] = {
    "twilio": [("another stream", lambda a: str(a).replace('"MZ', '"MX'))],
    "exotel": [
        ("another stream", lambda a: edited(a, lambda o: o.update(stream_sid="other"))),
        ("not a multiple of 320 bytes", lambda a: edited(a, lambda o: set_payload(o, "AAAA"))),
    ],
    "plivo": [
        (
            "content type",
            lambda a: edited(a, lambda o: o["media"].update(contentType="audio/x-l16")),
        ),
        ("rate as text", lambda a: edited(a, lambda o: o["media"].update(sampleRate="8000"))),
    ],
    "teler": [
        ("no chunk_id", lambda a: edited(a, lambda o: o["data"].pop("chunk_id"))),
        ("a chunk_id used twice", lambda a: a),
        (
            "a chunk_id that is a boolean",
            lambda a: edited(a, lambda o: o["data"].update(chunk_id=True)),
        ),
        (
            "an interrupt of a chunk never sent",
            lambda a: json.dumps({"type": "interrupt", "chunk_id": 9}),
        ),
        (
            "an interrupt without an integer",
            lambda a: json.dumps({"type": "interrupt", "chunk_id": "1"}),
        ),
    ],
    "vonage": [("not 20 ms", lambda a: bytes(100))],
    "jambonz": [("odd byte count", lambda a: bytes(3))],
    "rawpcm": [("odd byte count", lambda a: bytes(3))],
    "audiosocket": [
        ("text on a byte stream", lambda a: "hello"),
        ("audio of another rate", lambda a: bytes([0x12, 0, 2, 0, 0])),
        ("hangup with a payload", lambda a: bytes([0x00, 0, 1, 0])),
    ],
}


def cases() -> list[tuple[str, str, str | bytes]]:
    out = [(name, what, message) for name in WEBSOCKET for what, message in violations(name)]
    for name, changes in SPECIFIC.items():
        side, codec = opened(name, strict=False)
        audio = codec.send_audio(np.zeros(side.frame, np.int16))[0]
        out += [(name, what, change(audio)) for what, change in changes]
    return out


CASES = cases()


def test_the_cases_cover_every_protocol() -> None:
    assert {name for name, _, _ in CASES} == set(PROVIDERS)


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_what_the_codec_sends_passes_the_strict_side(name: str) -> None:
    side, codec = opened(name, strict=True)
    phone = FakePhone(side)
    for message in sent(codec, side).values():
        phone.deliver(message)
    assert phone.unexpected == []


@pytest.mark.parametrize(("name", "what", "message"), CASES, ids=[f"{n}-{w}" for n, w, _ in CASES])
def test_a_strict_side_raises_on_each_violation(name: str, what: str, message: str | bytes) -> None:
    strict, codec = opened(name, strict=True)
    # a valid first audio message (chunk 1): the Teler case repeats its chunk_id
    assert strict.parse(codec.send_audio(np.zeros(strict.frame, np.int16))[0]) != []
    with pytest.raises(ConformanceError, match=f"^{name}: "):
        strict.parse(message)
    lenient, _ = opened(name, strict=False)
    lenient.parse(message)  # the lenient side reports or lets it pass; it never raises


def test_lenient_sides_report_what_the_provider_refuses() -> None:
    side = TwilioSide()
    (event,) = side.parse(json.dumps({"event": "dance", "streamSid": side.sid}))
    assert isinstance(event, Unexpected)
    assert "does not accept" in event.reason


def test_conformance_errors_are_voxwire_errors_and_assertions() -> None:
    from voxwire.errors import VoxwireError

    assert issubclass(ConformanceError, VoxwireError)
    assert issubclass(ConformanceError, AssertionError)
