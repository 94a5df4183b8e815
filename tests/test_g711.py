"""G.711: exhaustive checks against an independent reference, inputs, outputs and errors."""

from __future__ import annotations

import array
import sys
import threading
import warnings
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import voxwire
from voxwire import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw

# --- An independent reference, written from the G.191 procedure in plain Python ----------


def ref_ulaw(x: int, audioop_rounding: bool = False) -> int:
    """G.191 ulaw_compress for one 16-bit sample (audioop's rounding of negatives on request)."""
    negative_mag = -(x >> 2) if audioop_rounding else (~x) >> 2
    mag = negative_mag if x < 0 else x >> 2
    mag = min(mag + 33, 0x1FFF)
    segno = 1
    i = mag >> 6
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (15 - ((mag >> segno) & 0xF))
    return code | 0x80 if x >= 0 else code


def ref_alaw(x: int) -> int:
    """G.191 alaw_compress for one 16-bit sample."""
    ix = ((~x) >> 4) if x < 0 else (x >> 4)
    if ix > 15:
        exponent = 1
        while ix > 31:
            ix >>= 1
            exponent += 1
        ix = ix - 16 + (exponent << 4)
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_ulaw_expand(code: int) -> int:
    """G.191 ulaw_expand for one code."""
    sign = -1 if code < 0x80 else 1
    inv = ~code
    exponent = (inv >> 4) & 7
    mantissa = inv & 0xF
    step = 4 << (exponent + 1)
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_expand(code: int) -> int:
    """G.191 alaw_expand for one code."""
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mant = ix & 0xF
    if exponent > 0:
        mant += 16
    mant = (mant << 4) + 8
    if exponent > 1:
        mant <<= exponent - 1
    return mant if code > 127 else -mant


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)
REF_ULAW = np.array([ref_ulaw(int(x)) for x in ALL_SAMPLES], dtype=np.uint8)
REF_ULAW_AUDIOOP = np.array([ref_ulaw(int(x), True) for x in ALL_SAMPLES], dtype=np.uint8)
REF_ALAW = np.array([ref_alaw(int(x)) for x in ALL_SAMPLES], dtype=np.uint8)
REF_ULAW_DEC = np.array([ref_ulaw_expand(c) for c in range(256)], dtype=np.int16)
REF_ALAW_DEC = np.array([ref_alaw_expand(c) for c in range(256)], dtype=np.int16)


def ref_encode(law: str, pcm: npt.NDArray[np.int16], audioop_rounding: bool = False) -> bytes:
    table = REF_ALAW if law == "alaw" else (REF_ULAW_AUDIOOP if audioop_rounding else REF_ULAW)
    return bytes(table[pcm.astype(np.int32) + 32768])


def load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


AUDIOOP = load_audioop()
needs_audioop = pytest.mark.skipif(AUDIOOP is None, reason="audioop not available")

ENCODERS = {"ulaw": encode_ulaw, "alaw": encode_alaw}
DECODERS = {"ulaw": decode_ulaw, "alaw": decode_alaw}
REF_DEC = {"ulaw": REF_ULAW_DEC, "alaw": REF_ALAW_DEC}


# --- Exhaustive correctness ----------------------------------------------------------------


def test_ulaw_encode_is_g191_exact_for_all_inputs() -> None:
    assert np.array_equal(encode_ulaw(ALL_SAMPLES), REF_ULAW)
    assert encode_ulaw(ALL_SAMPLES.tobytes()) == REF_ULAW.tobytes()


def test_ulaw_audioop_mode_for_all_inputs() -> None:
    got = encode_ulaw(ALL_SAMPLES, mode="audioop")
    assert np.array_equal(got, REF_ULAW_AUDIOOP)
    differ = ALL_SAMPLES[got != REF_ULAW]
    assert differ.size == 508
    assert (differ < 0).all()


@pytest.mark.parametrize("mode", ["g191", "audioop"])
def test_alaw_encode_for_all_inputs(mode: str) -> None:
    assert np.array_equal(encode_alaw(ALL_SAMPLES, mode=mode), REF_ALAW)  # type: ignore[arg-type]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_all_codes(law: str) -> None:
    got = DECODERS[law](ALL_CODES)
    assert got.dtype == np.int16
    assert np.array_equal(got, REF_DEC[law])
    assert DECODERS[law](ALL_CODES.tobytes()) == REF_DEC[law].tobytes()


