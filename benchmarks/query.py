"""Target 2: server-side latency of a text search request against its unavoidable parts.

Runs in this process through the WSGI application, as gunicorn calls it (every middleware,
the form, query embedding, index search, re-reading the rows, rendering), with no network in
between, so the time is what the server spends. For each query text, in turn:

1. ``encode``: the model encodes the text alone (``encoder.encode_texts``; it does not fill
   the query cache, so the request after it still runs the model);
2. ``faiss``: faiss's own flat search of the vector over the library's vectors read into memory,
   and ``numpy``: a plain matrix-vector product with ``argpartition`` over those vectors
   (numpy's BLAS with all cores, as shipped); ``product_search``: the product's index reader
   (the kind ``auto`` chose: flat from a private copy or the shared mapping, or IVF);
3. ``request``: ``GET /?q=<text>``, a text the process has never seen.

baseline = p50(encode) + the fastest of p50(faiss), p50(numpy), p50(numpy with one BLAS thread),
p50(product_search), the numpy ones measured in a block of their own after the loop;
ratio = p50(request) / baseline. For information, ``ratio_scan_after_encode`` takes the fastest
of the scans measured right after an encode instead: faiss's and the product's in the loop, and
numpy's one-thread scan, in a block of its own, each right after an encode of another text (the
encode streams the text tower's weights through the caches, so each such scan reads the vectors
from memory, as the request's does). recall@10 of the served index against the exact flat search
is measured for the labels' text vectors, a sample of image vectors and the run's query texts.
Each search asks for the ``k`` the search service asks for on page 1. Then the same text is
requested again and again: the model must not run (counted), and its latency is reported.
After the warm-up the collector is frozen (``gc.freeze``), as gunicorn's master freezes it
before it forks the web processes.
"""

from __future__ import annotations

import gc
import os
import re
import time
from typing import Any

import numpy as np

from .timing import noise, summary_ms

WORDS = (
    "red blue green yellow old small large bright dark quiet busy winter summer morning night "
    "bicycle harbour mountain street kitchen garden portrait market forest beach bridge train "
    "cat dog horse child woman man crowd boat city river lake desert snow rain cloud sky"
).split()


def query_texts(count: int, seed: int) -> list[str]:
    """Distinct, similar-length queries (three or four words and a number)."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(count):
        words = rng.choice(WORDS, size=3 + i % 2, replace=False)
        texts.append(f"{' '.join(words)} {seed}-{i}")
    return texts


def service_k() -> int:
    """The k the search service asks the index for on page 1 (see search.query.ranking.images_search)."""
    from search.query import ranking

    needed = ranking.PAGE_SIZE + 1
    return needed * 2 + 16


def _in_memory_flat(index_dir: Any) -> tuple[Any, np.ndarray]:
    """The library's vectors in this process's memory: faiss's own flat index, and numpy's view
    of its vectors (anonymous memory: the fastest either can scan here). Read from the current
    generation when it is flat, else from the database (what the index is built from)."""
    import faiss

    from search.stores import faiss as search_index

    manifest = search_index.read_current_manifest(index_dir, strict=True)
    if manifest.kind == "flat":
        index = faiss.read_index(str(index_dir / manifest.index_file))
        inner = faiss.downcast_index(index.index)
        vectors = faiss.rev_swig_ptr(inner.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
        return index, vectors
    from search import encoder
    from search.stores import rows as store_rows

    ids, vectors = store_rows.hybrids_read(model=encoder.model_name())
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    inner = faiss.downcast_index(index.index)
    return index, faiss.rev_swig_ptr(inner.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def recall(reader: Any, flat: Any, queries: np.ndarray, k: int = 10) -> float:
    """recall@k of the served index against faiss's exact flat search, for ``queries``."""
    found = reader.search(queries, k)[1]
    exact = flat.search(queries, k)[1]
    return round(float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)])), 4)


