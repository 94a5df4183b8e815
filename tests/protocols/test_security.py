"""Token authentication and Twilio request signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess

import pytest

from voxwire.protocols import CallStarted, MediaFormat
from voxwire.security import TokenAuth, twilio_signature, validate_twilio_signature

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def reference_signature(token: str, data: str) -> str:
    """An independent signer: the openssl command line when present, else hmac directly."""
    openssl = shutil.which("openssl")
    if openssl:
        digest = subprocess.run(
            [openssl, "dgst", "-sha1", "-hmac", token, "-binary"],
            input=data.encode(),
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout
    else:
        digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_signature_is_hmac_sha1_of_url_and_sorted_params() -> None:
    data = URL + "CallSid" + PARAMS["CallSid"] + "Caller" + PARAMS["Caller"]
    data += "Digits1234" + "From+12349013030" + "To+18005551212"
    expected = reference_signature(TOKEN, data)
    assert twilio_signature(TOKEN, URL, PARAMS) == expected
    assert validate_twilio_signature(TOKEN, URL, PARAMS, expected)


def test_any_change_invalidates_the_signature() -> None:
    good = twilio_signature(TOKEN, URL, PARAMS)
    assert not validate_twilio_signature(TOKEN, URL, {**PARAMS, "Digits": "1235"}, good)
    assert not validate_twilio_signature(TOKEN, URL + "&x=1", PARAMS, good)
    assert not validate_twilio_signature("54321", URL, PARAMS, good)
    assert not validate_twilio_signature(TOKEN, URL, PARAMS, "")
    assert not validate_twilio_signature(TOKEN, URL, PARAMS, good[:-2] + "==")


def test_default_port_variants_and_repeated_parameters() -> None:
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    sig = twilio_signature(TOKEN, with_port, PARAMS)
    assert validate_twilio_signature(TOKEN, URL, PARAMS, sig)
    assert validate_twilio_signature(TOKEN, with_port, PARAMS, twilio_signature(TOKEN, URL, PARAMS))
    repeated = {"b": ["2", "1"], "a": "x"}
    expected = reference_signature(TOKEN, URL + "ax" + "b2" + "b1")
    assert validate_twilio_signature(TOKEN, URL, repeated, expected)


def test_json_body_is_checked_with_body_sha256() -> None:
    body = b'{"CallSid":"CA1"}'
    url = "https://example.com/voice?bodySHA256=" + hashlib.sha256(body).hexdigest()
    sig = twilio_signature(TOKEN, url)
    assert validate_twilio_signature(TOKEN, url, None, sig, body=body)
    assert not validate_twilio_signature(TOKEN, url, None, sig, body=body + b" ")


def started(params: dict[str, str]) -> CallStarted:
    return CallStarted("s", "c", MediaFormat("mulaw", 8000), custom_parameters=params)


def test_token_auth_places() -> None:
    auth = TokenAuth("s3cret")
    assert auth.check_request({}, {"token": "s3cret"})
    assert auth.check_request({"X-Voxwire-Token": "s3cret"}, {})
    assert auth.check_request({"Authorization": "Bearer s3cret"}, {})
    assert not auth.check_request({"Authorization": "Bearer wrong"}, {"token": "nope"})
    assert not auth.check_request({}, {})
    assert auth.check_start(started({"token": "s3cret"}))
    assert not auth.check_start(started({"token": "s3cre"}))
    only_query = TokenAuth("s3cret", header=None, custom_parameter=None)
    assert not only_query.check_request({"Authorization": "Bearer s3cret"}, {})
    assert not only_query.deferred
    with pytest.raises(ValueError, match="non-empty"):
        TokenAuth("")


def test_connect_stream_twiml_escapes_and_carries_the_token() -> None:
    import xml.etree.ElementTree as ET

    from voxwire.protocols.twilio import connect_stream_twiml

    twiml = connect_stream_twiml("wss://voice.example.com/media?a=1&b=2", {"token": 'x"<&'})
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://voice.example.com/media?a=1&b=2"
    (param,) = stream.findall("Parameter")
    assert (param.get("name"), param.get("value")) == ("token", 'x"<&')
    with pytest.raises(ValueError, match="wss://"):
        connect_stream_twiml("http://voice.example.com/media")