def test_known_values() -> None:
    assert encode_ulaw(np.array([0, -1, 32767, -32768], dtype=np.int16)).tolist() == [
        0xFF,
        0x7F,
        0x80,
        0x00,
    ]
    assert decode_ulaw(np.array([0x80, 0x00, 0xFF, 0x7F], dtype=np.uint8)).tolist() == [
        32124,
        -32124,
        0,
        0,
    ]
    assert encode_alaw(np.array([0, -1, 32767, -32768], dtype=np.int16)).tolist() == [
        0xD5,
        0x55,
        0xAA,
        0x2A,
    ]
    assert decode_alaw(np.array([0xAA, 0x2A, 0xD5, 0x55], dtype=np.uint8)).tolist() == [
        32256,
        -32256,
        8,
        -8,
    ]


@needs_audioop
def test_bytes_identical_to_audioop_for_all_inputs() -> None:
    assert AUDIOOP is not None
    pcm = ALL_SAMPLES.tobytes()
    codes = ALL_CODES.tobytes()
    assert encode_ulaw(pcm, mode="audioop") == AUDIOOP.lin2ulaw(pcm, 2)
    assert encode_alaw(pcm, mode="audioop") == AUDIOOP.lin2alaw(pcm, 2)
    assert encode_alaw(pcm) == AUDIOOP.lin2alaw(pcm, 2)
    assert decode_ulaw(codes) == AUDIOOP.ulaw2lin(codes, 2)
    assert decode_alaw(codes) == AUDIOOP.alaw2lin(codes, 2)
    assert encode_ulaw(pcm) != AUDIOOP.lin2ulaw(pcm, 2)  # the 508 G.191 differences


# --- Every length, every alignment (vector bodies and scalar tails) --------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_length_and_unaligned_buffers(law: str) -> None:
    rng = np.random.default_rng(7)
    samples = rng.integers(-32768, 32768, size=1024, dtype=np.int16)
    codes = rng.integers(0, 256, size=1024, dtype=np.uint8)
    raw = samples.tobytes()
    enc, dec = ENCODERS[law], DECODERS[law]
    for offset in (0, 1, 3):
        pcm_buf = bytearray(offset) + bytearray(raw)
        code_buf = bytearray(offset) + bytearray(codes.tobytes())
        pcm_view = memoryview(pcm_buf)[offset:]
        code_view = memoryview(code_buf)[offset:]
        for n in range(1025):
            assert enc(pcm_view[: 2 * n]) == ref_encode(law, samples[:n]), (offset, n)
            assert dec(code_view[:n]) == REF_DEC[law][codes[:n]].tobytes(), (offset, n)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_unaligned_numpy_arrays(law: str) -> None:
    # numpy arrays may be unaligned views into a byte buffer; the kernels must not care.
    rng = np.random.default_rng(8)
    samples = rng.integers(-32768, 32768, size=333, dtype=np.int16)
    buf = np.zeros(2 * 333 + 1, dtype=np.uint8)
    unaligned = buf[1:].view(np.int16)
    unaligned[:] = samples
    assert not unaligned.flags.aligned
    assert ENCODERS[law](unaligned).tobytes() == ref_encode(law, samples)
    out_buf = np.zeros(2 * 333 + 1, dtype=np.uint8)
    out = out_buf[1:].view(np.int16)
    codes = np.asarray(ENCODERS[law](samples))
    assert DECODERS[law](codes, out=out) is out
    assert np.array_equal(out, REF_DEC[law][codes])


