"""SDES-SRTP (RFC 4568) on SIP calls: the a=crypto negotiation, the server's policy (SRTP
over TLS only unless told otherwise), voxwire's SRTP against an SRTP written here from
RFC 3711 (AES counter mode, HMAC-SHA1-80, the key derivation) with the ``cryptography``
package, and baresip calling over TLS with mandatory SRTP, recording what it heard."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

import pytest

from tests.sip.uac import CALLER, Caller, responses
from voxwire.errors import SdpError
from voxwire.sip.sdp import Crypto, answer_offer, parse_sdp
from voxwire.sip.uas import IncomingCall, SipServer

pytest.importorskip("pylibsrtp", reason="SRTP needs pip install 'voxwire[sip-srtp]'")

from voxwire.sip.srtp import SrtpContext

HEAD = "v=0\r\no=- 7 7 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
KEY80 = bytes(range(30))
KEY_GCM = bytes(range(100, 128))


def inline(key: bytes) -> str:
    return "inline:" + base64.b64encode(key).decode()


def savp(*crypto: str, proto: str = "RTP/SAVP") -> bytes:
    lines = "".join(f"a=crypto:{c}\r\n" for c in crypto)
    return (HEAD + f"m=audio 5004 {proto} 0\r\na=ptime:20\r\n{lines}").encode()


# --- negotiation -----------------------------------------------------------------------


def test_the_first_usable_crypto_line_is_answered_with_a_fresh_key_of_ours() -> None:
    sdp = savp(
        f"1 AES_CM_128_HMAC_SHA1_32 {inline(KEY80)}",  # a suite voxwire does not take
        f"2 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)}|2^20|1:4",  # lifetime and MKI
        f"3 AES_CM_128_HMAC_SHA1_80 {inline(KEY80[:20])}",  # too short a key
        "4 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        f"5 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)} UNENCRYPTED_SRTP",  # a session param
        f"6 AEAD_AES_128_GCM {inline(KEY_GCM)}",
        f"7 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)}",
    )
    answer = answer_offer(parse_sdp(sdp), srtp=True)
    assert answer.crypto is not None
    assert (answer.crypto.tag, answer.crypto.suite) == (6, "AEAD_AES_128_GCM")
    assert answer.crypto.remote_key == KEY_GCM
    assert len(answer.crypto.local_key) == 28
    assert answer.crypto.local_key != KEY_GCM
    body = answer.render("192.0.2.1", 40000, session_id=1).decode()
    assert "m=audio 40000 RTP/SAVP 0\r\n" in body
    (line,) = [ln for ln in body.split("\r\n") if ln.startswith("a=crypto:")]
    assert line == f"a=crypto:6 AEAD_AES_128_GCM {inline(answer.crypto.local_key)}"
    # the keys are in no repr
    for text in (repr(answer), repr(answer.crypto), repr(parse_sdp(sdp))):
        assert base64.b64encode(KEY_GCM).decode() not in text
        assert base64.b64encode(answer.crypto.local_key).decode() not in text
    # two answers, two keys; a re-offer with the same key keeps ours
    again = answer_offer(parse_sdp(sdp), srtp=True)
    assert again.crypto is not None
    assert again.crypto.local_key != answer.crypto.local_key
    kept = answer_offer(parse_sdp(sdp), srtp=True, keep=answer.crypto)
    assert kept.crypto == answer.crypto


def test_srtp_streams_are_refused_where_srtp_is_not_taken() -> None:
    sdp = savp(f"1 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)}")
    with pytest.raises(SdpError) as e:
        answer_offer(parse_sdp(sdp))
    assert e.value.reason == "srtp_needs_tls"
    # a SAVP stream without a usable key is no stream at all
    with pytest.raises(SdpError) as e:
        answer_offer(parse_sdp(savp(f"1 F8_128_HMAC_SHA1_80 {inline(KEY80)}")), srtp=True)
    assert e.value.reason == "no_common_codec"
    # beside a plain stream, a refused SAVP one gets port 0 and the plain one is taken
    both = savp(f"1 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)}") + b"m=audio 5006 RTP/AVP 0\r\n"
    answer = answer_offer(parse_sdp(both))
    assert (answer.index, answer.crypto) == (1, None)


def _invite(server: SipServer, body: bytes) -> int:
    caller = Caller(call_id=os.urandom(4).hex())
    server.receive(caller.request("INVITE", body=body), CALLER, 0.0)
    return responses(server.datagrams())[-1].status


@pytest.mark.parametrize(
    ("transport", "policy", "taken"),
    [
        ("UDP", "tls", False),
        ("TCP", "tls", False),
        ("TLS", "tls", True),
        ("UDP", "always", True),
        ("TLS", "never", False),
    ],
)
def test_the_server_takes_srtp_over_tls_only_unless_told(
    transport: str, policy: str, taken: bool
) -> None:
    s = SipServer("192.0.2.1", 5061, transport=transport, srtp=policy)  # type: ignore[arg-type]
    status = _invite(s, savp(f"1 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)}"))
    if taken:
        assert status == 100
        (call,) = s.events()
        assert isinstance(call, IncomingCall)
        assert call.answer.crypto is not None
        assert call.answer.crypto.remote_key == KEY80
    else:
        assert status == 488
        assert s.errors["sdp_srtp_needs_tls"] == 1


def test_a_reoffer_must_keep_the_keys() -> None:
    from tests.sip.test_sip_reinvite import ack, reinvite

    s = SipServer("192.0.2.1", 5061, transport="TLS")
    caller = Caller()
    body = savp(f"1 AES_CM_128_HMAC_SHA1_80 {inline(KEY80)}")
    s.receive(caller.request("INVITE", body=body), CALLER, 0.0)
    (call,) = s.events()
    assert isinstance(call, IncomingCall)
    s.answer(call.handle, "192.0.2.1", 40000, 0.0)
    (ok,) = [r for r in responses(s.datagrams()) if r.status == 200]
    caller.to_tag = ok.to.tag
    s.receive(caller.ack(), CALLER, 0.1)
    s.events()
    same = reinvite(s, caller, body.replace(b"a=ptime:20", b"a=ptime:20\r\na=sendonly"), 1.0)
    assert same.status == 200
    assert same.body.split(b"a=crypto:")[1] == ok.body.split(b"a=crypto:")[1]  # our key kept
    ack(s, caller, 1.1)
    other = savp(f"1 AES_CM_128_HMAC_SHA1_80 {inline(bytes(30))}")
    assert reinvite(s, caller, other, 2.0).status == 488
    assert s.errors["sdp_crypto_changed"] == 1
    plain = (HEAD + "m=audio 5004 RTP/AVP 0\r\n").encode()
    assert reinvite(s, caller, plain, 3.0).status == 488  # no falling back to plain RTP


# --- an SRTP of RFC 3711 written here, as the oracle ---------------------------------------


def _aes_ctr(key: bytes, iv: bytes, length: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(bytes(length)) + encryptor.finalize()


def _derive(master: bytes, salt: bytes, label: int, length: int) -> bytes:
    # RFC 3711 section 4.3.1 with a key derivation rate of 0 (r = 0)
    x = int.from_bytes(salt, "big") ^ (label << 48)
    return _aes_ctr(master, (x << 16).to_bytes(16, "big"), length)


class Rfc3711:
    """AES_CM_128_HMAC_SHA1_80 for one SSRC whose roll-over counter stays 0."""

    def __init__(self, key_and_salt: bytes) -> None:
        master, salt = key_and_salt[:16], key_and_salt[16:]
        self.k_e = _derive(master, salt, 0, 16)
        self.k_a = _derive(master, salt, 1, 20)
        self.k_s = _derive(master, salt, 2, 14)

    def _keystream(self, ssrc: int, seq: int, length: int) -> bytes:
        iv = (int.from_bytes(self.k_s, "big") << 16) ^ (ssrc << 64) ^ (seq << 16)
        return _aes_ctr(self.k_e, iv.to_bytes(16, "big"), length)

    def protect(self, rtp: bytes) -> bytes:
        seq, ssrc = struct.unpack("!H", rtp[2:4])[0], struct.unpack("!I", rtp[8:12])[0]
        stream = self._keystream(ssrc, seq, len(rtp) - 12)
        payload = bytes(a ^ b for a, b in zip(rtp[12:], stream, strict=True))
        packet = rtp[:12] + payload
        tag = hmac.new(self.k_a, packet + bytes(4), hashlib.sha1).digest()[:10]
        return packet + tag

    def unprotect(self, srtp: bytes) -> bytes:
        packet, tag = srtp[:-10], srtp[-10:]
        expected = hmac.new(self.k_a, packet + bytes(4), hashlib.sha1).digest()[:10]
        assert hmac.compare_digest(tag, expected), "authentication tag"
        seq, ssrc = struct.unpack("!H", packet[2:4])[0], struct.unpack("!I", packet[8:12])[0]
        stream = self._keystream(ssrc, seq, len(packet) - 12)
        return packet[:12] + bytes(a ^ b for a, b in zip(packet[12:], stream, strict=True))


def rtp(seq: int, payload: bytes, ssrc: int = 0x1234ABCD) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, ssrc) + payload


def test_voxwires_srtp_against_rfc_3711_written_here() -> None:
    pytest.importorskip("cryptography", reason="the oracle's AES is the cryptography package")
    ours, theirs = os.urandom(30), os.urandom(30)
    voxwire = SrtpContext(Crypto(1, "AES_CM_128_HMAC_SHA1_80", theirs, ours))
    caller_tx, caller_rx = Rfc3711(theirs), Rfc3711(ours)
    for seq in range(1, 40):
        payload = os.urandom(160)
        # what voxwire sends, the caller's side decrypts with voxwire's key
        sent = voxwire.protect(rtp(seq, payload, ssrc=0x5EC0))
        assert sent is not None
        assert sent[12:172] != payload  # encrypted
        assert caller_rx.unprotect(sent) == rtp(seq, payload, ssrc=0x5EC0)
        # what the caller sends, voxwire decrypts with the caller's key
        assert voxwire.unprotect(caller_tx.protect(rtp(seq, payload))) == rtp(seq, payload)
    # a replayed packet, a forged one, one damaged in transit, a too-short one: dropped
    old = caller_tx.protect(rtp(5, b"x" * 160))
    assert voxwire.unprotect(old) is None
    forged = Rfc3711(os.urandom(30)).protect(rtp(50, b"x" * 160))
    assert voxwire.unprotect(forged) is None
    damaged = bytearray(caller_tx.protect(rtp(51, b"x" * 160)))
    damaged[40] ^= 0x01
    assert voxwire.unprotect(bytes(damaged)) is None
    assert voxwire.unprotect(b"\x80" * 20) is None
    assert dict(voxwire.dropped) == {"replay": 1, "auth": 2, "malformed": 1}
    # packets far behind the replay window (128) are refused too, later ones taken
    assert voxwire.unprotect(caller_tx.protect(rtp(400, b"y" * 160))) is not None
    assert voxwire.unprotect(caller_tx.protect(rtp(52, b"y" * 160))) is None
    assert voxwire.dropped["replay"] == 2
    text = repr(voxwire)
    assert ours.hex() not in text
    assert theirs.hex() not in text


def test_gcm_both_ways_with_pylibsrtp_as_the_peer() -> None:
    import pylibsrtp

    ours, theirs = os.urandom(28), os.urandom(28)
    voxwire = SrtpContext(Crypto(1, "AEAD_AES_128_GCM", theirs, ours))
    profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    tx = pylibsrtp.Session(
        pylibsrtp.Policy(theirs, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    )
    rx = pylibsrtp.Session(
        pylibsrtp.Policy(ours, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    )
    packet = rtp(1, os.urandom(160))
    sent = voxwire.protect(packet)
    assert sent is not None
    assert len(sent) == len(packet) + 16  # the GCM tag
    assert rx.unprotect(sent) == packet
    assert voxwire.unprotect(tx.protect(packet)) == packet
