"""The one-call media path against the composition of voxwire's public kernels."""

from __future__ import annotations

import base64
import binascii

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxwire
from voxwire.errors import CodecError, PayloadError
from voxwire.media_path import MAX_PAYLOAD_BYTES, MediaDecoder, MediaEncoder, WireEncoding

ENCODINGS: list[WireEncoding] = ["mulaw", "alaw", "l16be", "l16le"]
RATE_PAIRS = [(8000, 16000), (8000, 8000), (16000, 8000), (8000, 24000), (16000, 48000)]
WIDTH = {"mulaw": 1, "alaw": 1, "l16be": 2, "l16le": 2}


def wire_to_pcm(encoding: str, raw: bytes) -> npt.NDArray[np.int16]:
    codes = np.frombuffer(raw, dtype=np.uint8)
    if encoding == "mulaw":
        return voxwire.decode_ulaw(codes)
    if encoding == "alaw":
        return voxwire.decode_alaw(codes)
    return np.frombuffer(raw, dtype=">i2" if encoding == "l16be" else "<i2").astype(np.int16)


def pcm_to_wire(encoding: str, pcm: npt.NDArray[np.int16]) -> bytes:
    if encoding == "mulaw":
        return bytes(voxwire.encode_ulaw(pcm))
    if encoding == "alaw":
        return bytes(voxwire.encode_alaw(pcm))
    return pcm.astype(">i2" if encoding == "l16be" else "<i2").tobytes()