# --- Input and output types ----------------------------------------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_bytes_like_inputs_give_bytes(law: str) -> None:
    samples = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    expected = ref_encode(law, samples)
    for obj in (
        samples.tobytes(),
        bytearray(samples.tobytes()),
        memoryview(samples.tobytes()),
        array.array("h", samples.tolist()),
        memoryview(samples),
    ):
        got = ENCODERS[law](obj)
        assert type(got) is bytes
        assert got == expected
    codes = expected
    for obj in (codes, bytearray(codes), memoryview(codes), array.array("B", codes)):
        got = DECODERS[law](obj)
        assert type(got) is bytes
        assert got == REF_DEC[law][np.frombuffer(codes, np.uint8)].tobytes()


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_numpy_inputs_give_numpy_of_the_same_shape(law: str) -> None:
    samples = np.arange(-6000, 6000, 1000, dtype=np.int16).reshape(3, 4)
    codes = ENCODERS[law](samples)
    assert isinstance(codes, np.ndarray)
    assert codes.dtype == np.uint8
    assert codes.shape == (3, 4)
    back = DECODERS[law](codes)
    assert back.dtype == np.int16
    assert back.shape == (3, 4)
    assert np.array_equal(back, REF_DEC[law][codes])
    scalar = ENCODERS[law](np.array(5, dtype=np.int16))
    assert scalar.shape == ()
    assert ENCODERS[law](np.zeros(0, dtype=np.int16)).shape == (0,)
    assert ENCODERS[law](b"") == b""
    assert DECODERS[law](b"") == b""


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_out_is_filled_and_returned(law: str) -> None:
    samples = np.array([[1, -2], [300, -400]], dtype=np.int16)
    out = np.empty(4, dtype=np.uint8)  # element count matters, not shape
    assert ENCODERS[law](samples, out=out) is out
    assert out.tobytes() == ref_encode(law, samples.ravel())
    pcm_out = np.empty((2, 2), dtype=np.int16)
    assert DECODERS[law](out.tobytes(), out=pcm_out) is pcm_out
    assert np.array_equal(pcm_out.ravel(), REF_DEC[law][out])
    assert ENCODERS[law](samples, out=None).shape == (2, 2)


# --- Errors: typed, naming what was expected and what came -----------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_wrong_dtype_is_a_type_error_naming_the_dtype(law: str) -> None:
    for bad in (
        np.zeros(4, dtype=np.float64),
        np.zeros(4, dtype=np.int32),
        np.zeros(4, dtype=np.uint16),
        np.zeros(4, dtype=">i2"),
    ):
        with pytest.raises(TypeError, match="dtype int16"):
            ENCODERS[law](bad)
    with pytest.raises(TypeError, match="dtype uint8"):
        DECODERS[law](np.zeros(4, dtype=np.int8))
    with pytest.raises(TypeError, match="dtype uint8"):
        DECODERS[law](np.zeros(4, dtype=np.int16))
    with pytest.raises(TypeError, match="bytes-like"):
        ENCODERS[law]("not audio")
    with pytest.raises(TypeError, match="bytes-like"):
        DECODERS[law](12)
    with pytest.raises(TypeError, match="format 'f'"):
        ENCODERS[law](array.array("f", [0.0, 1.0]))
    with pytest.raises(TypeError, match="format 'h'"):
        DECODERS[law](array.array("h", [0, 1]))


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_odd_pcm_length_is_a_value_error_naming_the_length(law: str) -> None:
    with pytest.raises(ValueError, match="got 321 bytes"):
        ENCODERS[law](bytes(321))
    with pytest.raises(ValueError, match="got 1 bytes"):
        ENCODERS[law](memoryview(b"\x00"))


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_non_contiguous_input_is_refused_not_copied(law: str) -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        ENCODERS[law](np.zeros(8, dtype=np.int16)[::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        DECODERS[law](memoryview(bytes(8))[::2])


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_bad_out_arguments(law: str) -> None:
    samples = np.zeros(4, dtype=np.int16)
    with pytest.raises(TypeError, match="dtype uint8"):
        ENCODERS[law](samples, out=np.empty(4, dtype=np.int16))
    with pytest.raises(TypeError, match="numpy uint8 array"):
        ENCODERS[law](samples, out=bytearray(4))
    with pytest.raises(ValueError, match="hold 4 elements, got 3"):
        ENCODERS[law](samples, out=np.empty(3, dtype=np.uint8))
    frozen = np.empty(4, dtype=np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        ENCODERS[law](samples, out=frozen)
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        ENCODERS[law](samples, out=np.empty(8, dtype=np.uint8)[::2])
    shared = np.zeros(8, dtype=np.int16)
    with pytest.raises(ValueError, match="overlap"):
        ENCODERS[law](shared, out=shared.view(np.uint8)[:8])
    codes = np.zeros(8, dtype=np.uint8)
    with pytest.raises(ValueError, match="overlap"):
        DECODERS[law](codes[:4], out=codes.view(np.int16))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be 'g191' or 'audioop', got 'G191'"):
        encode_ulaw(b"", mode="G191")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="mode must be"):
        encode_alaw(b"", mode=None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="exactly 1 positional argument"):
        encode_ulaw(b"", "g191")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="exactly 1 positional argument"):
        decode_ulaw()  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword argument 'mode'"):
        decode_alaw(b"", mode="g191")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"exactly 1 positional argument \(0 given\)"):
        encode_ulaw(pcm=b"")  # type: ignore[call-overload]


