# Hand-kept stub of the native module; checked by `python -m mypy.stubtest voxwire._core`.
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

_Mode = Literal["g191", "audioop"]

@overload
def encode_ulaw(
    pcm: npt.NDArray[np.int16], /, *, mode: _Mode = "g191", out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]: ...
@overload
def encode_ulaw(pcm: Buffer, /, *, mode: _Mode = "g191", out: None = None) -> bytes: ...
@overload
def encode_ulaw(
    pcm: Buffer, /, *, mode: _Mode = "g191", out: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]: ...
@overload
def encode_alaw(
    pcm: npt.NDArray[np.int16], /, *, mode: _Mode = "g191", out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]: ...
@overload
def encode_alaw(pcm: Buffer, /, *, mode: _Mode = "g191", out: None = None) -> bytes: ...
@overload
def encode_alaw(
    pcm: Buffer, /, *, mode: _Mode = "g191", out: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]: ...
@overload
def decode_ulaw(
    codes: npt.NDArray[np.uint8], /, *, out: npt.NDArray[np.int16] | None = None
) -> npt.NDArray[np.int16]: ...
@overload
def decode_ulaw(codes: Buffer, /, *, out: None = None) -> bytes: ...
@overload
def decode_ulaw(codes: Buffer, /, *, out: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]: ...
@overload
def decode_alaw(
    codes: npt.NDArray[np.uint8], /, *, out: npt.NDArray[np.int16] | None = None
) -> npt.NDArray[np.int16]: ...
@overload
def decode_alaw(codes: Buffer, /, *, out: None = None) -> bytes: ...
@overload
def decode_alaw(codes: Buffer, /, *, out: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]: ...
def _pybind11_encode_ulaw(pcm: bytes) -> bytes: ...
def _pybind11_decode_ulaw(codes: bytes) -> bytes: ...

VAD_SPEECH: int
VAD_ACTIVE: int
VAD_START: int
VAD_END: int

class VadDetector:
    def __init__(
        self,
        rate: int,
        frame_ms: int,
        *,
        sensitivity: float,
        start_threshold: float,
        stop_threshold: float,
        hold_ms: int,
        min_speech_ms: int,
        hangover_ms: int,
    ) -> None: ...
    def process(self, frame: npt.NDArray[np.int16]) -> tuple[float, int, int]: ...
    def process_batch(
        self, samples: npt.NDArray[np.int16]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...
    def reset(self) -> None: ...
    @property
    def frame_samples(self) -> int: ...
    @property
    def frames(self) -> int: ...
    @property
    def active(self) -> bool: ...
    @property
    def noise_floor_db(self) -> float: ...

class VadSegmenter:
    def __init__(
        self, frame_samples: int, min_speech_frames: int, hangover_frames: int
    ) -> None: ...
    def run(
        self, speech: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...
    def reset(self) -> None: ...
    @property
    def active(self) -> bool: ...
    @property
    def frames(self) -> int: ...

def rtp_parse(
    data: Buffer,
) -> tuple[bool, int, int, int, int, tuple[int, ...], tuple[int, bytes] | None, bytes, int]: ...
def rtp_build(
    marker: bool,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    csrcs: list[int],
    extension_profile: int | None,
    extension: Buffer,
    payload: Buffer,
    padding: int,
) -> bytes: ...

class RtpSource:
    def __init__(
        self, clock_rate: int, min_sequential: int, max_dropout: int, max_misorder: int
    ) -> None: ...
    def receive(
        self, sequence: int, timestamp: int, ssrc: int, arrival_ms: int
    ) -> tuple[str, bool, int, int]: ...
    def stats(self) -> dict[str, Any]: ...
    def interval_report(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    @property
    def valid(self) -> bool: ...
    @property
    def ssrc(self) -> int: ...
    @property
    def highest_sequence(self) -> int: ...

class Concealer:
    def __init__(self, sample_rate: int) -> None: ...
    def good(self, frame: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]: ...
    def conceal(
        self, samples: int, *, out: npt.NDArray[np.int16] | None = None
    ) -> npt.NDArray[np.int16]: ...
    def reset(self) -> None: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def pitch(self) -> int: ...
    @property
    def concealed_in_loss(self) -> int: ...

def opus_packet_info(data: Buffer) -> tuple[int, str, bool, int, int, int]: ...
def opus_has_lbrr(data: Buffer) -> bool: ...

class JitterBuffer:
    def __init__(
        self,
        clock_rate: int,
        frame_ms: int,
        capacity: int,
        max_payload: int,
        min_delay_ms: int,
        max_delay_ms: int,
        initial_delay_ms: int,
        quantile: float,
        reorder_quantile: float,
        forget: float,
        fec_lookahead: bool,
        g711_quiet_level: int,
    ) -> None: ...
    def insert(
        self,
        sequence: int,
        timestamp: int,
        payload: Buffer,
        arrival_ms: int,
        ssrc: int,
        payload_type: int,
        marker: bool,
        has_fec: bool,
        low_energy: bool,
    ) -> str: ...
    def insert_redundant(
        self, timestamp: int, payload_type: int, payload: Buffer, arrival_ms: int
    ) -> str: ...
    def pull(
        self, now_ms: int
    ) -> tuple[str, str, bool, bool, int, int, int, int, int, int, bytes]: ...
    def stats(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    @property
    def target_delay_ms(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def samples_per_frame(self) -> int: ...