class Composition:
    """The step-by-step reference: decode_* / numpy, then a voxwire.Resampler."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.resampler = voxwire.Resampler(in_rate, out_rate) if in_rate != out_rate else None

    def __call__(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        return pcm if self.resampler is None else self.resampler.process(pcm)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("line", "pipeline"), RATE_PAIRS)
def test_decoder_equals_composition(encoding: WireEncoding, line: int, pipeline: int) -> None:
    rng = np.random.default_rng(line + pipeline)
    decoder = MediaDecoder(encoding, line, pipeline)
    ref = Composition(line, pipeline)
    for samples in (160, 1, 7, 0, 320, 2500, 3333, 80):
        raw = rng.integers(0, 256, samples * WIDTH[encoding], dtype=np.uint8).tobytes()
        text = base64.b64encode(raw).decode("ascii")
        expect = ref(wire_to_pcm(encoding, raw))
        got = decoder.decode(text if samples % 2 else text.encode("ascii"))
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, expect)
    assert decoder.latency == (ref.resampler.latency if ref.resampler else 0.0)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("line", "source"), RATE_PAIRS)
def test_encoder_equals_composition(encoding: WireEncoding, line: int, source: int) -> None:
    rng = np.random.default_rng(line * 3 + source)
    encoder = MediaEncoder(encoding, source, line)
    ref = Composition(source, line)
    for samples in (480, 1, 0, 5, 961, 4000, 320):
        pcm = rng.integers(-32768, 32768, samples).astype(np.int16)
        expect = base64.b64encode(pcm_to_wire(encoding, ref(pcm))).decode("ascii")
        assert encoder.output_size(samples) == len(expect)
        got = encoder.encode(pcm)
        assert isinstance(got, str)
        assert got == expect


def test_encoder_audioop_mode() -> None:
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    encoder = MediaEncoder("mulaw", 8000, 8000, mode="audioop")
    expect = base64.b64encode(bytes(voxwire.encode_ulaw(pcm, mode="audioop"))).decode()
    assert encoder.encode(pcm) == expect
    assert encoder.encode(pcm) != base64.b64encode(bytes(voxwire.encode_ulaw(pcm))).decode()


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 400), min_size=1, max_size=12),
    encoding=st.sampled_from(ENCODINGS),
    seed=st.integers(0, 2**32 - 1),
)
def test_output_does_not_depend_on_message_boundaries(
    cuts: list[int], encoding: WireEncoding, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-20000, 20000, sum(cuts)).astype(np.int16)
    whole = MediaDecoder(encoding, 8000, 16000).decode(
        base64.b64encode(pcm_to_wire(encoding, pcm)).decode()
    )
    decoder = MediaDecoder(encoding, 8000, 16000)
    encoder = MediaEncoder(encoding, 24000, 8000)
    parts = []
    encoded = []
    pos = 0
    for n in cuts:
        chunk = pcm[pos : pos + n]
        pos += n
        parts.append(decoder.decode(base64.b64encode(pcm_to_wire(encoding, chunk)).decode()))
        encoded.append(encoder.encode(chunk))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    line = voxwire.Resampler(24000, 8000).process(pcm)
    wire = b"".join(base64.b64decode(e, validate=True) for e in encoded)
    assert wire == pcm_to_wire(encoding, line)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("Zm9", "bad_length"),
        ("Zm9v\n", "bad_length"),
        ("Zm9v\r\nYm", "bad_character"),
        ("Zm9v YmF", "bad_character"),
        ("Zm-v", "bad_character"),  # URL-safe alphabet (RFC 4648 section 5) is not accepted
        ("Zm9=", "bad_padding"),  # non-zero leftover bits
        ("Zh==", "bad_padding"),
        ("Z===", "bad_padding"),
        ("Zg==Zg==", "bad_padding"),
        ("Zé==", "bad_character"),
        (b"Zm9\xff", "bad_character"),
    ],
)
def test_malformed_payload_reasons(payload: str | bytes, reason: str) -> None:
    decoder = MediaDecoder("mulaw", 8000, 16000)
    with pytest.raises(PayloadError) as info:
        decoder.decode(payload)
    assert info.value.reason == reason
    assert isinstance(info.value, CodecError)
    assert isinstance(info.value, ValueError)
    assert reason in str(info.value)


def test_bad_message_leaves_stream_unchanged() -> None:
    rng = np.random.default_rng(5)
    decoder = MediaDecoder("mulaw", 8000, 16000)
    ref = voxwire.Resampler(8000, 16000)
    for bad_at in (3, 7000):
        bad = list(base64.b64encode(rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()))
        bad[bad_at] = ord("*")
        with pytest.raises(PayloadError, match="bad_character"):
            decoder.decode(bytes(bad))
        raw = rng.integers(0, 256, 160, dtype=np.uint8).tobytes()
        np.testing.assert_array_equal(
            decoder.decode(base64.b64encode(raw)),
            ref.process(voxwire.decode_ulaw(np.frombuffer(raw, dtype=np.uint8))),
        )


def test_odd_l16_and_hostile_sizes() -> None:
    l16 = MediaDecoder("l16le", 16000, 16000)
    with pytest.raises(PayloadError) as info:
        l16.decode("Zm9v")  # three bytes
    assert info.value.reason == "odd_length"
    with pytest.raises(PayloadError) as info:
        l16.decode("@@@@")  # not base64 at all: reported before the sample count
    assert info.value.reason == "bad_character"
    assert l16.decode("").shape == (0,)
    huge = "A" * (4 * (MAX_PAYLOAD_BYTES // 3 + 2))
    with pytest.raises(PayloadError) as info:
        MediaDecoder("mulaw", 8000, 16000).decode(huge)
    assert info.value.reason == "too_long"
    # The largest accepted payload is decoded whole.
    limit = base64.b64encode(bytes(MAX_PAYLOAD_BYTES)).decode()
    assert len(MediaDecoder("mulaw", 8000, 8000).decode(limit)) == MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError, match="at most"):
        MediaEncoder("mulaw", 8000, 8000).encode(np.zeros((1 << 20) + 1, dtype=np.int16))


def test_out_argument() -> None:
    decoder = MediaDecoder("mulaw", 8000, 8000)
    payload = base64.b64encode(bytes(range(160))).decode()
    buf = np.full(200, 7, dtype=np.int16)
    got = decoder.decode(payload, out=buf)
    assert got.base is buf or got is buf
    np.testing.assert_array_equal(got, voxwire.decode_ulaw(np.arange(160, dtype=np.uint8)))
    assert (buf[160:] == 7).all()
    exact = np.empty(160, dtype=np.int16)
    assert decoder.decode(payload, out=exact) is exact
    with pytest.raises(ValueError, match="at least"):
        decoder.decode(payload, out=np.empty(100, dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        decoder.decode(payload, out=np.empty(200, dtype=np.int32))
    with pytest.raises(ValueError, match="writeable"):
        decoder.decode(payload, out=np.empty((2, 100), dtype=np.int16))
    readonly = np.empty(200, dtype=np.int16)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        decoder.decode(payload, out=readonly)


def test_wrong_types_and_dtypes() -> None:
    decoder = MediaDecoder("mulaw", 8000, 16000)
    encoder = MediaEncoder("mulaw", 24000, 8000)
    for bad in (None, 3, bytearray(b"Zm9v"), memoryview(b"Zm9v")):
        with pytest.raises(TypeError, match="str or bytes"):
            decoder.decode(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decoder.decode()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        decoder.decode("Zm9v", output=None)  # type: ignore[call-arg]
    for arr in (np.zeros(480, dtype=np.int32), np.zeros(480, dtype=np.float32)):
        with pytest.raises(TypeError, match="int16"):
            encoder.encode(arr)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="numpy int16 array"):
        encoder.encode(b"\x00\x00")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="C-contiguous"):
        encoder.encode(np.zeros(960, dtype=np.int16)[::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        encoder.encode(np.zeros((2, 240), dtype=np.int16))
    with pytest.raises(ValueError, match="encoding"):
        MediaDecoder("opus", 8000, 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line_rate"):
        MediaDecoder("mulaw", 10, 16000)
    with pytest.raises(ValueError, match="mode"):
        MediaEncoder("mulaw", 8000, 8000, mode="other")  # type: ignore[arg-type]


def test_attributes_and_reset() -> None:
    decoder = MediaDecoder("l16be", 8000, 16000, "high")
    assert (decoder.encoding, decoder.line_rate, decoder.pipeline_rate) == ("l16be", 8000, 16000)
    assert decoder.latency == voxwire.Resampler(8000, 16000, "high").latency
    encoder = MediaEncoder("alaw", 24000, 8000)
    assert (encoder.encoding, encoder.source_rate, encoder.line_rate) == ("alaw", 24000, 8000)
    payload = base64.b64encode(bytes(range(64)) * 5).decode()
    first = decoder.decode(payload)
    decoder.decode(payload)
    decoder.reset()
    np.testing.assert_array_equal(decoder.decode(payload), first)
    pcm = np.arange(480, dtype=np.int16)
    a = encoder.encode(pcm)
    encoder.encode(pcm)
    encoder.reset()
    assert encoder.encode(pcm) == a


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="AQgw/+Zm9v=-_ \n*\x00é", max_size=40))
def test_base64_matches_the_standard_library_on_canonical_text(text: str) -> None:
    decoder = MediaDecoder("mulaw", 8000, 8000)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        with pytest.raises(PayloadError):
            decoder.decode(text)
        return
    if not text.isascii() or base64.b64encode(raw).decode() != text:
        # not the canonical text of its bytes (RFC 4648 section 3.5: leftover bits, or
        # padding past a whole group, which the standard library lets through): refused
        with pytest.raises(PayloadError) as info:
            decoder.decode(text)
        assert info.value.reason in ("bad_padding", "bad_length")
        return
    np.testing.assert_array_equal(
        decoder.decode(text), voxwire.decode_ulaw(np.frombuffer(raw, dtype=np.uint8))
    )
