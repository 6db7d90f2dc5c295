"""The encoder against the machine's own BLAS doing the same matrix products.

Is the model already at the speed of these cores? For each tower of the served ONNX export,
one profiled run lists every matrix product the graph makes (ONNX Runtime's profiler: its
``MatMul``, ``FusedMatMul`` and ``Gemm`` nodes with their inputs' shapes; a weight's shape read
from the graph's initializers). numpy then makes the same products, one array per weight as the
model holds them, with its BLAS as shipped (OpenBLAS) at the same threads, timed in rounds
interleaved with the tower's own runs:

- the text tower, one query text, one thread (a web process);
- the image tower, 16 pictures, the worker's threads (the cores).

``ratio`` = the tower's whole run / its products alone in BLAS. At 1 or under, ONNX Runtime
spends no more on the whole model (the products, and every normalisation, activation and copy
between them) than the machine's BLAS spends on the products alone. ``share_of_peak`` = the
tower's arithmetic rate (its products' floating-point operations over its whole run) / the rate
the same BLAS reaches at the same threads on a large square product (2048 x 2048, the most
these cores do in fp32). Near 1, fp32 has little left to give on these cores, and a faster
encode needs less arithmetic (int8) or other hardware.

``python -m benchmarks.blas_bound`` prints the figures as JSON; the full run records them
with the encoder's section.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .timing import noise, summary_ms

#: The graph's operators that are matrix products (ONNX Runtime fuses a scaled MatMul into FusedMatMul).
PRODUCTS = ("MatMul", "FusedMatMul", "Gemm")


def products(graph: Path, feeds: dict[str, np.ndarray], *, threads: int) -> list[tuple[list[int], list[int]]]:
    """The (left, right) shapes of every matrix product one run of ``graph`` on ``feeds`` makes,
    in the order it makes them. A left operand of more than two dimensions times a weight
    matrix is one product of its rows, as ONNX Runtime makes it."""
    import onnx
    import onnxruntime

    from search.encoder.onnx_runtime import providers

    model = onnx.load(str(graph), load_external_data=False)
    initializers = {i.name: list(i.dims) for i in model.graph.initializer}
    weights = {
        node.name: initializers[node.input[1]]
        for node in model.graph.node
        if node.op_type in PRODUCTS and len(node.input) > 1 and node.input[1] in initializers
    }
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as directory:
        options.profile_file_prefix = str(Path(directory) / "profile")
        session = onnxruntime.InferenceSession(str(graph), sess_options=options, providers=providers())
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    found = []
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or args.get("op_name") not in PRODUCTS:
            continue
        if not event["name"].endswith("_kernel_time"):
            continue
        shapes = [next(iter(entry.values())) for entry in args["input_type_shape"]]
        if len(shapes) == 1:  # the profiler lists run-time inputs only: the weight is an initializer
            name = event["name"].removesuffix("_kernel_time")
            if name not in weights:
                raise ValueError(f"{graph.name}: no weight found for the product {name!r}")
            shapes.append(weights[name])
        left, right = shapes[0], shapes[1]
        if len(right) == 2 and len(left) > 2:
            left = [int(np.prod(left[:-1])), left[-1]]
        found.append((left, right))
    if not found:
        raise ValueError(f"{graph.name}: the profiler listed no matrix product")
    return found


def _operands(shapes: list[tuple[list[int], list[int]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        (rng.standard_normal(left, dtype=np.float32), rng.standard_normal(right, dtype=np.float32))
        for left, right in shapes
    ]


def _blas_products(operands: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for left, right in operands:
        np.matmul(left, right)


def peak_gflop_per_s(threads: int, *, rounds: int = 5, n: int = 2048) -> float:
    """The best fp32 rate numpy's BLAS reaches at ``threads`` on an n x n x n product."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    left, right = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(left, right)
        for _ in range(rounds):
            started = time.perf_counter()
            np.matmul(left, right)
            best = min(best, time.perf_counter() - started)
    return round(2 * n**3 / best / 1e9, 1)


def _tower(
    session: Any, feeds: dict[str, np.ndarray], graph: Path, threads: int, rounds: int
) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    shapes = products(graph, feeds, threads=threads)
    operands = _operands(shapes)
    flops = sum(2 * int(np.prod(left)) * right[-1] for left, right in shapes)
    times: dict[str, list[float]] = {"onnx_runtime": [], "blas_products": []}
    with threadpool_limits(limits=threads, user_api="blas"):
        session.run(None, feeds)  # warm-up of both
        _blas_products(operands)
        for _ in range(rounds):
            started = time.perf_counter()
            session.run(None, feeds)
            times["onnx_runtime"].append(time.perf_counter() - started)
            started = time.perf_counter()
            _blas_products(operands)
            times["blas_products"].append(time.perf_counter() - started)
    out: dict[str, Any] = {name: summary_ms(values) for name, values in times.items()}
    out.update(
        threads=threads,
        products=len(shapes),
        gflop=round(flops / 1e9, 3),
        ratio=round(out["onnx_runtime"]["p50_ms"] / out["blas_products"]["p50_ms"], 3),
        onnx_gflop_per_s=round(flops / 1e6 / out["onnx_runtime"]["p50_ms"], 1),
        blas_gflop_per_s=round(flops / 1e6 / out["blas_products"]["p50_ms"], 1),
        peak_gflop_per_s=peak_gflop_per_s(threads),
    )
    out["share_of_peak"] = round(out["onnx_gflop_per_s"] / out["peak_gflop_per_s"], 3)
    return out


def run(*, text_rounds: int = 30, image_rounds: int = 5) -> dict[str, Any]:
    """The figures of the module's docstring, for the export of the configured model."""
    from search import encoder
    from search.encoder import cache
    from search.encoder.onnx_runtime import session
    from search.encoder.preprocessing import ImagePreprocessing, TextTokenizer

    from .encoder_compare import _images

    directory = cache.export_in_subprocess(
        encoder.model_name(), encoder.export_root(), setting="IMAGESEARCH_CLIP_MODEL"
    )
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {"cores": cores, "blas": _blas_name()}
    with noise(out):
        text_graph = directory / "text.onnx"
        text = session(text_graph, threads=1)
        features = TextTokenizer(directory / "tokenizer.json")(["mountain large small 10000-0"])
        feeds = {i.name: features[i.name] for i in text.get_inputs()}
        out["text_1_thread"] = _tower(text, feeds, text_graph, 1, text_rounds)
        del text
        image_graph = directory / "image.onnx"
        if image_graph.exists():
            steps = json.loads((directory / "image_preprocessing.json").read_text(encoding="utf-8"))
            pixels = ImagePreprocessing.from_dict(steps).pixels(_images(16))
            image = session(image_graph, threads=cores)
            feeds = {"pixel_values": pixels}
            out["images_16_worker_threads"] = _tower(image, feeds, image_graph, cores, image_rounds)
    return out


def _blas_name() -> str:
    """numpy's BLAS, the one the products and the peak run in (torch may load another)."""
    from .query import _numpy_blas_libraries

    return ", ".join(f"{lib.internal_api} {lib.version}" for lib in _numpy_blas_libraries()) or "unknown"


def main() -> int:
    from . import env

    env.configure(fresh=False)
    env.build_model()
    env.setup_django()
    print(json.dumps(run(), indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
