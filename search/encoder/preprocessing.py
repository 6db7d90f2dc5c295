"""What the models read, made without torch or transformers: the tokenizer's ids and the image
processor's pixels, exactly as sentence-transformers makes them.

The export (:mod:`search.encoder.export`) reads the settings off the loaded sentence-transformers
model, so that nothing here guesses a default: the tokenizer is saved with its truncation and
padding, the image processor as the steps below. The steps are those of transformers' PIL image
processor (the one sentence-transformers uses where torchvision is not installed): RGB with any
transparency composited onto white, a bicubic resize of the short side, a centred crop, a
rescale in float64 cast to float32, then the normalisation. tests/search/test_encoder_equality.py
proves the pixels and ids equal to sentence-transformers' own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage
    from tokenizers import Tokenizer


class UnsupportedPreprocessing(ValueError):
    """The model's image processor does something these steps do not reproduce."""


@dataclass(frozen=True)
class ImagePreprocessing:
    """One image processor's settings (saved as JSON beside the exported graphs)."""

    do_convert_rgb: bool
    do_resize: bool
    shortest_edge: int | None
    height: int | None
    width: int | None
    resample: int
    do_center_crop: bool
    crop_height: int | None
    crop_width: int | None
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, processor: Any) -> ImagePreprocessing:
        """The settings of a transformers image processor (read at export time)."""
        backend = getattr(processor, "backend", "pil")
        if backend != "pil":
            raise UnsupportedPreprocessing(
                f"the image processor {type(processor).__name__} runs on {backend!r}; only the PIL "
                "one is reproduced here (uninstall torchvision, or use IMAGESEARCH_ENCODER=torch)"
            )
        size, crop = processor.size, processor.crop_size
        if (
            getattr(size, "longest_edge", None)
            or getattr(size, "max_height", None)
            or getattr(processor, "do_pad", None)
        ):
            raise UnsupportedPreprocessing(f"the image processor's size {size} is not reproduced here")
        shortest = getattr(size, "shortest_edge", None)
        if not shortest and not (getattr(size, "height", None) and getattr(size, "width", None)):
            raise UnsupportedPreprocessing(f"the image processor's size {size} is not reproduced here")
        mean = _three(processor.image_mean)
        std = _three(processor.image_std)
        return cls(
            do_convert_rgb=bool(processor.do_convert_rgb),
            do_resize=bool(processor.do_resize),
            shortest_edge=int(shortest) if shortest else None,
            height=None if shortest else int(size.height),
            width=None if shortest else int(size.width),
            resample=int(processor.resample if processor.resample is not None else 2),
            do_center_crop=bool(processor.do_center_crop),
            crop_height=int(crop.height) if processor.do_center_crop else None,
            crop_width=int(crop.width) if processor.do_center_crop else None,
            do_rescale=bool(processor.do_rescale),
            rescale_factor=float(processor.rescale_factor),
            do_normalize=bool(processor.do_normalize),
            mean=mean,
            std=std,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocessing:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pixels(self, images: Sequence[PILImage]) -> np.ndarray:
        """An (n, 3, height, width) float32 batch, the image processor's ``pixel_values``."""
        return np.stack([self._one(image) for image in images])

    def _one(self, image: PILImage) -> np.ndarray:
        from PIL import Image as PILImageModule

        if self.do_convert_rgb:
            if "A" in image.getbands() or image.info.get("transparency") is not None:
                rgba = image.convert("RGBA")
                white = PILImageModule.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = PILImageModule.alpha_composite(white, rgba).convert("RGB")
            else:
                image = image.convert("RGB")
        if self.do_resize:
            image = image.resize(self._resized_size(image.size), resample=self.resample)
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        array = np.moveaxis(array, -1, 0)  # channels first
        if self.do_center_crop:
            array = _centre_crop(array, self.crop_height or 0, self.crop_width or 0)
        if self.do_rescale:
            array = (array.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            if not np.issubdtype(array.dtype, np.floating):
                array = array.astype(np.float32)
            mean = np.array(self.mean, dtype=array.dtype)
            std = np.array(self.std, dtype=array.dtype)
            array = ((array.T - mean) / std).T
        return np.ascontiguousarray(array, dtype=np.float32)

    def _resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) after the resize, as transformers computes it."""
        width, height = size
        if self.shortest_edge is None:
            return (self.width or width, self.height or height)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        new_height, new_width = (new_long, new_short) if width <= height else (new_short, new_long)
        return (new_width, new_height)


def _three(values: Any) -> tuple[float, float, float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values] * 3)]
    if len(values) != 3:
        raise UnsupportedPreprocessing(f"expected 3 channel values, got {values}")
    return (values[0], values[1], values[2])


def _centre_crop(array: np.ndarray, crop_height: int, crop_width: int) -> np.ndarray:
    """transformers' centre crop of a channels-first array: padded with zeros where the image is
    smaller than the crop."""
    height, width = array.shape[-2:]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return array[..., top : top + crop_height, left : left + crop_width]
    new_height, new_width = max(crop_height, height), max(crop_width, width)
    padded = np.zeros(array.shape[:-2] + (new_height, new_width), dtype=array.dtype)
    top_pad, left_pad = math.ceil((new_height - height) / 2), math.ceil((new_width - width) / 2)
    padded[..., top_pad : top_pad + height, left_pad : left_pad + width] = array
    top, left = top + top_pad, left + left_pad
    return padded[
        ...,
        max(0, top) : min(new_height, top + crop_height),
        max(0, left) : min(new_width, left + crop_width),
    ]


class TextTokenizer:
    """The model's fast tokenizer (the ``tokenizers`` library, no transformers), with the
    truncation and padding sentence-transformers applies: texts longer than the model reads are
    cut, a batch is padded to its longest text."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer: Tokenizer = Tokenizer.from_file(str(path))

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
