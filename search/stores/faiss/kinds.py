"""Index kinds: how to build, write, load, check and search each kind of faiss index.

"flat" (exact, the default) and the opt-in approximate kinds "ivf" and "hnsw". Every
kind maps ids of ours to inner-product scores over unit vectors.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..base import HNSW_M
from .flat_scan import SearchFn, flat_searcher


def _mmap_flags(faiss: Any) -> int:
    # Flat storage (flat, and HNSW's vectors) and IVF lists are read zero-copy from a
    # read-only shared mapping: every process serving a generation shares one copy.
    return int(faiss.IO_FLAG_MMAP_IFC)


@dataclass(frozen=True)
class Kind:
    """How to build, load and check one kind of index. The extension point for
    approximate indexes: add an entry to :data:`KINDS`.

    * ``build(faiss, dim)`` returns an empty index that accepts ``add_with_ids``
      (an ``IndexIDMap2`` around the real index, so that ids are ours).
    * ``make(faiss, ids, vectors)``, when given, builds the filled index instead (a kind
      that has to be trained on the data, such as IVF); ``build`` is then only used for
      documentation and checks.
    * ``io_flags(faiss)`` are the ``read_index`` flags; flat storage can be
      memory-mapped (``IO_FLAG_MMAP_IFC``, the default), other kinds may need ``0``.
    * ``check(faiss, index)`` returns a problem description or ``None``.
    * ``prepare(faiss, index)`` applies search-time parameters after loading
      (e.g. ``efSearch`` for HNSW, ``nprobe`` for IVF).
    * ``searcher(faiss, index)``, when given, returns the function that answers
      ``(queries, k) -> (scores, ids)`` for the loaded index (default: ``index.search``).
    * ``write(faiss, path, ids, vectors)``, when given, writes the index file itself instead
      of building the index in memory and ``faiss.write_index``-ing it.
    * ``param``: the name of an approximate kind's search parameter (``nprobe``,
      ``efSearch``), tuned at build time (:mod:`.tuning`); ``set_param(faiss, index, value)``
      applies it and ``param_range(index, k)`` gives the values worth trying for top-``k``.
    * ``search_params(faiss, value)``: faiss's per-search parameters for the value ``value`` of
      ``param`` (a search wider than the tuned one, without changing the shared index).

    An approximate kind ("hnsw", "ivf") is not exact: its parameter is tuned at build time
    for recall against exact results, and the recall measured is recorded in the manifest.
    """

    name: str
    build: Callable[[Any, int], Any]
    check: Callable[[Any, Any], str | None]
    io_flags: Callable[[Any], int] = _mmap_flags
    prepare: Callable[[Any, Any], None] = lambda faiss, index: None
    make: Callable[[Any, np.ndarray, np.ndarray], Any] | None = None
    searcher: Callable[[Any, Any], SearchFn] | None = None
    write: Callable[[Any, Path, np.ndarray, np.ndarray], None] | None = None
    param: str | None = None
    set_param: Callable[[Any, Any, int], None] = lambda faiss, index, value: None
    param_range: Callable[[Any, int], tuple[int, int]] = lambda index, k: (1, 1)
    search_params: Callable[[Any, int], Any] | None = None
    default_param: int | None = None  # ``param``'s value where the manifest records none

    def create(self, faiss: Any, ids: np.ndarray, vectors: np.ndarray) -> Any:
        """The index holding ``vectors`` under ``ids``."""
        if self.make is not None:
            return self.make(faiss, ids, vectors)
        index = self.build(faiss, vectors.shape[1])
        if len(ids):
            index.add_with_ids(vectors, ids)
        return index

    def save(self, faiss: Any, path: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write the index file of ``vectors`` under ``ids`` to ``path``."""
        if self.write is not None:
            self.write(faiss, path, ids, vectors)
            return
        index = self.create(faiss, ids, vectors)
        faiss.write_index(index, str(path))

    def search_fn(self, faiss: Any, index: Any) -> SearchFn:
        """The function that answers searches of ``index`` (loaded and prepared)."""
        return self.searcher(faiss, index) if self.searcher is not None else index.search


def _check_id_mapped(inner_name: str) -> Callable[[Any, Any], str | None]:
    """The check of an inner-product ``IndexIDMap2`` around a ``faiss.<inner_name>``."""

    def check(faiss: Any, index: Any) -> str | None:
        if not isinstance(index, faiss.IndexIDMap2):
            return f"expected IndexIDMap2, found {type(index).__name__}"
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, getattr(faiss, inner_name)):
            return f"expected IndexIDMap2({inner_name}), found IndexIDMap2({type(inner).__name__})"
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            return "index metric is not inner product"
        return None

    return check


# --------------------------------------------------------------------------- flat


