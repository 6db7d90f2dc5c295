"""Export a sentence-transformers model to ONNX (torch): one graph per tower, checked against torch.

One graph per tower: ``text.onnx`` (token ids to the model's sentence embedding: for a CLIP its
text features, for a text model its Transformer, Pooling, Dense...) and, for a CLIP, ``image.onnx``
(pixels to image features). Beside them the tokenizer with its truncation and padding
(``tokenizer.json``), the image processor's steps (``image_preprocessing.json``) and
``export.json``, written last: a directory holding it is complete.

Exporting needs torch and runs here, in a process of its own: ``python -m search.encoder.export
MODEL --fallback-root DIR``, which :func:`search.encoder.cache.export_in_subprocess` starts when a
process finds no export, and ``manage.py export_encoder`` runs ahead of time (images built before
deployment). Each graph is checked against torch's vectors before the export counts as made.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .base import ModelUnavailable
from .cache import (
    FORMAT_VERSION,
    MANIFEST,
    REASON_PREFIX,
    UNAVAILABLE_EXIT,
    ExportFailed,
    cache_dirs,
    model_key,
    read_manifest,
    resolve_model_dir,
)

logger = logging.getLogger(__name__)

OPSET = 17
#: The export is refused when a graph's vector is further than this from torch's (cosine).
MIN_COSINE = 0.9999
_TRACE_TEXTS = ["a photo of a cat on the beach at sunset", "a"]


def export_model(name: str, fallback_root: Path, *, setting: str = "IMAGESEARCH_CLIP_MODEL") -> Path:
    """Export ``name`` in this process (imports torch): its directory. An existing export of the
    same files is returned as it is."""
    from .torch_runtime import load_sentence_transformer

    model = load_sentence_transformer(name, device="cpu", threads=os.cpu_count() or 1, setting=setting)
    model_dir = resolve_model_dir(name)
    if model_dir is None:
        raise ExportFailed(f"The model {name!r} loaded, but its files cannot be found in the local cache.")
    targets = cache_dirs(model_dir, name, fallback_root)
    for directory in targets:
        if read_manifest(directory) is not None:
            return directory
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        except OSError:
            continue  # a read-only model directory: the fallback root
        try:
            _write_export(model, name, model_key(model_dir), staging)
            try:
                os.rename(staging, target)
            except OSError:
                if read_manifest(target) is None:
                    raise
            return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    raise ExportFailed(
        f"No writable place for the ONNX export of {name!r}: tried {', '.join(map(str, targets))}."
    )


def _write_export(model: Any, name: str, key: str, directory: Path) -> None:
    import numpy as np
    import sentence_transformers
    import torch

    from .preprocessing import ImagePreprocessing

    model.eval()
    modalities = list(getattr(model, "modalities", ["text"]))
    if "text" not in modalities:
        raise ExportFailed(f"The model {name!r} does not encode text.")
    transformer = model[0]
    tokenizer = getattr(transformer, "tokenizer", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor holds its tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportFailed(
            f"The model {name!r} has no fast tokenizer (tokenizer.json) to run without transformers."
        )
    _save_tokenizer(backend, tokenizer, int(model.max_seq_length or tokenizer.model_max_length), directory)

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": name,
        "key": key,
        "modalities": [m for m in modalities if m in ("text", "image")],
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "opset": OPSET,
    }
    features = model.preprocess(_TRACE_TEXTS)
    text_inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features]
    with torch.no_grad():
        expected = model(dict(features))["sentence_embedding"].numpy()
    text_graph = directory / "text.onnx"
    _export_graph(
        _Tower(model, text_inputs, "text"),
        tuple(features[k] for k in text_inputs),
        text_inputs,
        text_graph,
        sequence=True,
    )
    manifest["dimension"] = int(expected.shape[1])
    _verify(text_graph, {k: features[k].numpy() for k in text_inputs}, expected, name, "text")

    if "image" in manifest["modalities"]:
        from PIL import Image

        processor = getattr(transformer, "processor", None)
        image_processor = getattr(processor, "image_processor", None)
        if image_processor is None:
            raise ExportFailed(f"The model {name!r} encodes images but has no image processor.")
        try:
            steps = ImagePreprocessing.from_processor(image_processor)
        except ValueError as exc:
            raise ExportFailed(f"The image preprocessing of {name!r} cannot be reproduced: {exc}") from None
        images = [Image.new("RGB", (300, 200), (120, 30, 200)), Image.new("RGB", (64, 90), (5, 250, 40))]
        pixels = model.preprocess(images)["pixel_values"]
        ours = steps.pixels(images)
        if ours.shape != tuple(pixels.shape) or not np.allclose(ours, pixels.numpy(), atol=1e-5):
            raise ExportFailed(f"The image preprocessing of {name!r} differs from sentence-transformers'.")
        with torch.no_grad():
            expected_images = model({"pixel_values": pixels, "modality": "image"})[
                "sentence_embedding"
            ].numpy()
        image_graph = directory / "image.onnx"
        _export_graph(
            _Tower(model, ["pixel_values"], "image"), (pixels,), ["pixel_values"], image_graph, sequence=False
        )
        _verify(image_graph, {"pixel_values": pixels.numpy()}, expected_images, name, "image")
        (directory / "image_preprocessing.json").write_text(json.dumps(steps.to_dict(), indent=2) + "\n")
    for path in directory.iterdir():
        os.chmod(path, 0o644)
    os.chmod(directory, 0o755)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _save_tokenizer(backend: Any, tokenizer: Any, max_length: int, directory: Path) -> None:
    """The fast tokenizer with sentence-transformers' truncation (the model's length) and padding
    (to the longest text of a batch), saved as tokenizer.json."""
    from tokenizers import Tokenizer

    saved = Tokenizer.from_str(backend.to_str())
    saved.enable_truncation(max_length=max_length, direction=getattr(tokenizer, "truncation_side", "right"))
    saved.enable_padding(
        direction=getattr(tokenizer, "padding_side", "right"),
        pad_id=int(tokenizer.pad_token_id or 0),
        pad_type_id=int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        pad_token=str(tokenizer.pad_token or "[PAD]"),
    )
    saved.save(str(directory / "tokenizer.json"))


def _tower_class() -> type:
    import torch

    class Tower(torch.nn.Module):
        """One modality of the SentenceTransformer, as a module of plain tensor inputs."""

        def __init__(self, model: Any, inputs: list[str], modality: str) -> None:
            super().__init__()
            self.model, self.inputs, self.modality = model, inputs, modality

        def forward(self, *tensors: Any) -> Any:
            features = dict(zip(self.inputs, tensors, strict=True))
            return self.model({**features, "modality": self.modality})["sentence_embedding"]

    return Tower


def _Tower(model: Any, inputs: list[str], modality: str) -> Any:  # noqa: N802 - a class, built lazily
    return _tower_class()(model, inputs, modality)


def _export_graph(module: Any, args: tuple, inputs: list[str], path: Path, *, sequence: bool) -> None:
    import torch

    axes = {name: ({0: "batch", 1: "sequence"} if sequence else {0: "batch"}) for name in inputs}
    axes["embedding"] = {0: "batch"}
    with warnings.catch_warnings():
        # The TorchScript exporter (tracing) is deprecated in favour of torch.export; it is kept
        # here because it exports these towers in a fraction of the time, with equal results.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _verify(graph: Path, feeds: dict[str, Any], expected: Any, name: str, tower: str) -> None:
    """Refuse an export whose graph does not give torch's vectors for the trace inputs."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
    cosine = np.sum(got * expected, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    if got.shape != expected.shape or float(cosine.min()) < MIN_COSINE:
        raise ExportFailed(
            f"The ONNX {tower} graph of {name!r} does not give torch's vectors "
            f"(cosine {float(cosine.min()):.6f} < {MIN_COSINE})."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a sentence-transformers model to ONNX (once).")
    parser.add_argument("model", help="the sentence-transformers name or directory")
    parser.add_argument("--fallback-root", required=True, type=Path)
    parser.add_argument("--setting", default="IMAGESEARCH_CLIP_MODEL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        print(export_model(args.model, args.fallback_root, setting=args.setting))
    except ExportFailed as exc:
        print(f"{REASON_PREFIX}{exc}", file=sys.stderr)
        return 1
    except ModelUnavailable as exc:
        print(f"{REASON_PREFIX}{exc}", file=sys.stderr)
        return UNAVAILABLE_EXIT
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported in one line
        logger.exception("export of %s failed", args.model)
        print(f"{REASON_PREFIX}{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
