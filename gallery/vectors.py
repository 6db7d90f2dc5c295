"""The byte format of every stored vector (``Image.image_vector``, ``Image.hybrid_vector``,
``Label.vector``, an export's vectors): little-endian float32, one value after another.

Here, in the lowest package, so that the gallery (which stores the bytes and exports them) and
search (which makes and reads them) share one definition; numpy only, no Django.
"""

from __future__ import annotations

import numpy as np

DTYPE = "<f4"


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=DTYPE).tobytes()


def from_bytes(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=DTYPE)
