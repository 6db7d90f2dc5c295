"""The emphasis's recall at a million rows: candidates from the product's index, re-scored from
the stored parts, against the brute-force ranking of alpha-scores.

Everything is in memory (numpy and faiss; no database):

* the library: image vectors from :class:`benchmarks.library.ClusteredVectors` (clusters inside
  topics, as CLIP's photos); label text vectors from :func:`benchmarks.library.label_text_vectors`
  (a common text direction, the modality gap, leaning towards their images' cluster centres:
  image-text cosines well below image-image ones). Label ``c % 1000`` is cluster ``c``'s own.
  Each image carries 1, 2 or 3 labels (``LABEL_SHARES``): the first is its cluster's own with
  probability ``OWN_LABEL``, else one of its topic's; each further one is one of its topic's
  with probability ``TOPIC_LABEL``, else any label. Labels follow the pictures, imperfectly.
* each row's label vector ``L`` (the normalised mean of its labels' vectors) and hybrid, made as
  :func:`search.encoder.combine` makes them (weight 0.5), vectorised; a sample is checked
  against ``combine`` itself.
* queries: text queries are label text vectors moved a little (cosine ~0.9), image queries
  stored image vectors moved a little (cosine ~0.95).
* candidates: the index the product builds at this size (``kind_for("auto", n)``: IVF above
  the flat threshold, trained and tuned by the product's own code on the probes a rebuild
  reads: the labels' text vectors and 256 stored image vectors), asked for
  ``2 * pool + 16`` ids as the FAISS store asks (``faiss_nearest``), the first ``pool`` kept;
  re-scored with :func:`search.query.explain.scores`. The alternatives the issue names: the
  same kind of index over the image vectors alone, and over the label vectors ``L`` alone
  (the images whose labels match the query best), each asked for ``pool``, their union with
  the hybrid's candidates re-scored the same way; the hybrid index widened (its nprobe
  times ``NPROBE_FACTORS``), no second index; the image vectors in an IVF that takes the hybrid
  index's trained coarse quantizer (``image_shared``: no training of its own); and the hybrid
  index widened together with either image index (``_COMBINED``).
* brute force: the alpha-scores of every row (``explain.scores``' formula over all rows, in
  batches of queries; checked against ``explain.scores`` itself for a few queries).

recall@10 is tie-aware: a result counts when its exact alpha-score is at least the 10th best
exact score minus 1e-6 (many images carry the same labels, so at alpha = 0 scores tie).
``rescore_ms``: p50 of gathering one query's candidates' parts and scoring them (one alpha).
``search_ms``: p50 of one query's index search for ``2 * pool + 16`` ids.

``python -m benchmarks.emphasis_recall [--size 1000000] [--queries 200] [--sides image labels]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .library import BLOCK, LABEL_COUNT, ClusteredVectors, label_text_vectors, queries_near
from .timing import noise, percentile

POOLS = (200, 500, 1000, 2000, 5000)
ALPHAS = (0.0, 0.5, 1.0)
LABEL_SHARES = (0.4, 0.4, 0.2)  # images carrying 1, 2, 3 labels
OWN_LABEL = 0.85
TOPIC_LABEL = 0.6
WEIGHT = 0.5
TARGET = 0.95
MECHANISMS = (
    "hybrid",
    "image",
    "labels",
    "image_shared",
    "hybrid+image",
    "hybrid+labels",
    "hybrid+image+labels",
    "hybrid+image_shared",
)
#: Second indexes: "image_shared" is the image vectors in an IVF whose coarse quantizer is the
#: hybrid index's (trained once, on the hybrids), tuned the same way; "product" is the picture
#: index as a rebuild writes it (search.stores.faiss.pictures) with the hybrid index searched as
#: an emphasised search does (its tuned parameter times faiss_nearest.EMPHASIS_WIDEN), each
#: asked for the product's pools (ranking.EMPHASIS_POOL, EMPHASIS_PICTURE_POOL).
SIDES = ("image", "labels", "image_shared", "product")
PRODUCT = "product_hybrid+product_picture"
#: The hybrid index searched with its tuned nprobe times these too ("hybrid_nprobe_x4": the
#: hybrid index widened, no second index).
NPROBE_FACTORS = (2, 4, 8)


@dataclass
class Library:
    images: np.ndarray  # n x d, unit
    labels: np.ndarray  # n x d: each row's L, unit
    has_labels: np.ndarray  # n, bool
    hybrids: np.ndarray | None  # n x d, unit (dropped once the hybrid index holds them)
    label_ids: np.ndarray  # n x 3, -1 where a slot is empty
    texts: np.ndarray  # LABEL_COUNT x d


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def library_build(size: int, vectors: ClusteredVectors) -> Library:
    """The rows ``0 .. size - 1``, generated a block at a time (deterministic)."""
    texts = label_text_vectors(vectors)
    order = np.argsort(vectors.topic_of, kind="stable")
    starts = np.searchsorted(vectors.topic_of[order], np.arange(vectors.topics))
    counts = np.bincount(vectors.topic_of, minlength=vectors.topics)
    d = vectors.dim
    images = np.empty((size, d), np.float32)
    labels = np.empty((size, d), np.float32)
    hybrids = np.empty((size, d), np.float32)
    label_ids = np.full((size, 3), -1, np.int64)
    for start in range(0, size, BLOCK):
        stop = min(size, start + BLOCK)
        x, cluster = vectors.rows(start, stop)
        rng = np.random.default_rng([7, start // BLOCK])
        n = len(x)
        topic = vectors.topic_of[cluster]

        def topic_label(topic: np.ndarray = topic, rng: np.random.Generator = rng) -> np.ndarray:
            pick = starts[topic] + (rng.random(len(topic)) * counts[topic]).astype(np.int64)
            return order[pick] % LABEL_COUNT

        carried = rng.choice(3, n, p=LABEL_SHARES) + 1
        slots = np.full((n, 3), -1, np.int64)
        slots[:, 0] = np.where(rng.random(n) < OWN_LABEL, cluster % LABEL_COUNT, topic_label())
        for j in (1, 2):
            drawn = np.where(rng.random(n) < TOPIC_LABEL, topic_label(), rng.integers(0, LABEL_COUNT, n))
            repeated = (slots[:, :j] == drawn[:, None]).any(axis=1)  # a label is carried once
            slots[:, j] = np.where((carried > j) & ~repeated, drawn, -1)
        total = np.zeros((n, d), np.float32)
        for j in range(3):
            total += np.where(slots[:, j : j + 1] >= 0, texts[np.maximum(slots[:, j], 0)], 0.0)
        label_part = _unit(total)
        images[start:stop] = x
        labels[start:stop] = label_part
        hybrids[start:stop] = _unit(WEIGHT * x + (1.0 - WEIGHT) * label_part)
        label_ids[start:stop] = slots
    return Library(images, labels, np.ones(size, bool), hybrids, label_ids, texts)


def check_combine(lib: Library, rows: int = 50) -> float:
    """The largest difference between the library's hybrids and ``encoder.combine``'s."""
    from search import encoder

    worst = 0.0
    for i in np.random.default_rng(3).choice(len(lib.images), rows, replace=False):
        parts = [lib.texts[j] for j in lib.label_ids[i] if j >= 0]
        made = encoder.combine(lib.images[i], parts, WEIGHT)
        worst = max(worst, float(np.abs(made - lib.hybrids[i]).max()))
    return worst


def product_index(
    vectors: np.ndarray, probes: dict[str, np.ndarray], *, quantizer_of: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The index a rebuild would write for ``vectors`` (kind ``auto``), built and tuned in memory
    by the product's code; ids are row positions. ``quantizer_of``: an IVF whose trained coarse
    quantizer the new IVF takes instead of training its own (None, no index, for other kinds)."""
    from search.stores.faiss.faiss_lib import import_faiss
    from search.stores.faiss.kinds import KINDS, ivf_lists
    from search.stores.faiss.tuning import AUTO_FLAT_MAX_VECTORS, kind_for, tune

    faiss = import_faiss()
    n = len(vectors)
    kind = kind_for("auto", n, AUTO_FLAT_MAX_VECTORS)
    spec = KINDS[kind]
    ids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    if quantizer_of is not None:
        if kind != "ivf":
            return None, {}
        index = _ivf_sharing(faiss, quantizer_of, ids, vectors)
    else:
        index = spec.create(faiss, ids, vectors)
    built = time.perf_counter() - t
    tuning = tune(
        faiss, spec, index, ids, vectors, text_queries=probes["text"], image_queries=probes["image"]
    )
    info: dict[str, Any] = {
        "kind": kind,
        "build_s": round(built, 1),
        "tune_s": round(time.perf_counter() - t - built, 1),
    }
    if kind == "ivf":
        info["lists"] = ivf_lists(n)
    if tuning is not None:
        info.update(
            param=tuning.param,
            value=tuning.value,
            recall_text=tuning.recall_text,
            recall_image=tuning.recall_image,
        )
    return index, info


