"""The SDP offer/answer fixes and RFC 4733 telephone events: pure functions."""

from __future__ import annotations

import pytest

from voxwire.protocols.events import Dtmf
from voxwire.protocols.telephone_event import TelephoneEvents
from voxwire.webrtc.sdp import MAX_SDP_BYTES, SdpError, fix_answer, parse_offer

# the shape of a browser's audio-only offer (written here from RFC 8866 / RFC 8829)
OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 110 126",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sendrecv",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "",
    ]
)

# what aiortc answers to it: Opus kept without its fmtp, telephone-event dropped
ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111 9 0 8",
        "c=IN IP4 127.0.0.1",
        "a=sendrecv",
        "a=mid:0",
        "a=ssrc:1234 cname:x",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=setup:active",
        "",
    ]
)


def test_the_offer_gives_opus_red_and_telephone_event_payload_types() -> None:
    offer = parse_offer(OFFER)
    assert (offer.opus, offer.red, offer.telephone_event) == (111, 63, 110)
    assert offer.opus_fmtp == "minptime=10;useinbandfec=1"
    assert offer.direction == "sendrecv"


def test_the_answer_asks_for_fec_and_takes_red_and_telephone_event() -> None:
    fixed = fix_answer(ANSWER, parse_offer(OFFER))
    lines = fixed.split("\r\n")
    assert "m=audio 40000 UDP/TLS/RTP/SAVPF 111 9 0 8 63 110" in lines  # Opus stays first
    at = lines.index("a=rtpmap:111 opus/48000/2")
    assert lines[at + 1] == "a=fmtp:111 minptime=10;useinbandfec=1"
    assert lines[at + 2 : at + 4] == ["a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111"]
    assert "a=rtpmap:110 telephone-event/48000" in lines
    assert "a=fmtp:110 0-15" in lines
    assert "a=ssrc:1234 cname:x" in lines  # the rest is kept
    assert fixed.endswith("\r\n")
    # fixing twice changes nothing more
    assert fix_answer(fixed, parse_offer(OFFER)) == fixed


def test_offers_voxwire_cannot_answer_are_refused_with_a_reason() -> None:
    no_opus = OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 foo/48000")
    with pytest.raises(SdpError) as err:
        parse_offer(no_opus)
    assert err.value.reason == "no_opus"
    video = OFFER.replace("m=audio", "m=video")
    with pytest.raises(SdpError) as err:
        parse_offer(video)
    assert err.value.reason == "no_audio"
    rejected = OFFER.replace("m=audio 9", "m=audio 0")
    with pytest.raises(SdpError):
        parse_offer(rejected)
    with pytest.raises(SdpError) as err:
        parse_offer("x" * (MAX_SDP_BYTES + 1))
    assert err.value.reason == "too_large"
    with pytest.raises(SdpError) as err:
        parse_offer(OFFER.replace("s=-", "s=\x00"))
    assert err.value.reason == "malformed"
    with pytest.raises(SdpError):
        parse_offer("hello")
    with pytest.raises(SdpError) as err:
        parse_offer("v=0\n" + "a=x\n" * 3000)
    assert err.value.reason == "too_large"


def _event(code: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return bytes([code, (0x80 if end else 0) | volume]) + duration.to_bytes(2, "big")


def test_a_key_press_is_one_event_whatever_the_end_packet_repeats() -> None:
    rx = TelephoneEvents(8000)
    got: list[Dtmf] = []
    for duration in (160, 320, 480):
        got += rx.receive(_event(5, False, duration), 1000)
    for _ in range(3):  # the end packet, sent three times
        got += rx.receive(_event(5, True, 800), 1000)
    assert got == [Dtmf("5", 100)]
    got = rx.receive(_event(11, True, 400), 2000)
    assert got == [Dtmf("#", 50)]


def test_an_event_whose_end_packets_were_lost_ends_at_the_next_one() -> None:
    rx = TelephoneEvents(48000)
    assert rx.receive(_event(1, False, 960), 0) == []
    assert rx.receive(_event(1, False, 1920), 0) == []
    # every end packet of "1" was lost; "2" begins
    assert rx.receive(_event(2, False, 960), 9600) == [Dtmf("1", 40)]
    assert rx.receive(_event(2, True, 4800), 9600) == [Dtmf("2", 100)]
    assert rx.receive(_event(2, True, 4800), 9600) == []


def test_bad_payloads_are_counted_not_raised() -> None:
    rx = TelephoneEvents()
    assert rx.receive(b"\x01", 0) == []
    assert rx.malformed == 1
    assert rx.receive(_event(40, True, 100), 5) == []  # a tone event, not a key
    assert rx.ignored == 1
    with pytest.raises(ValueError, match="clock_rate"):
        TelephoneEvents(0)