# --- Properties ------------------------------------------------------------------------------


@given(st.lists(st.integers(-32768, 32767), max_size=300), st.sampled_from(["ulaw", "alaw"]))
def test_encode_decode_error_within_half_a_step(values: list[int], law: str) -> None:
    x = np.array(values, dtype=np.int16)
    y = DECODERS[law](ENCODERS[law](x)).astype(np.int32)
    err = np.abs(y - x.astype(np.int32))
    # Half of the largest quantisation step (1024 mu-law, 1024 A-law at 16-bit scale), plus the
    # clipping of the top segment.
    limit = np.maximum(np.abs(x.astype(np.int32)) // 16 + 16, 0) + np.where(
        np.abs(x.astype(np.int32)) > 31000, 800, 0
    )
    assert (err <= limit).all()


@given(st.binary(max_size=400), st.sampled_from(["ulaw", "alaw"]))
def test_decode_then_encode_returns_the_codes(codes: bytes, law: str) -> None:
    again = ENCODERS[law](DECODERS[law](codes))
    if law == "ulaw":  # mu-law has two zeros; both decode to 0 and 0 encodes to 0xFF
        codes = codes.replace(b"\x7f", b"\xff")
    assert again == codes


# --- Large blocks (GIL released) -------------------------------------------------------------


def test_large_blocks_match_and_run_in_threads() -> None:
    rng = np.random.default_rng(3)
    blocks = [rng.integers(-32768, 32768, size=100_000, dtype=np.int16) for _ in range(4)]
    results: dict[int, tuple[bytes, bytes]] = {}

    def work(i: int) -> None:
        codes = encode_ulaw(blocks[i].tobytes())
        results[i] = (codes, decode_alaw(codes))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, block in enumerate(blocks):
        codes, pcm = results[i]
        assert codes == ref_encode("ulaw", block)
        assert pcm == REF_ALAW_DEC[np.frombuffer(codes, np.uint8)].tobytes()


def test_public_names() -> None:
    assert voxwire.encode_ulaw is encode_ulaw
    assert set(voxwire.g711.__all__) <= set(dir(voxwire))
    assert encode_ulaw.__doc__ is not None
    assert "Parameters" in encode_ulaw.__doc__
    assert encode_ulaw.__text_signature__ == "($module, pcm, /, *, mode='g191', out=None)"


def test_no_reference_leaks_on_success_or_error() -> None:
    x = np.zeros(16, dtype=np.int16)
    raw = x.tobytes()
    out = np.empty(16, dtype=np.uint8)
    before = (sys.getrefcount(x), sys.getrefcount(raw), sys.getrefcount(out))
    for _ in range(200):
        encode_ulaw(x, out=out)
        encode_alaw(x)
        decode_ulaw(encode_ulaw(raw))
        with pytest.raises(ValueError, match="hold 16 elements"):
            encode_ulaw(x, out=np.empty(3, dtype=np.uint8))
        with pytest.raises(TypeError):
            decode_ulaw(x)
    assert (sys.getrefcount(x), sys.getrefcount(raw), sys.getrefcount(out)) == before