def _ivf_sharing(faiss: Any, other: Any, ids: np.ndarray, vectors: np.ndarray) -> Any:
    """An IVF over ``vectors`` whose coarse quantizer is a copy of ``other``'s (no training)."""
    trained = faiss.extract_index_ivf(other)
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    quantizer.add(trained.quantizer.reconstruct_n(0, trained.nlist))
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], trained.nlist, faiss.METRIC_INNER_PRODUCT)
    index.add_with_ids(vectors, ids)
    return index


def exact_thresholds(lib: Library, queries: np.ndarray, batch: int = 64) -> dict[float, np.ndarray]:
    """Each query's 10th best exact alpha-score over every row, per alpha."""
    out = {alpha: np.empty(len(queries), np.float32) for alpha in ALPHAS}
    for lo in range(0, len(queries), batch):
        q = queries[lo : lo + batch]
        image_cos = (lib.images @ q.T).T
        label_cos = np.where(lib.has_labels[None, :], (lib.labels @ q.T).T, 0.0)
        for alpha in ALPHAS:
            scores = alpha * image_cos + (1.0 - alpha) * label_cos
            out[alpha][lo : lo + batch] = -np.partition(-scores, 9, axis=1)[:, 9]
        del image_cos, label_cos
    return out


def check_exact(lib: Library, queries: np.ndarray, thresholds: dict[float, np.ndarray]) -> float:
    """The largest difference between the batched 10th best scores and ``explain.scores``'."""
    from search.query import explain

    worst = 0.0
    for i in range(min(3, len(queries))):
        for alpha in ALPHAS:
            scores = explain.scores(queries[i], lib.images, lib.labels, lib.has_labels, alpha)
            worst = max(worst, abs(float(np.sort(scores)[-10]) - float(thresholds[alpha][i])))
    return worst