def _build_flat(faiss: Any, dim: int) -> Any:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _write_flat(faiss: Any, path: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write ``IndexIDMap2(IndexFlatIP)`` in faiss's file format straight from the arrays.

    Byte for byte what ``faiss.write_index`` writes for that index (a test compares them), but
    without first copying every vector into a faiss index, a copy that costs a large share of
    a big rebuild and doubles its peak memory.
    The layout: each index's header (fourcc, d, ntotal, two unused fields, is_trained, metric)
    for the ID map and then the flat index, the vectors (count of floats, then floats), the ids
    (count, then int64s). The reader loads the file with faiss and verifies it like any other.
    """
    n, dim = vectors.shape

    def header(fourcc: bytes) -> bytes:
        return fourcc + struct.pack("<iqqqBi", dim, n, 1 << 20, 1 << 20, 1, int(faiss.METRIC_INNER_PRODUCT))

    with open(path, "wb") as f:
        f.write(header(b"IxM2") + header(b"IxFI") + struct.pack("<Q", n * dim))
        f.write(np.ascontiguousarray(vectors, dtype="<f4").reshape(-1).data)
        f.write(struct.pack("<Q", n))
        f.write(np.ascontiguousarray(ids, dtype="<i8").data)


# --------------------------------------------------------------------------- ivf

#: Lists an IVF search visits when the manifest records no tuned value (generations written
#: before tuning): with ~sqrt(n) lists, 16 kept recall high on clustered vectors (BENCHMARKS.md).
IVF_NPROBE = 16


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: about sqrt(n) (1000 at a million).

    More lists search faster but train and fill slower; sqrt(n) was fast enough (benchmarks/).
    """
    return max(1, min(65536, int(round(math.sqrt(n)))))


def _build_ivf(faiss: Any, dim: int, lists: int = 1) -> Any:
    return faiss.index_factory(dim, f"IVF{lists},Flat", faiss.METRIC_INNER_PRODUCT)


def _make_ivf(faiss: Any, ids: np.ndarray, vectors: np.ndarray) -> Any:
    n, dim = vectors.shape
    index = _build_ivf(faiss, dim, ivf_lists(n))
    ivf = faiss.extract_index_ivf(index)
    if n:
        ivf.cp.niter = 10
        # k-means on a sample: 64 points per list are plenty for the centroids and keep
        # training short.
        ivf.cp.max_points_per_centroid = 64
        index.train(vectors)
        index.add_with_ids(vectors, ids)
    else:
        # Nothing to train on: one empty list around the origin is a valid, empty index.
        ivf.quantizer.add(np.zeros((1, dim), dtype=np.float32))
        ivf.is_trained = True
    return index


def ivf_sharing_lists(faiss: Any, trained: Any, ids: np.ndarray, vectors: np.ndarray) -> Any:
    """An IVF index of ``vectors`` under ``ids`` whose lists are those of the IVF ``trained``
    (a copy of its coarse quantizer): no k-means of its own."""
    other = faiss.extract_index_ivf(trained)
    dim = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(other.quantizer.reconstruct_n(0, other.nlist))
    index = faiss.IndexIVFFlat(quantizer, dim, other.nlist, faiss.METRIC_INNER_PRODUCT)
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def _check_ivf(faiss: Any, index: Any) -> str | None:
    if not isinstance(index, faiss.IndexIVFFlat):
        return f"expected IndexIVFFlat, found {type(index).__name__}"
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return "index metric is not inner product"
    return None


def _prepare_ivf(faiss: Any, index: Any) -> None:
    index.nprobe = min(IVF_NPROBE, index.nlist)


def _set_nprobe(faiss: Any, index: Any, value: int) -> None:
    faiss.extract_index_ivf(index).nprobe = max(1, min(int(value), faiss.extract_index_ivf(index).nlist))


# --------------------------------------------------------------------------- hnsw

#: HNSW construction and search beams (the graph degree, HNSW_M, is the rule both stores share):
#: high recall on clustered vectors, at the price of a slow build (BENCHMARKS.md).
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64


def _build_hnsw(faiss: Any, dim: int) -> Any:
    hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return faiss.IndexIDMap2(hnsw)


#: The widest search beam tuning tries.
HNSW_EF_SEARCH_MAX = 2048


def _prepare_hnsw(faiss: Any, index: Any) -> None:
    faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH


def _set_ef_search(faiss: Any, index: Any, value: int) -> None:
    faiss.downcast_index(index.index).hnsw.efSearch = int(value)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            name="flat",
            build=_build_flat,
            check=_check_id_mapped("IndexFlatIP"),
            searcher=flat_searcher,
            write=_write_flat,
        ),
        # Approximate (what "auto" builds for large libraries, or chosen with
        # IMAGESEARCH_INDEX_KIND), tuned at build time: recall and speed in BENCHMARKS.md.
        Kind(
            name="ivf",
            build=_build_ivf,
            check=_check_ivf,
            prepare=_prepare_ivf,
            make=_make_ivf,
            param="nprobe",
            set_param=_set_nprobe,
            param_range=lambda index, k: (1, int(index.nlist)),
            search_params=lambda faiss, value: faiss.SearchParametersIVF(nprobe=max(1, int(value))),
            default_param=IVF_NPROBE,
        ),
        Kind(
            name="hnsw",
            build=_build_hnsw,
            check=_check_id_mapped("IndexHNSWFlat"),
            prepare=_prepare_hnsw,
            param="efSearch",
            set_param=_set_ef_search,
            param_range=lambda index, k: (max(k, 16), HNSW_EF_SEARCH_MAX),
            search_params=lambda faiss, value: faiss.SearchParametersHNSW(efSearch=max(1, int(value))),
            default_param=HNSW_EF_SEARCH,
        ),
    )
}
