"""Where the near-duplicate threshold should lie: cosines of image vectors between generated
pictures and their re-encoded, resized and slightly cropped copies, against the cosines between
unrelated pictures, with the product's encoder (``search.encoder.encode_images``).

The model is what this machine has: a CLIP of the real architecture with random weights (the
full-size ViT-B/32 of the benchmarks, or the tests' tiny one). What that can and cannot tell
about trained weights is written in BENCHMARKS.md, "Near-duplicates".

``python -m benchmarks.duplicate_threshold [--model full|tiny] [--originals N]``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from . import env

SIZE = (640, 480)
THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995)


def _jpeg(image, quality: int):
    from PIL import Image as PILImage

    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return PILImage.open(io.BytesIO(out.getvalue())).convert("RGB")


def _resize(image, share: float):
    from PIL import Image as PILImage

    w, h = image.size
    return image.resize((max(1, round(w * share)), max(1, round(h * share))), PILImage.Resampling.LANCZOS)


def _crop(image, share: float):
    """``share`` of the width and of the height cut off, split between the two sides."""
    w, h = image.size
    dx, dy = round(w * share / 2), round(h * share / 2)
    return image.crop((dx, dy, w - dx, h - dy))


#: What people do to a picture that they then store again.
VARIANTS: dict[str, Callable[[Any], Any]] = {
    "jpeg q90": lambda im: _jpeg(im, 90),
    "jpeg q70": lambda im: _jpeg(im, 70),
    "jpeg q50": lambda im: _jpeg(im, 50),
    "jpeg q30": lambda im: _jpeg(im, 30),
    "resized 50%": lambda im: _resize(im, 0.5),
    "resized 25%": lambda im: _resize(im, 0.25),
    "cropped 5%": lambda im: _crop(im, 0.05),
    "cropped 10%": lambda im: _crop(im, 0.10),
    "resized 50% + jpeg q60": lambda im: _jpeg(_resize(im, 0.5), 60),
    "cropped 5% + resized 50% + jpeg q75": lambda im: _jpeg(_resize(_crop(im, 0.05), 0.5), 75),
}


def _original(seed: int):
    """A photo-like picture: the test generator's shapes, upscaled, with grain at full size."""
    from PIL import Image as PILImage

    from tests.support.images import make_image

    small = make_image(50_000 + seed, (SIZE[0] // 4, SIZE[1] // 4))
    big = small.resize(SIZE, PILImage.Resampling.BICUBIC)
    grain = np.random.default_rng(seed).normal(0, 6, (SIZE[1], SIZE[0], 3))
    return PILImage.fromarray(np.clip(np.asarray(big, dtype=np.float32) + grain, 0, 255).astype(np.uint8))


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "min": round(float(values.min()), 4),
        "p1": round(float(np.percentile(values, 1)), 4),
        "p50": round(float(np.percentile(values, 50)), 4),
        "p99": round(float(np.percentile(values, 99)), 4),
        "max": round(float(values.max()), 4),
        "n": len(values),
    }


def measure(originals: int = 40) -> dict[str, Any]:
    """Cosines: each copy to its original (per kind of copy), and each original to its most
    similar unrelated picture (the other originals and all their copies)."""
    from search import encoder

    pictures = [_original(seed) for seed in range(originals)]
    base = encoder.encode_images(pictures)
    names = list(VARIANTS)
    copies = {name: encoder.encode_images([VARIANTS[name](p) for p in pictures]) for name in names}
    same = {name: np.einsum("ij,ij->i", base, copies[name]) for name in names}
    everything = np.concatenate([base, *(copies[name] for name in names)])
    owner = np.tile(np.arange(originals), 1 + len(names))
    cosines = base @ everything.T
    cosines[owner[None, :] == np.arange(originals)[:, None]] = -1.0  # itself and its own copies
    unrelated_best = cosines.max(axis=1)
    unrelated_all = (base @ base.T)[np.triu_indices(originals, 1)]
    all_same = np.concatenate(list(same.values()))
    return {
        "model": encoder.model_name(),
        "originals": originals,
        "copies": {name: _stats(values) for name, values in same.items()},
        "copies_all": _stats(all_same),
        "unrelated_nearest": _stats(unrelated_best),
        "unrelated_pairs": _stats(unrelated_all),
        # At each candidate threshold: the share of copies found, and the share of pictures that
        # an unrelated picture would join.
        "at": {
            str(t): {
                "copies_found": round(float((all_same >= t).mean()), 4),
                "unrelated_joined": round(float((unrelated_best >= t).mean()), 4),
            }
            for t in THRESHOLDS
        },
        # The widest margin on this data: halfway between the least similar copy and the most
        # similar unrelated picture (negative: no threshold separates them).
        "gap": round(float(all_same.min() - unrelated_best.max()), 4),
        "midpoint": round(float((all_same.min() + unrelated_best.max()) / 2), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.duplicate_threshold", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--originals", type=int, default=40)
    args = parser.parse_args(argv)
    env.configure(fresh=False)
    import os

    if args.model == "full":
        model = env.build_model()
    else:
        from tests.support.clip_model import build_clip_model

        model = build_clip_model(env.MODELS_DIR / "clip-tiny-random", size="tiny", seed=0)
    os.environ["IMAGESEARCH_CLIP_MODEL"] = str(model)
    env.setup_django()
    result = measure(args.originals)
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (env.RESULTS_DIR / f"duplicate_threshold_{args.model}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
