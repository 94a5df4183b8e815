"""Transport-wide congestion control in the SDP answer: taken when the offer has it,
with the offer's extension ID; nothing changes when it has not."""

from __future__ import annotations

import dataclasses

from tests.webrtc.test_sdp_dtmf import ANSWER, OFFER
from voxwire.twcc import TRANSPORT_CC_URI
from voxwire.webrtc.sdp import fix_answer, parse_offer

EXT = f"a=extmap:3 {TRANSPORT_CC_URI}"

# Chrome's audio m-line lists these (its IDs), and transport-cc feedback for Opus
CHROME_EXTENSIONS = [
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    EXT,
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
]
OFFER_TWCC = OFFER.replace(
    "a=rtpmap:111 opus/48000/2\r\n",
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n",
).replace("a=sendrecv\r\n", "a=sendrecv\r\n" + "\r\n".join(CHROME_EXTENSIONS) + "\r\n")
# aiortc's answer keeps the audio extensions it knows (mid, audio level) with the offer's IDs
ANSWER_EXT = ANSWER.replace(
    "a=mid:0\r\n",
    "a=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
)


def test_the_offer_s_transport_cc_needs_the_extension_and_the_feedback() -> None:
    offer = parse_offer(OFFER_TWCC)
    assert offer.transport_cc == 3
    assert offer.extension_ids == frozenset({1, 2, 3, 4})
    assert parse_offer(OFFER).transport_cc is None
    # the extension without the feedback, or the feedback for another payload type: no
    assert parse_offer(OFFER_TWCC.replace("a=rtcp-fb:111 transport-cc", "")).transport_cc is None
    other = OFFER_TWCC.replace("a=rtcp-fb:111 transport-cc", "a=rtcp-fb:63 transport-cc")
    assert parse_offer(other).transport_cc is None
    # feedback for every payload type, and an extmap with a direction
    wild = OFFER_TWCC.replace("a=rtcp-fb:111 ", "a=rtcp-fb:* ").replace(
        "a=extmap:3 ", "a=extmap:3/sendrecv "
    )
    assert parse_offer(wild).transport_cc == 3
    # the feedback without the extension
    assert parse_offer(OFFER_TWCC.replace(EXT + "\r\n", "")).transport_cc is None


def test_the_answer_takes_transport_cc_with_the_offer_s_id() -> None:
    offer = parse_offer(OFFER_TWCC)
    fixed = fix_answer(ANSWER_EXT, offer)
    lines = fixed.split("\r\n")
    assert lines.count(EXT) == 1
    assert lines.index(EXT) == lines.index("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid") + 1
    at = lines.index("a=rtpmap:111 opus/48000/2")
    assert lines[at + 1 : at + 3] == [
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtcp-fb:111 transport-cc",
    ]
    assert parse_offer(fixed).transport_cc == 3  # what the peer reads back
    assert fix_answer(fixed, offer) == fixed  # fixing twice changes nothing more
    # every other line is the answer's or the fixes without transport-cc
    plain = fix_answer(ANSWER_EXT, offer, transport_cc=False)
    assert [x for x in lines if x not in (EXT, "a=rtcp-fb:111 transport-cc")] == plain.split("\r\n")


def test_without_it_in_the_offer_or_turned_off_the_answer_is_unchanged() -> None:
    assert fix_answer(ANSWER_EXT, parse_offer(OFFER)) == fix_answer(
        ANSWER_EXT, parse_offer(OFFER_TWCC), transport_cc=False
    )
    for fixed in (
        fix_answer(ANSWER_EXT, parse_offer(OFFER)),
        fix_answer(ANSWER_EXT, parse_offer(OFFER_TWCC), transport_cc=False),
    ):
        assert TRANSPORT_CC_URI not in fixed
        assert "transport-cc" not in fixed
        assert parse_offer(fixed).transport_cc is None


def test_an_id_the_bundle_uses_already_or_out_of_one_byte_range_is_not_taken() -> None:
    offer = parse_offer(OFFER_TWCC)
    # another m-line of the BUNDLE has ID 3 for something else
    video = (
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
        "a=extmap:3 urn:ietf:params:rtp-hdrext:toffset\r\na=rtpmap:96 VP8/90000\r\n"
    )
    for answer in (
        ANSWER_EXT + video,
        ANSWER_EXT.replace("a=extmap:4 ", "a=extmap:3 "),  # the audio section itself
    ):
        fixed = fix_answer(answer, offer)
        assert "transport-cc" not in fixed
        assert TRANSPORT_CC_URI not in fixed
    for ident in (15, 200):
        far = dataclasses.replace(offer, transport_cc=ident)
        assert "transport-cc" not in fix_answer(ANSWER_EXT, far)
    # an answer that took it already, under its own ID, is left as it is
    taken = ANSWER_EXT.replace("a=mid:0\r\n", f"a=mid:0\r\na=extmap:7 {TRANSPORT_CC_URI}\r\n")
    fixed = fix_answer(taken, offer)
    assert fixed.count(TRANSPORT_CC_URI) == 1
    assert f"a=extmap:7 {TRANSPORT_CC_URI}" in fixed


def test_the_audio_level_extension_s_id_is_read_from_the_section() -> None:
    assert parse_offer(OFFER_TWCC).audio_level == 1
    assert parse_offer(OFFER).audio_level is None
    # aiortc's answer keeps it with the offer's ID; that is the ID the session reads
    answer = fix_answer(ANSWER_EXT, parse_offer(OFFER_TWCC))
    assert parse_offer(answer).audio_level == 1
    two_byte = OFFER_TWCC.replace("a=extmap:1 urn", "a=extmap:200 urn")
    assert parse_offer(two_byte).audio_level == 200
    too_big = OFFER_TWCC.replace("a=extmap:1 urn", "a=extmap:4096 urn")
    assert parse_offer(too_big).audio_level is None
