# Hand-kept stub of the native module; checked by `python -m mypy.stubtest voxwire._core`.
from typing import Literal, overload

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
