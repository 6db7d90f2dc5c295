"""The ONNX Runtime encoder: the exported graphs (:mod:`search.encoder.export`) run by
onnxruntime, fed by :mod:`search.encoder.preprocessing`. Imports neither torch nor transformers:
a web process that serves this runtime never loads them (an import contract and
tests/search/test_web_without_torch.py hold it to that).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .preprocessing import ImagePreprocessing, TextTokenizer

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage


def providers() -> list[str]:
    """The execution providers to ask for: CUDA first where this onnxruntime build has it
    (``onnxruntime-gpu``), then the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def session(graph: Path, *, threads: int) -> Any:
    """An inference session of ``graph`` on ``threads`` cores."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads sleep rather than spin: spinning threads take the cores the web server, the
    # worker or another process beside them want (the same reason torch runs OMP_WAIT_POLICY=PASSIVE).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(graph), sess_options=options, providers=providers())


class OnnxEncoder:
    """:class:`search.encoder.base.Encoder` over an export directory."""

    runtime = "onnx"

    def __init__(self, export_dir: Path, *, threads: int, precision: str = "fp32") -> None:
        from . import cache

        self.directory = Path(export_dir)
        self.manifest = json.loads((self.directory / cache.MANIFEST).read_text(encoding="utf-8"))
        self.dimension = int(self.manifest["dimension"])
        self.precision = precision
        self.threads = threads
        self._tokenizer = TextTokenizer(self.directory / "tokenizer.json")
        self._text = session(self._graph("text", cache), threads=threads)
        self._text_inputs = [i.name for i in self._text.get_inputs()]
        self.provider = self._text.get_providers()[0]
        self._image: Any = None
        self._pixels: ImagePreprocessing | None = None
        if "image" in self.manifest["modalities"]:
            steps = json.loads((self.directory / "image_preprocessing.json").read_text(encoding="utf-8"))
            self._pixels = ImagePreprocessing.from_dict(steps)
            self._image = session(self._graph("image", cache), threads=threads)

    def _graph(self, tower: str, cache: Any) -> Path:
        if self.precision == "int8":
            return cache.int8_graph(self.directory, tower)
        return self.directory / f"{tower}.onnx"

    def encode_texts(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), batch_size):
            features = self._tokenizer(texts[start : start + batch_size])
            parts.append(self._text.run(None, {k: features[k] for k in self._text_inputs})[0])
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), dtype=np.float32)

    def encode_images(self, images: Sequence[PILImage], *, batch_size: int) -> np.ndarray:
        if self._image is None or self._pixels is None:
            raise ValueError(f"the model {self.manifest['model']!r} does not encode images")
        parts = []
        for start in range(0, len(images), batch_size):
            pixels = self._pixels.pixels(images[start : start + batch_size])
            parts.append(self._image.run(None, {"pixel_values": pixels})[0])
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), dtype=np.float32)