def _candidates(found: dict[str, np.ndarray], mechanism: str, row: int, pool: int) -> np.ndarray:
    parts = [found[name][row, : pool or None] for name in mechanism.split("+")]
    ids = np.concatenate(parts)
    return np.unique(ids[ids >= 0]) if len(parts) > 1 else ids[ids >= 0]


def run(
    size: int = 1_000_000,
    *,
    queries: int = 200,
    pools: tuple[int, ...] = POOLS,
    sides: tuple[str, ...] = SIDES,
) -> dict[str, Any]:
    from search.query import explain
    from search.query.ranking import EMPHASIS_POOL

    out: dict[str, Any] = {
        "product_pool": EMPHASIS_POOL,
        "size": size,
        "queries": {"text": queries, "image": queries},
        "pools": list(pools),
    }
    with noise(out):
        t = time.perf_counter()
        vectors = ClusteredVectors()
        lib = library_build(size, vectors)
        out["library_s"] = round(time.perf_counter() - t, 1)
        out["combine_max_diff"] = check_combine(lib)
        carried = (lib.label_ids >= 0).sum(axis=1)
        out["labels_per_image"] = {str(k): round(float(np.mean(carried == k)), 3) for k in (1, 2, 3)}
        sample = np.random.default_rng(0).choice(size, min(size, 256), replace=False)
        probes = {"text": lib.texts, "image": lib.images[np.sort(sample)]}
        q_text = queries_near(lib.texts, queries, cosine=0.9, seed=11)
        q_image = queries_near(lib.images, queries, cosine=0.95, seed=12)
        all_q = np.concatenate([q_text, q_image])
        kinds = np.array(["text"] * queries + ["image"] * queries)
        out["cosines"] = _cosines(lib, vectors)
        k = 2 * max(pools) + 16
        indexes: dict[str, Any] = {}
        found: dict[str, np.ndarray] = {}
        out["indexes"] = {}
        for name, side in (
            ("hybrid", "hybrids"),
            ("image", "images"),
            ("labels", "labels"),
            ("image_shared", "images"),
        ):
            if name != "hybrid" and name not in sides:
                continue
            shared = indexes["hybrid"] if name == "image_shared" else None
            index, info = product_index(getattr(lib, side), probes, quantizer_of=shared)
            if index is None:
                continue
            found[name] = index.search(all_q, k)[1]
            indexes[name] = index
            out["indexes"][name] = info
            if name == "hybrid":
                if "product" in sides:
                    product, product_info = _product(index, lib, probes, all_q)
                    found.update(product)
                    out["indexes"]["product"] = product_info
                lib.hybrids = None
                found.update(_widened(index, info, all_q, k))
        mechanisms = [
            m for m in (*MECHANISMS, *_WIDENED, *_COMBINED, PRODUCT) if all(p in found for p in m.split("+"))
        ]
        out["search_ms"] = _search_times(indexes, all_q, pools)
        del indexes
        t = time.perf_counter()
        thresholds = exact_thresholds(lib, all_q)
        out["brute_force_s"] = round(time.perf_counter() - t, 1)
        out["brute_force_check_max_diff"] = check_exact(lib, all_q, thresholds)
        recall: dict[str, Any] = {}
        rescore: dict[str, Any] = {}
        jobs = [(m, pool) for m in mechanisms if m != PRODUCT for pool in pools]
        if PRODUCT in mechanisms:
            jobs.append((PRODUCT, 0))  # its parts hold the product's pools already
        for mechanism, pool in jobs:
            hits = {(kind, alpha): [] for kind in ("text", "image") for alpha in ALPHAS}
            times, sizes = [], []
            for row, q in enumerate(all_q):
                cand = _candidates(found, mechanism, row, pool)
                sizes.append(len(cand))
                for alpha in ALPHAS:
                    started = time.perf_counter()
                    scores = explain.scores(
                        q, lib.images[cand], lib.labels[cand], lib.has_labels[cand], alpha
                    )
                    top = np.partition(-scores, 9)[:10] if len(scores) > 10 else -scores
                    if alpha == 0.5:
                        times.append(time.perf_counter() - started)
                    hits[(kinds[row], alpha)].append(np.sum(-top >= thresholds[alpha][row] - 1e-6) / 10)
            key = f"{mechanism}@{pool}" if mechanism != PRODUCT else "product"
            recall[key] = {
                f"{kind}@{alpha:g}": round(float(np.mean(v)), 4) for (kind, alpha), v in hits.items()
            }
            recall[key].update(
                {
                    f"all@{alpha:g}": round(float(np.mean(hits[("text", alpha)] + hits[("image", alpha)])), 4)
                    for alpha in ALPHAS
                }
            )
            rescore[key] = {
                "candidates": int(np.median(sizes)),
                "rescore_ms": round(percentile(times, 50) * 1000, 3),
            }
        out["recall"] = recall
        out["rescore"] = rescore
        out["answer"] = _answer(recall, rescore, pools, mechanisms)
    return out


