"""What the picture index costs a rebuild: ``search.ingest.rebuild.index_rebuild()`` from the
database as the product runs it (the hybrids and the image vectors read in one pass, both
indexes built, tuned and written), against the same rebuild with the picture side left out (the
hybrids alone read, as before the picture index, and an empty picture index written), in
alternating rounds on one library. Seconds, the database read's share and the files' bytes.

The suite's synthetic library (``benchmarks.library.grow_library``) stores each row's image
vector as its hybrid, so the picture index here indexes the same vectors as the hybrid one: the
same kind of work (an IVF of as many vectors on the hybrid index's lists, tuned), not the
emphasis's recall (``benchmarks.emphasis_recall`` measures that on a library whose parts differ).

``python -m benchmarks.picture_index_cost [--sizes 100000 1000000] [--rounds 2]``.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any

import numpy as np

from .timing import noise


@contextmanager
def _hybrids_alone():
    """The rebuild reads the hybrids alone and writes an empty picture index."""
    from search.stores import faiss_build, rows

    real = faiss_build.hybrids_and_pictures_read

    def hybrids_only(*, model: str):
        ids, vectors = rows.hybrids_read(model=model)
        return ids, vectors, (ids[:0], np.zeros((0, vectors.shape[1]), np.float32))

    faiss_build.hybrids_and_pictures_read = hybrids_only
    try:
        yield
    finally:
        faiss_build.hybrids_and_pictures_read = real


def run(size: int, *, rounds: int = 2) -> dict[str, Any]:
    from search.ingest import rebuild
    from search.stores import faiss as search_index
    from search.stores import faiss_store

    out: dict[str, Any] = {"size": size, "rounds": rounds, "runs": []}
    with noise(out):
        for round_ in range(rounds):
            order = ("hybrid_only", "with_pictures") if round_ % 2 == 0 else ("with_pictures", "hybrid_only")
            for variant in order:
                if variant == "hybrid_only":
                    with _hybrids_alone():
                        report = rebuild.index_rebuild()
                else:
                    report = rebuild.index_rebuild()
                manifest = search_index.read_current_manifest(faiss_store.index_dir())
                picture = manifest.picture
                out["runs"].append(
                    {
                        "variant": variant,
                        "seconds": round(report.seconds, 2),
                        "read_seconds": round(report.read_seconds, 2),
                        "hybrid_bytes": manifest.size_bytes,
                        "picture_bytes": picture.size_bytes if picture else 0,
                        "picture_count": picture.count if picture else 0,
                        "kind": manifest.kind,
                        "param_value": manifest.param_value,
                        "picture_param_value": picture.param_value if picture else None,
                    }
                )
    for variant in ("hybrid_only", "with_pictures"):
        runs = [r for r in out["runs"] if r["variant"] == variant]
        out[variant] = {
            "seconds": round(float(np.median([r["seconds"] for r in runs])), 2),
            "read_seconds": round(float(np.median([r["read_seconds"] for r in runs])), 2),
            "bytes": runs[-1]["hybrid_bytes"] + runs[-1]["picture_bytes"],
        }
    base, extra = out["hybrid_only"], out["with_pictures"]
    out["seconds_ratio"] = round(extra["seconds"] / base["seconds"], 3) if base["seconds"] else None
    out["extra_seconds"] = round(extra["seconds"] - base["seconds"], 2)
    out["extra_bytes"] = extra["bytes"] - base["bytes"]
    return out


def main(argv: list[str] | None = None) -> int:
    from .library import sizes_main

    return sizes_main(
        argv,
        prog="python -m benchmarks.picture_index_cost",
        description=__doc__.splitlines()[0],
        run=run,
        results_name="picture_index_cost.json",
    )


if __name__ == "__main__":
    sys.exit(main())
