"""What the search features of issue 22 cost: the default search against the search it replaced,
and each feature's own search, through the real service.

Each search goes through :func:`search.query.queries.run` in this process (query vector, store,
re-read rows, explanations; no page render), on the benchmark library (FAISS; the kind ``auto``
builds at the size), with query texts the encoder has already seen (its text cache answers, so
the model does not dominate). Variants, asked in turn for each text, in interleaved rounds
(each round runs every variant once per text, their order rotating from one text to the next):

* ``label_names_only``: the default search with the explanation step replaced by what the
  search did before it (``Image.label_names_load`` for the page): the baseline;
* ``default``: no slider moved, nothing left out, no cut-off (explanations included);
* ``alpha_0.5``: an emphasis (the ``EMPHASIS_POOL`` nearest hybrids re-scored);
* ``exclude_one``: one label's word left out (the query moves, the store drops its images);
* ``min_precision_0.8``: "good matches only" (the calibration is made first, as a rebuild does;
  on the random model it may find no threshold, and the cost is then reading that).

ratio = p50(variant) / p50(label_names_only). Goal: default <= 1.05 at 10k and 100k.

``python -m benchmarks.search_features [--sizes 10000 100000] [--rounds 5] [--texts 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Any

from .timing import noise, summary_ms

EXCLUDED = "topic 0001"  # a label of the synthetic library (benchmarks.library)
VARIANTS = ("label_names_only", "default", "alpha_0.5", "exclude_one", "min_precision_0.8")


@contextmanager
def label_names_only():
    """The search's explanation step replaced by the label-names read it replaced."""
    from gallery.models import Image
    from search.query import ranking

    original = ranking._explain

    def names_only(query: Any, shown: list[Any], alpha: float | None) -> None:
        Image.label_names_load([hit.image for hit in shown])

    ranking._explain = names_only
    try:
        yield
    finally:
        ranking._explain = original


def _search(variant: str, text: str) -> int:
    from search.query.queries import SearchQuery, run

    query = SearchQuery(text=text)
    if variant == "alpha_0.5":
        query = SearchQuery(text=text, alpha=0.5)
    elif variant == "exclude_one":
        query = SearchQuery(text=text, exclude=(EXCLUDED,))
    elif variant == "min_precision_0.8":
        query = SearchQuery(text=text, min_precision=0.8)
    if variant == "label_names_only":
        with label_names_only():
            result, _ = run(query)
    else:
        result, _ = run(query)
    return len(result.hits)


def run(size: int, *, rounds: int = 5, texts: int = 20, calibrate: bool = True) -> dict[str, Any]:
    """The variants' p50s at the library now in the database (``size`` rows, index current)."""
    from search.calibration import cutoffs
    from search.query import ranking

    from .query import query_texts

    out: dict[str, Any] = {"size": size, "rounds": rounds, "texts": texts, "pool": ranking.EMPHASIS_POOL}
    with noise(out):
        if calibrate:
            from search.calibration.library import library_calibrate

            t = time.perf_counter()
            report = library_calibrate()
            out["calibration"] = {"ran": report.ran, "seconds": round(time.perf_counter() - t, 1)}
        found = cutoffs.cutoff("text", 0.8)
        out["cutoff_text_0.8"] = {"threshold": found.threshold, "reason": found.reason}
        asked = query_texts(texts, seed=size + 22)
        for text in asked:  # the encoder's cache, the rows' pages, the connection: warm
            for variant in VARIANTS:
                _search(variant, text)
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        hits: dict[str, int] = {v: 0 for v in VARIANTS}
        for r in range(rounds):
            for i, text in enumerate(asked):
                shift = (r + i) % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    t = time.perf_counter()
                    hits[variant] = _search(variant, text)
                    times[variant].append(time.perf_counter() - t)
        out.update({v: summary_ms(times[v]) for v in VARIANTS})
        base = out["label_names_only"]["p50_ms"]
        out["ratios"] = {v: round(out[v]["p50_ms"] / base, 3) for v in VARIANTS}
        out["hits_last"] = hits
    return out


def figures(found: dict[str, Any], figure: Any) -> list[dict[str, Any]]:
    """The report's rows of one size's run (``figure``: :func:`benchmarks.report._figure`)."""
    size, ratios = found["size"], found["ratios"]
    base = found["label_names_only"]["p50_ms"]
    rows = [
        figure(
            "22 features",
            f"default search p50 / the label-names-only search at {size:,}",
            ratios["default"],
            "<=",
            1.05,
            note=f"{found['default']['p50_ms']} vs {base} ms",
        )
    ]
    for variant in VARIANTS[2:]:
        rows.append(
            figure(
                "22 features",
                f"{variant} p50 / the label-names-only search at {size:,}",
                ratios[variant],
                note=f"{found[variant]['p50_ms']} ms",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_features", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=20)
    args = parser.parse_args(argv)
    from . import env

    env.configure(fresh=True)
    os.environ["IMAGESEARCH_TORCH_THREADS"] = "1"  # this process serves queries like a web process
    env.build_model()
    env.setup_django()
    from django.core.management import call_command

    from search.ingest import rebuild

    from .library import ClusteredVectors, grow_library

    call_command("migrate", verbosity=0)
    vectors, results = ClusteredVectors(), {}
    for size in args.sizes:
        grow_library(size, vectors=vectors, model=str(env.MODEL_DIR))
        built = rebuild.index_rebuild()
        assert built.built, built
        results[str(size)] = run(size, rounds=args.rounds, texts=args.texts)
        print(json.dumps(results[str(size)]), flush=True)
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (env.RESULTS_DIR / "search_features.json").write_text(json.dumps(results, indent=2) + "\n")
    for size, r in results.items():
        print(
            f"{int(size):>9,}  " + "  ".join(f"{v} {r[v]['p50_ms']} ms ({r['ratios'][v]})" for v in VARIANTS)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