_WIDENED = tuple(f"hybrid_nprobe_x{f}" for f in NPROBE_FACTORS)
#: The hybrid index widened and a second index over the image vectors, their union re-scored.
_COMBINED = tuple(f"hybrid_nprobe_x{f}+{side}" for f in NPROBE_FACTORS for side in ("image", "image_shared"))


def _product(
    hybrid: Any, lib: Library, probes: dict[str, np.ndarray], queries: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The candidates of an emphasised search as the product makes them: the hybrid index
    searched ``EMPHASIS_WIDEN`` times wider for ``EMPHASIS_POOL`` and the picture index a rebuild
    writes (``pictures.build``) for ``EMPHASIS_PICTURE_POOL``, each asked for ``2 * pool + 16``
    ids as the FAISS store asks; with the build's and one query's searches' times."""
    from search.query.ranking import EMPHASIS_PICTURE_POOL, EMPHASIS_POOL
    from search.stores.faiss import pictures
    from search.stores.faiss.faiss_lib import import_faiss
    from search.stores.faiss.kinds import KINDS
    from search.stores.faiss.tuning import AUTO_FLAT_MAX_VECTORS, kind_for
    from search.stores.faiss_nearest import EMPHASIS_WIDEN

    faiss = import_faiss()
    spec = KINDS[kind_for("auto", len(lib.images), AUTO_FLAT_MAX_VECTORS)]
    ids = np.arange(len(lib.images), dtype=np.int64)
    t = time.perf_counter()
    built = pictures.build(
        faiss, spec, hybrid, ids, lib.images, text_queries=probes["text"], image_queries=probes["image"]
    )
    info: dict[str, Any] = {
        "kind": spec.name,
        "picture_build_and_tune_s": round(time.perf_counter() - t, 1),
        "quantizer": built.quantizer,
        "hybrid_pool": EMPHASIS_POOL,
        "picture_pool": EMPHASIS_PICTURE_POOL,
        "widen": EMPHASIS_WIDEN,
    }
    picture = built.index if built.index is not None else spec.create(faiss, ids, lib.images)
    if built.tuning is not None:
        info.update(picture_param=built.tuning.param, picture_value=built.tuning.value)
    params = None
    if spec.search_params is not None:
        tuned = faiss.extract_index_ivf(hybrid).nprobe if spec.name == "ivf" else None
        if tuned is not None:
            params = spec.search_params(faiss, tuned * EMPHASIS_WIDEN)
            info["hybrid_widened_value"] = tuned * EMPHASIS_WIDEN

    def hybrid_search(q: np.ndarray, k: int) -> np.ndarray:
        return hybrid.search(q, k, params=params)[1] if params is not None else hybrid.search(q, k)[1]

    k_hybrid, k_picture = 2 * EMPHASIS_POOL + 16, 2 * EMPHASIS_PICTURE_POOL + 16
    found = {
        "product_hybrid": hybrid_search(queries, k_hybrid)[:, :EMPHASIS_POOL],
        "product_picture": picture.search(queries, k_picture)[1][:, :EMPHASIS_PICTURE_POOL],
    }
    times: dict[str, list[float]] = {"hybrid_widened": [], "picture": [], "hybrid_default": []}
    for i in range(0, len(queries), max(1, len(queries) // 40)):
        for name, search in (
            ("hybrid_widened", lambda q: hybrid_search(q, k_hybrid)),
            ("picture", lambda q: picture.search(q, k_picture)),
            ("hybrid_default", lambda q: hybrid.search(q, k_hybrid)),
        ):
            started = time.perf_counter()
            search(queries[i : i + 1])
            times[name].append(time.perf_counter() - started)
    info["search_ms"] = {name: round(percentile(v, 50) * 1000, 3) for name, v in times.items()}
    return found, info


def _widened(index: Any, info: dict[str, Any], queries: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The hybrid IVF's candidates with nprobe widened (``NPROBE_FACTORS``), and each search's
    p50 for one query (in ``info``); nprobe is set back to the tuned value after."""
    if info.get("param") != "nprobe":
        return {}
    from search.stores.faiss.faiss_lib import import_faiss

    ivf = import_faiss().extract_index_ivf(index)
    tuned, found = ivf.nprobe, {}
    for factor, name in zip(NPROBE_FACTORS, _WIDENED, strict=True):
        ivf.nprobe = min(ivf.nlist, tuned * factor)
        found[name] = index.search(queries, k)[1]
        for pool in (500, 1000):
            times = []
            for i in range(0, len(queries), max(1, len(queries) // 40)):
                t = time.perf_counter()
                index.search(queries[i : i + 1], 2 * pool + 16)
                times.append(time.perf_counter() - t)
            info[f"{name}_search_ms_pool_{pool}"] = round(percentile(times, 50) * 1000, 3)
    ivf.nprobe = tuned
    return found


def _cosines(lib: Library, vectors: ClusteredVectors) -> dict[str, float]:
    """Typical cosines of the library (what it assumes of CLIP): image-image of one cluster and
    of unrelated images, image-text of an image and its first label, text-text."""
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, len(lib.images), (2, 2000))
    x, cluster = vectors.rows(0, min(len(lib.images), 50_000))
    same = [
        float(x[i] @ x[j])
        for i, j in zip(rng.integers(0, len(x), 4000), rng.integers(0, len(x), 4000), strict=True)
        if cluster[i] == cluster[j] and i != j
    ]
    first = lib.label_ids[a, 0]
    return {
        "image_image_unrelated": round(float(np.mean(np.sum(lib.images[a] * lib.images[b], axis=1))), 3),
        "image_image_same_cluster": round(float(np.mean(same)), 3) if same else float("nan"),
        "image_own_label_text": round(float(np.mean(np.sum(lib.images[a] * lib.texts[first], axis=1))), 3),
        "text_text": round(float(np.mean(lib.texts[:500] @ lib.texts[500:].T)), 3),
    }


def _search_times(indexes: dict[str, Any], queries: np.ndarray, pools: tuple[int, ...]) -> dict[str, float]:
    """p50 of one query's search for ``2 * pool + 16`` ids, per index and pool (interleaved)."""
    times: dict[str, list[float]] = {f"{name}@{pool}": [] for name in indexes for pool in pools}
    picks = np.random.default_rng(9).choice(len(queries), min(40, len(queries)), replace=False)
    for i in picks:
        for pool in pools:
            for name, index in indexes.items():
                t = time.perf_counter()
                index.search(queries[i : i + 1], 2 * pool + 16)
                times[f"{name}@{pool}"].append(time.perf_counter() - t)
    return {key: round(percentile(v, 50) * 1000, 3) for key, v in times.items()}


def _answer(
    recall: dict[str, Any], rescore: dict[str, Any], pools: tuple[int, ...], mechanisms: list[str]
) -> dict[str, Any]:
    """Per mechanism, the smallest pool whose recall reaches the target at every alpha (both
    kinds of query), with its candidates and re-score time."""
    answer: dict[str, Any] = {}
    if "product" in recall:
        worst = min(v for k, v in recall["product"].items() if not k.startswith("all@"))
        answer["product"] = {"worst_recall": worst, "reaches": worst >= TARGET, **rescore["product"]}
    for mechanism in (m for m in mechanisms if m != PRODUCT):
        for pool in pools:
            key = f"{mechanism}@{pool}"
            worst = min(v for k, v in recall[key].items() if not k.startswith("all@"))
            if worst >= TARGET:
                answer[mechanism] = {"pool": pool, "worst_recall": worst, **rescore[key]}
                break
        else:
            answer[mechanism] = None
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.emphasis_recall", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200, help="text queries, and as many image queries")
    parser.add_argument(
        "--sides", nargs="*", default=list(SIDES), help="second indexes: image, labels, image_shared"
    )
    parser.add_argument("--pools", nargs="*", type=int, default=list(POOLS), help="pools to measure")
    args = parser.parse_args(argv)
    from . import env
    from .emphasis_report import table

    env.configure(fresh=False)  # the product's settings (EMPHASIS_POOL); no database is used
    env.setup_django()
    result = run(args.size, queries=args.queries, sides=tuple(args.sides), pools=tuple(args.pools))
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (env.RESULTS_DIR / "emphasis_recall.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("recall", "rescore")}, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
