"""Type aliases shared across the package, defined once.

``PCM`` is a one-dimensional array of signed 16-bit linear samples, the unit every
codec, resampler, pacer and service in voxwire reads and writes. Modules that
exposed their own ``PCM`` name keep it: each one re-exports this alias.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["PCM"]

PCM: TypeAlias = npt.NDArray[np.int16]