def library_queries(size: int) -> dict[str, np.ndarray]:
    """Queries made from the library, as the product tunes on: the labels' text vectors and the
    image vectors of a sample of rows (seeded differently from the product's own sample)."""
    from gallery.models import Image, Label

    text = [bytes(b) for b in Label.objects.exclude(vector=None).values_list("vector", flat=True)]
    rng = np.random.default_rng(size + 17)
    ids = list(Image.objects.ready().values_list("pk", flat=True))
    picks = [ids[i] for i in rng.choice(len(ids), min(len(ids), 300), replace=False)]
    image = [bytes(b) for b in Image.objects.filter(pk__in=picks).values_list("image_vector", flat=True)]

    def matrix(blobs: list[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)

    return {"label_text": matrix(text), "image": matrix(image)}


def _numpy_blas_libraries() -> list[Any]:
    """numpy's BLAS (the product keeps it at one thread; the baseline runs it as shipped)."""
    from threadpoolctl import ThreadpoolController

    numpy_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")
    return [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas" and lib.filepath.startswith(numpy_dir)
    ]


def _numpy_search(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ q
    part = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
    return part[np.argsort(-scores[part])]


_HIT = re.compile(rb'<img[^>]+src="/media/')


class Wsgi:
    """Requests through the real WSGI application (every middleware, the view, the template),
    as gunicorn calls it, minus the network: the time is what the server spends."""

    def __init__(self) -> None:
        from django.core.wsgi import get_wsgi_application

        self.app = get_wsgi_application()

    def get(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        import io
        from urllib.parse import urlencode

        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": urlencode(params),
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": io.StringIO(),
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        body = b"".join(self.app(environ, lambda line, headers: status.append(line)))
        return int(status[0].split()[0]), body


def run(size: int, *, requests: int, repeat_rounds: int | None = None) -> dict[str, Any]:
    """The figures of the module's docstring at ``size`` (the library grown and its index built),
    over ``requests`` new query texts; the repeated text ``repeat_rounds`` times (a quarter of
    ``requests`` by default)."""
    from search import encoder, status
    from search.query import ranking
    from search.stores import faiss as search_index
    from search.stores import faiss_store

    out: dict[str, Any] = {"size": size, "k": service_k()}
    client = Wsgi()
    k = service_k()
    with noise(out):
        reader = search_index.get_reader(faiss_store.index_dir(), expected_model=encoder.model_name())
        reader.refresh()
        assert reader.manifest is not None and reader.manifest.count == size, reader.status()
        faiss_index, vectors = _in_memory_flat(faiss_store.index_dir())
        texts = query_texts(requests + 5, seed=size)
        blas = _numpy_blas_libraries()
        cores = len(os.sched_getaffinity(0))
        # Warm-up: model, templates, database connection, page cache of the index.
        for text in texts[:5]:
            client.get("/", {"q": text})
        # What the web processes inherit from gunicorn's master (imagesearch.gunicorn_conf,
        # when_ready): everything loaded so far kept out of the collector's passes. Without it
        # this process's full collections walk the ~155,000 objects that the model, Django and
        # the libraries leave, which no web process does.
        gc.collect()
        gc.freeze()
        rows: dict[str, list[float]] = {"encode": [], "faiss": [], "product_search": [], "request": []}
        hits = []
        found: list[np.ndarray] = []
        for text in texts[5:]:
            t = time.perf_counter()
            vector = encoder.encode_texts([text])[0]
            rows["encode"].append(time.perf_counter() - t)
            found.append(vector)
            q = vector[None, :]
            t = time.perf_counter()
            faiss_index.search(q, k)
            rows["faiss"].append(time.perf_counter() - t)
            t = time.perf_counter()
            reader.search(q, k)
            rows["product_search"].append(time.perf_counter() - t)
            t = time.perf_counter()
            status, body = client.get("/", {"q": text})
            rows["request"].append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"search page answered {status}: {body[:500]!r}")
            hits.append(len(_HIT.findall(body)))
        # Plain numpy over the same vectors, with its BLAS as shipped (all cores) and with one
        # thread, in a block of its own: OpenBLAS threads keep spinning for a while after a
        # call, which would slow whatever is measured next.
        previous = [lib.num_threads for lib in blas]
        for threads, name in ((cores, "numpy"), (1, "numpy_1_thread")):
            for lib in blas:
                lib.set_num_threads(threads)
            rows[name] = []
            for vector in found:
                t = time.perf_counter()
                _numpy_search(vectors, vector, k)
                rows[name].append(time.perf_counter() - t)
        # The same one-thread scan right after an encode of another text, the state the
        # request's own scan runs in: the encode streams the text tower's weights through the
        # caches, and the library's vectors come from memory again. For information; the
        # goal's baseline is the fastest scan above.
        rows["numpy_1_thread_after_encode"] = []
        for vector, other in zip(found, query_texts(len(found), seed=size + 1), strict=True):
            encoder.encode_texts([other])
            t = time.perf_counter()
            _numpy_search(vectors, vector, k)
            rows["numpy_1_thread_after_encode"].append(time.perf_counter() - t)
        for lib, threads in zip(blas, previous, strict=True):
            lib.set_num_threads(threads)
        out.update({name: summary_ms(values) for name, values in rows.items()})
        # The fastest search: exact scans of the vectors in memory, or the index the product
        # serves (an approximate one answers faster than any exact scan).
        names = ("faiss", "numpy", "numpy_1_thread", "product_search")
        candidates = {name: out[name]["p50_ms"] for name in names}
        out["baseline_search"] = min(candidates, key=candidates.get)
        out["baseline_p50_ms"] = round(out["encode"]["p50_ms"] + candidates[out["baseline_search"]], 3)
        out["ratio"] = round(out["request"]["p50_ms"] / out["baseline_p50_ms"], 3)
        # The same with the scans measured where the request's runs, right after an encode:
        # faiss's and the product's in the loop, numpy's one-thread in the block above.
        cold = ("faiss", "product_search", "numpy_1_thread_after_encode")
        after = {name: out[name]["p50_ms"] for name in cold}
        out["baseline_search_after_encode"] = min(after, key=after.get)
        after_encode = out["encode"]["p50_ms"] + after[out["baseline_search_after_encode"]]
        out["ratio_scan_after_encode"] = round(out["request"]["p50_ms"] / after_encode, 3)
        # What the request adds to encode + search: rows, labels, notices, render, middleware.
        out["overhead_p50_ms"] = round(
            out["request"]["p50_ms"] - out["encode"]["p50_ms"] - out["product_search"]["p50_ms"], 3
        )
        out["results_per_page"] = {"min": int(min(hits)), "expected": ranking.PAGE_SIZE}
        out["repeat"] = _repeated_query(client, texts[5], rounds=repeat_rounds or max(10, requests // 4))
        manifest = reader.manifest
        out["index"] = {
            "kind": manifest.kind,
            "requested_kind": manifest.requested_kind,
            "param": manifest.param,
            "param_value": manifest.param_value,
            "recall_text_at_build": manifest.recall_text,
            "recall_image_at_build": manifest.recall_image,
        }
        # Recall measured here, independently of the build's: the labels' text vectors, a sample
        # of image vectors, and this run's own query texts (the random model's text vectors).
        probes = library_queries(size)
        out["recall_at_10"] = {
            "label_text": recall(reader, faiss_index, probes["label_text"]),
            "image": recall(reader, faiss_index, probes["image"]),
            "query_texts": recall(reader, faiss_index, np.stack(found)),
        }
        del faiss_index, vectors
    gc.unfreeze()  # the next size's run freezes what it loaded
    return out


def _repeated_query(client: Any, text: str, *, rounds: int) -> dict[str, Any]:
    """The same text again and again: the query-vector cache must keep the model out of it."""
    from search import encoder

    model = encoder.get_model()
    calls = 0
    original = model.encode_texts

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    client.get("/", {"q": text})  # make sure it is cached
    model.encode_texts = counting
    try:
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            status, _ = client.get("/", {"q": text})
            times.append(time.perf_counter() - t)
            assert status == 200
    finally:
        del model.encode_texts  # back to the class's method
    return {"model_calls": calls, **summary_ms(times)}


def _at_size(size: int, *, requests: int, repeat: int) -> dict[str, Any]:
    from . import rebuild

    rebuild.rebuild(size, cold=False)
    return run(size, requests=requests, repeat_rounds=repeat)


def summary_line(figures: dict[str, Any]) -> str:
    """One line of the figures the request's goal is judged by."""
    search = figures["baseline_search"]
    return (
        f"{figures['size']:>9,}: ratio {figures['ratio']:.3f}"
        f"  request p50 {figures['request']['p50_ms']:.2f} ms"
        f"  encode {figures['encode']['p50_ms']:.2f}  scan {figures[search]['p50_ms']:.2f} ({search})"
        f"  baseline {figures['baseline_p50_ms']:.2f}  own work p50 {figures['repeat']['p50_ms']:.2f}"
        f" / min {figures['repeat']['min_ms']:.2f} ms (model calls {figures['repeat']['model_calls']})"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.query --sizes 10000 100000 --requests 60``: a fresh library grown
    to each size in turn, its index built, then :func:`run`; one summary line per size and all
    the figures in ``query.json`` of the results directory."""
    from .library import sizes_main

    os.environ["IMAGESEARCH_TORCH_THREADS"] = "1"  # this process serves queries like a web process
    return sizes_main(
        argv,
        prog="python -m benchmarks.query",
        description="A text search request's p50 against text encode + the fastest scan, and its "
        "own work (the same text again: the query vector cached, no model).",
        run=_at_size,
        results_name="query.json",
        options={
            "requests": (60, "new query texts per size"),
            "repeat": (200, "requests of the repeated text"),
        },
        line=lambda figures: f"{summary_line(figures)}  load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    )


if __name__ == "__main__":
    import sys

    sys.exit(main())
