"""FAISS index generations: build, write atomically, load memory-mapped, query.

This module owns the on-disk search index (see ``DESIGN.md``, invariants 1, 2, 5 and
"Scale"). It knows nothing about Django: it takes ids and vectors and gives back ids
and scores. Importing it is cheap: ``faiss`` is imported lazily, on first use, and
``torch`` never.

Layout of an index directory::

    CURRENT              "42\\n": the generation readers serve (moved atomically)
    gen-000042.faiss     the index, of the kind its manifest names (default "flat":
                         faiss.IndexIDMap2(faiss.IndexFlatIP(dim))), never changed in place
    gen-000042.json      its manifest (see :class:`Manifest`)
    gen-000041.faiss     the previous generation, kept for readers that still map it
    gen-000041.json
    LOCK                 flock(2) target of :func:`writer_lock`; never deleted

Contracts:

* A generation's files are written to a temporary name, fsynced and ``os.replace``d
  into place, then the directory is fsynced; only then does ``CURRENT`` move, the
  same way. A reader therefore never sees a partial file under a final name, and a
  crash at any point leaves the previous generation current.
* Generation numbers only grow; a name is never reused within a directory.
* One writer at a time (:func:`writer_lock`, an ``flock`` on ``LOCK``).
* A reader (:class:`IndexReader`) verifies a generation (manifest fields, file
  size, sha256, expected model and dimension, ``ntotal``) once, before it serves
  it. A damaged, truncated, missing or mismatched generation is never served: the
  reader keeps serving what it has and reports the problem in ``last_error``.
* The index is loaded memory-mapped (``faiss.IO_FLAG_MMAP_IFC``): the vectors stay in
  the page cache, shared by every process that loads the same generation, instead of
  being copied into each process's private memory.

Everything here is derived data (invariant 1): the directory can be deleted at any
moment and rebuilt from the database.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import numbers
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only; faiss is imported lazily at runtime
    import faiss  # noqa: F401

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "IndexLocked",
    "IndexReader",
    "IndexUnavailable",
    "InvalidGeneration",
    "Manifest",
    "SearchIndexError",
    "get_reader",
    "read_current_manifest",
    "reset_readers",
    "write_generation",
    "writer_lock",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Version of the on-disk layout (file names, manifest fields). Readers refuse others.
FORMAT_VERSION = 1

#: How far a row's L2 norm may be from 1 before :func:`write_generation` refuses it.
UNIT_NORM_TOLERANCE = 1e-3

#: faiss's ``distance_compute_blas_threshold`` set on first use; see :func:`_faiss`.
BLAS_THRESHOLD = 1

CURRENT_NAME = "CURRENT"
LOCK_NAME = "LOCK"
_TMP_PREFIX = ".tmp-"
_GEN_RE = re.compile(r"^gen-(\d{6,})\.(faiss|json)$")
_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------- errors


class SearchIndexError(Exception):
    """Base class of every error this module raises on purpose."""


class IndexUnavailable(SearchIndexError):
    """Nothing can be served: no generation has been written yet, or none is valid."""


class IndexLocked(SearchIndexError):
    """Another writer holds the index lock (raised by ``writer_lock(blocking=False)``)."""


class InvalidGeneration(SearchIndexError):
    """A generation (or the ``CURRENT`` pointer) is missing, damaged or does not match."""


# --------------------------------------------------------------------------- faiss


_faiss_lock = threading.Lock()
_faiss_module: Any = None


def _faiss() -> Any:
    """Import faiss on first use and apply process-wide settings once.

    ``distance_compute_blas_threshold``: faiss's exact flat search computes inner
    products either with its own SIMD loop or, when ``nq * d`` reaches the threshold
    (default 128000, i.e. 250 queries at d=512), with BLAS sgemm over blocks of the
    database. Below the threshold a batch spends its time in a per-pair loop.
    Measured with faiss-cpu 1.15.1 on a busy 2-vCPU machine, k=100 (another run at
    1M, 200 queries: 13 qps with the default, ~190 qps with 1):

    ======================  ===============  ===========
    case                    default (SIMD)   BLAS (1)
    ======================  ===============  ===========
    100k x 512, 1 query     55 ms            21 ms
    1M x 512, 1 query       245 ms           204 ms
    1M x 512, 16 queries    47 ms/query      20 ms/query
    1M x 512, 200 queries   ~9 qps           ~100-130 qps
    ======================  ===============  ===========

    BLAS is never slower here, so we always take it (threshold 1). The setting is
    global to the process; this module is the only faiss user. Thread count is
    left to faiss/OpenMP (``OMP_NUM_THREADS``): a deployment running several web
    processes per machine may want to lower it.
    """
    global _faiss_module
    if _faiss_module is None:
        with _faiss_lock:
            if _faiss_module is None:
                # faiss brings its own OpenMP runtime: let its idle threads sleep rather than
                # spin, as torch's do (search.embedding), so that a batch search or an IVF
                # build never leaves threads spinning on the cores requests need.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import faiss as _f

                _f.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
                _faiss_module = _f
    return _faiss_module


# --------------------------------------------------------------------------- kinds


SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Kind:
    """How to build, load and check one kind of index. The extension point for
    approximate indexes: add an entry to :data:`KINDS`.

    * ``build(faiss, dim)`` returns an empty index that accepts ``add_with_ids``
      (an ``IndexIDMap2`` around the real index, so that ids are ours).
    * ``make(faiss, ids, vectors)``, when given, builds the filled index instead (a kind
      that has to be trained on the data, such as IVF); ``build`` is then only used for
      documentation and checks.
    * ``io_flags(faiss)`` are the ``read_index`` flags; flat storage can be
      memory-mapped (``IO_FLAG_MMAP_IFC``), other kinds may need ``0``.
    * ``check(faiss, index)`` returns a problem description or ``None``.
    * ``prepare(faiss, index)`` applies search-time parameters after loading
      (e.g. ``efSearch`` for HNSW, ``nprobe`` for IVF).
    * ``searcher(faiss, index)``, when given, returns the function that answers
      ``(queries, k) -> (scores, ids)`` for the loaded index (default: ``index.search``).
    * ``write(faiss, path, ids, vectors)``, when given, writes the index file itself instead
      of building the index in memory and ``faiss.write_index``-ing it.

    An approximate kind ("hnsw", "ivf") is opt-in, is not exact, and has to be
    validated for recall against "flat" before it is used; "flat" stays the default
    (DESIGN.md, "Scale": past a flat index, prefer an existing engine).
    """

    name: str
    build: Callable[[Any, int], Any]
    io_flags: Callable[[Any], int]
    check: Callable[[Any, Any], str | None]
    prepare: Callable[[Any, Any], None] = lambda faiss, index: None
    make: Callable[[Any, np.ndarray, np.ndarray], Any] | None = None
    searcher: Callable[[Any, Any], SearchFn] | None = None
    write: Callable[[Any, Path, np.ndarray, np.ndarray], None] | None = None

    def create(self, faiss: Any, ids: np.ndarray, vectors: np.ndarray) -> Any:
        """The index holding ``vectors`` under ``ids``."""
        if self.make is not None:
            return self.make(faiss, ids, vectors)
        index = self.build(faiss, vectors.shape[1])
        if len(ids):
            index.add_with_ids(vectors, ids)
        return index


def _build_flat(faiss: Any, dim: int) -> Any:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _check_flat(faiss: Any, index: Any) -> str | None:
    if not isinstance(index, faiss.IndexIDMap2):
        return f"expected IndexIDMap2, found {type(index).__name__}"
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, faiss.IndexFlatIP):
        return f"expected IndexIDMap2(IndexFlatIP), found IndexIDMap2({type(inner).__name__})"
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return "index metric is not inner product"
    return None


def _write_flat(faiss: Any, path: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write ``IndexIDMap2(IndexFlatIP)`` in faiss's file format straight from the arrays.

    Byte for byte what ``faiss.write_index`` writes for that index (a test compares them), but
    without first copying every vector into a faiss index: at a million vectors that copy was
    a third of a rebuild here (~5-10 s of page faults for 2 GB) and doubled its peak memory.
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


#: Up to this many queries at once, the flat kind scans with numpy (see :func:`_flat_searcher`).
NUMPY_SCAN_MAX_QUERIES = 4
#: A flat scan is split across the scan threads only above this many rows per part (at 100k
#: rows, two parts took ~12 ms against ~22 ms for one here; below, the hand-off costs more).
SCAN_MIN_ROWS_PER_THREAD = 32768
#: Flat indexes up to this size are scanned from a private copy in each process; larger ones
#: straight from the shared read-only mapping. Why: on this machine (a VM whose memory manager,
#: DAMON "pageout", keeps unmapping page-cache pages that are in use) a scan of a mapped file
#: took minor faults on every pass and ran ~3x slower than over anonymous memory (100k vectors:
#: ~50-65 ms against ~15-20 ms). A copy costs ``n x d x 4`` bytes per web process: small
#: indexes pay it for speed; large ones stay shared (one copy for all processes).
PRIVATE_COPY_MAX_BYTES = 512 * 2**20

_scan_lock = threading.Lock()
_scan_pool: tuple[int, Any] | None = None  # (pid, ThreadPoolExecutor)


def _scan_threads() -> int:
    """Threads one flat scan may use: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _scan_executor() -> Any:
    """This process's scan threads (created after fork, once), with numpy's BLAS at one thread.

    Why not numpy's own BLAS threads: OpenBLAS threads spin while they wait, so when other
    processes (or other requests) hold the cores, a 2-thread ``sgemv`` ran *slower* than a
    1-thread one here (100k: ~29 ms against ~22 ms under load). Our threads block instead of
    spinning: a lone query at 1M still uses both cores (~110-170 ms against ~180-230 ms for
    1-thread BLAS), and concurrent requests just queue their parts.
    """
    global _scan_pool
    pid = os.getpid()
    pool = _scan_pool
    if pool is not None and pool[0] == pid:
        return pool[1]
    with _scan_lock:
        if _scan_pool is None or _scan_pool[0] != pid:
            from concurrent.futures import ThreadPoolExecutor

            _numpy_blas_single_threaded()
            _scan_pool = (pid, ThreadPoolExecutor(_scan_threads(), thread_name_prefix="flat-scan"))
        return _scan_pool[1]


def _numpy_blas_single_threaded() -> None:
    """Limit numpy's own BLAS (not torch's, not faiss's) to one thread in this process."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency of ours; without it, BLAS decides
        return
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and lib.filepath.startswith(os.path.join(numpy_dir, "numpy")):
            lib.set_num_threads(1)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``scores``, best first (ties: lower position first)."""
    n = scores.shape[0]
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
    else:
        part = np.arange(n)
    return part[np.lexsort((part, -scores[part]))]


def _flat_searcher(faiss: Any, index: Any) -> SearchFn:
    """Exact search that reads the memory-mapped vectors with BLAS matrix-vector products.

    For a single query, faiss's flat scan (even with ``distance_compute_blas_threshold``
    at 1) works through the database in blocks with a heap per block on one thread;
    ``vectors @ q`` plus ``argpartition`` over the same mapped memory was 1.5-2.5x faster
    here (100k: ~10-20 ms against ~20-50 ms; 1M: ~120-170 ms against ~200-330 ms) and gives
    the same top-k. The scan reads ``n x d x 4`` bytes: memory bandwidth is the limit (see
    ``PRIVATE_COPY_MAX_BYTES`` for which memory it reads). Above
    ``SCAN_MIN_ROWS_PER_THREAD`` rows per thread the rows are split among the scan threads
    (:func:`_scan_executor`) and the parts' top-k merged. Batches of more than
    :data:`NUMPY_SCAN_MAX_QUERIES` go to faiss, whose blocked sgemm wins there and needs no
    ``n x m`` score matrix.
    """
    n, d = int(index.ntotal), int(index.d)
    if n == 0:
        return index.search
    inner = faiss.downcast_index(index.index)
    # A view of the codes in the read-only mapping that ``index`` owns (the closure keeps
    # ``index`` alive as long as the view is used), or a private copy of them.
    vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    if vectors.nbytes <= PRIVATE_COPY_MAX_BYTES:
        vectors = np.array(vectors)
    vectors.flags.writeable = False
    labels = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    executor = _scan_executor()
    parts = max(1, min(_scan_threads(), n // SCAN_MIN_ROWS_PER_THREAD))
    bounds = [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]

    def scan_part(query: np.ndarray, k: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        scores = vectors[lo:hi] @ query
        best = _top_k(scores, k)
        return scores[best], best + lo

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = queries.shape[0]
        if m > NUMPY_SCAN_MAX_QUERIES:
            return index.search(queries, k)
        out_scores = np.empty((m, k), dtype=np.float32)
        out_ids = np.empty((m, k), dtype=np.int64)
        for row in range(m):
            if parts == 1:
                scores, positions = scan_part(queries[row], k, 0, n)
            else:
                futures = [executor.submit(scan_part, queries[row], k, lo, hi) for lo, hi in bounds]
                found = [future.result() for future in futures]
                all_scores = np.concatenate([f[0] for f in found])
                all_positions = np.concatenate([f[1] for f in found])
                order = np.lexsort((all_positions, -all_scores))[:k]
                scores, positions = all_scores[order], all_positions[order]
            out_scores[row] = scores
            out_ids[row] = labels[positions]
        return out_scores, out_ids

    return search


def _ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: about sqrt(n) (1000 at a million).

    Measured here on clustered synthetic vectors (``benchmarks/``): at 1M, 1000 lists trained
    in ~9 s and filled in ~18 s; 2000 lists took 40 s + 31 s for a faster search that the
    10x target did not need.
    """
    return max(1, min(65536, int(round(math.sqrt(n)))))


#: Lists an IVF search visits. With ~sqrt(n) lists, 16 kept recall@10 >= 0.97 on clustered
#: vectors even for queries far from any stored vector (text-like queries), and scans ~1.6%
#: of the vectors at 1M.
IVF_NPROBE = 16
#: HNSW graph degree, construction and search beams: recall@10 ~0.99 on clustered vectors,
#: but building is slow here (~50 s per 100k vectors on 2 cores): see BENCHMARKS.md.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64


def _build_ivf(faiss: Any, dim: int, lists: int = 1) -> Any:
    return faiss.index_factory(dim, f"IVF{lists},Flat", faiss.METRIC_INNER_PRODUCT)


def _make_ivf(faiss: Any, ids: np.ndarray, vectors: np.ndarray) -> Any:
    n, dim = vectors.shape
    index = _build_ivf(faiss, dim, _ivf_lists(n))
    ivf = faiss.extract_index_ivf(index)
    if n:
        ivf.cp.niter = 10
        # k-means on a sample: 64 points per list are plenty for the centroids and keep
        # training at a few seconds per million vectors.
        ivf.cp.max_points_per_centroid = 64
        index.train(vectors)
        index.add_with_ids(vectors, ids)
    else:
        # Nothing to train on: one empty list around the origin is a valid, empty index.
        ivf.quantizer.add(np.zeros((1, dim), dtype=np.float32))
        ivf.is_trained = True
    return index


def _check_ivf(faiss: Any, index: Any) -> str | None:
    if not isinstance(index, faiss.IndexIVFFlat):
        return f"expected IndexIVFFlat, found {type(index).__name__}"
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return "index metric is not inner product"
    return None


def _prepare_ivf(faiss: Any, index: Any) -> None:
    index.nprobe = min(IVF_NPROBE, index.nlist)


def _build_hnsw(faiss: Any, dim: int) -> Any:
    hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return faiss.IndexIDMap2(hnsw)


def _check_hnsw(faiss: Any, index: Any) -> str | None:
    if not isinstance(index, faiss.IndexIDMap2):
        return f"expected IndexIDMap2, found {type(index).__name__}"
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, faiss.IndexHNSWFlat):
        return f"expected IndexIDMap2(IndexHNSWFlat), found IndexIDMap2({type(inner).__name__})"
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return "index metric is not inner product"
    return None


def _prepare_hnsw(faiss: Any, index: Any) -> None:
    faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH


def _mmap_flags(faiss: Any) -> int:
    # Flat storage (flat, and HNSW's vectors) and IVF lists are read zero-copy from a
    # read-only shared mapping: every process serving a generation shares one copy.
    return int(faiss.IO_FLAG_MMAP_IFC)


KINDS: dict[str, _Kind] = {
    "flat": _Kind(
        name="flat",
        build=_build_flat,
        io_flags=_mmap_flags,
        check=_check_flat,
        searcher=_flat_searcher,
        write=_write_flat,
    ),
    # Approximate, opt-in (IMAGESEARCH_INDEX_KIND): recall and speed in BENCHMARKS.md.
    "ivf": _Kind(
        name="ivf",
        build=_build_ivf,
        io_flags=_mmap_flags,
        check=_check_ivf,
        prepare=_prepare_ivf,
        make=_make_ivf,
    ),
    "hnsw": _Kind(
        name="hnsw",
        build=_build_hnsw,
        io_flags=_mmap_flags,
        check=_check_hnsw,
        prepare=_prepare_hnsw,
    ),
}


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    """What a generation is. Stored as ``gen-NNNNNN.json`` beside the index file.

    ``sha256`` is the hex digest of the whole index file and ``size_bytes`` its size;
    ``created_at`` is a unix timestamp; ``image_weight`` is the image/label weight the
    hybrids were made with; ``count`` equals the index's ``ntotal``;
    ``previous_generation`` is the generation ``CURRENT`` named when this one was
    written (``None`` for the first), which is what the writer keeps for readers.
    """

    format_version: int
    generation: int
    kind: str
    model: str
    dim: int
    count: int
    image_weight: float
    sha256: str
    size_bytes: int
    created_at: float
    index_file: str
    previous_generation: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse and type-check a manifest; raise :class:`InvalidGeneration` if malformed."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidGeneration(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidGeneration("manifest is not a JSON object")

        def field(name: str, types: tuple[type, ...]) -> Any:
            if name not in data:
                raise InvalidGeneration(f"manifest has no {name!r}")
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise InvalidGeneration(f"manifest field {name!r} has the wrong type")
            return value

        version = field("format_version", (int,))
        if version != FORMAT_VERSION:
            raise InvalidGeneration(
                f"manifest format_version {version} is not supported (expected {FORMAT_VERSION})"
            )
        manifest = cls(
            format_version=version,
            generation=field("generation", (int,)),
            kind=field("kind", (str,)),
            model=field("model", (str,)),
            dim=field("dim", (int,)),
            count=field("count", (int,)),
            image_weight=float(field("image_weight", (int, float))),
            sha256=field("sha256", (str,)),
            size_bytes=field("size_bytes", (int,)),
            created_at=float(field("created_at", (int, float))),
            index_file=field("index_file", (str,)),
            previous_generation=(
                None if data.get("previous_generation") is None else field("previous_generation", (int,))
            ),
        )
        if manifest.generation < 1 or manifest.dim < 1 or manifest.count < 0:
            raise InvalidGeneration("manifest generation, dim or count out of range")
        if not re.fullmatch(r"[0-9a-f]{64}", manifest.sha256):
            raise InvalidGeneration("manifest sha256 is not a hex digest")
        if manifest.index_file != _index_name(manifest.generation):
            raise InvalidGeneration(
                f"manifest index_file {manifest.index_file!r} does not match its generation"
            )
        return manifest


def _index_name(generation: int) -> str:
    return f"gen-{generation:06d}.faiss"


def _manifest_name(generation: int) -> str:
    return f"gen-{generation:06d}.json"


# --------------------------------------------------------------------------- file helpers


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_tmp_path(directory: Path, final_name: str) -> Path:
    """Create an empty, uniquely named temporary file (mode 0666 & ~umask)."""
    while True:
        path = directory / f"{_TMP_PREFIX}{final_name}.{secrets.token_hex(6)}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return path


def _sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        digest.update(view[:n])
    return digest.hexdigest()


def _publish_bytes(directory: Path, final_name: str, data: bytes) -> None:
    """Write ``data`` to a temp file, fsync it and ``os.replace`` it to ``final_name``."""
    tmp = _new_tmp_path(directory, final_name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / final_name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_pointer(directory: Path) -> int | None:
    """Generation named by ``CURRENT``; ``None`` if there is none. Raises InvalidGeneration."""
    try:
        text = (directory / CURRENT_NAME).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidGeneration(f"cannot read {CURRENT_NAME}: {exc}") from exc
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidGeneration(f"{CURRENT_NAME} does not name a generation: {text[:40]!r}")
    return int(text)


def _existing_generations(directory: Path) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            match = _GEN_RE.match(entry.name)
            if match:
                found.add(int(match.group(1)))
    return found


def _read_manifest_file(directory: Path, generation: int) -> Manifest:
    path = directory / _manifest_name(generation)
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidGeneration(f"manifest {path.name} is missing") from exc
    except OSError as exc:
        raise InvalidGeneration(f"cannot read manifest {path.name}: {exc}") from exc
    manifest = Manifest.from_json(text)
    if manifest.generation != generation:
        raise InvalidGeneration(
            f"manifest {path.name} describes generation {manifest.generation}, not {generation}"
        )
    return manifest


def read_current_manifest(directory: PathLike, *, strict: bool = False) -> Manifest | None:
    """The manifest of the generation ``CURRENT`` names, without verifying the index file.

    Returns ``None`` when nothing has been written yet (no ``CURRENT``). When ``CURRENT``
    or the manifest is unreadable or malformed it logs a warning and returns ``None``
    too (so that a status page keeps working and "no usable index" triggers a
    rebuild, which repairs it), or raises :class:`InvalidGeneration` if ``strict``.
    Cheap: reads two small files. What a reader serves is :attr:`IndexReader.manifest`.
    """
    directory = Path(directory)
    try:
        generation = _read_pointer(directory)
        if generation is None:
            return None
        return _read_manifest_file(directory, generation)
    except InvalidGeneration as exc:
        if strict:
            raise
        logger.warning("search index in %s: %s", directory, exc)
        return None


# --------------------------------------------------------------------------- writer lock


_held_locks: dict[tuple[str, int], int] = {}
_held_locks_guard = threading.Lock()


@contextlib.contextmanager
def writer_lock(directory: PathLike, *, blocking: bool = True) -> Iterator[None]:
    """Hold the directory's exclusive writer lock (``flock`` on ``LOCK``) for the block.

    Exclusive across processes and across threads (each acquisition opens its own
    file description). With ``blocking=False`` raises :class:`IndexLocked` at once if
    another holder has it; with ``blocking=True`` waits. Re-entrant within one thread,
    so :func:`write_generation` (which takes the lock itself) can run inside a block
    that already holds it. The lock is released when the process dies, so a crashed
    writer never leaves it held. Creates the directory if needed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = (os.path.realpath(directory), threading.get_ident())
    with _held_locks_guard:
        depth = _held_locks.get(key, 0)
        if depth:
            _held_locks[key] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _held_locks_guard:
                _held_locks[key] -= 1
        return

    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise IndexLocked(f"index writer lock in {directory} is held") from exc
            raise
        with contextlib.suppress(OSError):  # holder's pid, for diagnostics only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with _held_locks_guard:
            _held_locks[key] = 1
        try:
            yield
        finally:
            with _held_locks_guard:
                del _held_locks[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- writing


def _validate(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32:
        raise ValueError(f"vectors must be a float32 ndarray, got {getattr(vectors, 'dtype', type(vectors))}")
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise ValueError(f"vectors must have shape (n, d) with d >= 1, got {vectors.shape}")
    if not isinstance(ids, np.ndarray) or ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be an integer ndarray, got {getattr(ids, 'dtype', type(ids))}")
    if ids.ndim != 1 or ids.shape[0] != vectors.shape[0]:
        raise ValueError(f"ids must have shape ({vectors.shape[0]},), got {ids.shape}")
    if ids.size and ids.dtype.kind == "u" and ids.max() > np.iinfo(np.int64).max:
        raise ValueError("ids do not fit in int64")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors)
    if ids.size:
        if ids.min() < 0:
            raise ValueError("ids must be >= 0 (-1 marks a missing result)")
        ordered = np.sort(ids)  # np.unique is ~15x slower at 1M
        if (ordered[1:] == ordered[:-1]).any():
            raise ValueError("ids must be unique")
    # Norms chunk by chunk: no n x d temporary. A NaN/inf element makes its norm non-finite.
    for start in range(0, vectors.shape[0], 65536):
        chunk = vectors[start : start + 65536]
        sq = np.einsum("ij,ij->i", chunk, chunk)  # float32 is plenty for a 1e-3 tolerance
        bad = ~np.isfinite(sq)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise ValueError(f"vectors must be finite (row {row}, id {int(ids[row])})")
        off = np.abs(np.sqrt(sq) - 1.0) > UNIT_NORM_TOLERANCE
        if off.any():
            row = start + int(np.flatnonzero(off)[0])
            raise ValueError(
                f"vectors must have unit L2 norm (row {row}, id {int(ids[row])}, "
                f"norm {math.sqrt(sq[row - start]):.6f})"
            )
    return ids, vectors


def write_generation(
    directory: PathLike,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    model: str,
    image_weight: float,
    kind: str = "flat",
    keep_previous: int = 1,
) -> Manifest:
    """Build an index of ``vectors`` labelled ``ids`` and make it the current generation.

    ``ids``: integer array, shape ``(n,)``, unique, ``>= 0``. ``vectors``: float32,
    shape ``(n, d)``, finite rows of unit L2 norm. ``n == 0`` is valid (an empty index;
    ``d`` still comes from ``vectors.shape[1]``). Anything else raises ``ValueError``
    before a file is touched.

    Takes the writer lock (blocking; re-entrant if the caller already holds it).
    Writes generation N+1, where N is the highest generation in ``CURRENT`` or on
    disk, as ``gen-NNNNNN.faiss`` and ``gen-NNNNNN.json``: each to a temporary name,
    fsynced, ``os.replace``d, directory fsynced; then moves ``CURRENT`` the same way.
    Then deletes every other generation except the ``keep_previous`` generations
    that were current before it (readers may still serve them; on Linux deleting a
    mapped file is safe anyway, on network storage it may not be, so raise
    ``keep_previous`` there), orphans of crashed writes, and temporary files.

    The flat kind is written straight from the arrays (:func:`_write_flat`); the other kinds
    are built in memory first (peak memory about twice the vectors).
    Returns the new generation's :class:`Manifest`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; known: {sorted(KINDS)}")
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a non-empty string")
    if isinstance(image_weight, bool) or not isinstance(image_weight, numbers.Real):
        raise ValueError("image_weight must be a number in [0, 1]")
    image_weight = float(image_weight)
    if not (math.isfinite(image_weight) and 0.0 <= image_weight <= 1.0):
        raise ValueError("image_weight must be a number in [0, 1]")
    if keep_previous < 0:
        raise ValueError("keep_previous must be >= 0")
    ids, vectors = _validate(ids, vectors)
    n, dim = vectors.shape

    faiss = _faiss()
    spec = KINDS[kind]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    with writer_lock(directory, blocking=True):
        try:
            previous = _read_pointer(directory)
        except InvalidGeneration as exc:
            logger.warning("search index in %s: %s; writing a new generation", directory, exc)
            previous = None
        generation = max({previous or 0} | _existing_generations(directory)) + 1

        index_name = _index_name(generation)
        tmp = _new_tmp_path(directory, index_name)
        try:
            if spec.write is not None:
                spec.write(faiss, tmp, ids, vectors)
            else:
                index = spec.create(faiss, ids, vectors)
                faiss.write_index(index, str(tmp))
                del index
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
                sha256 = _sha256_fd(fd)
            finally:
                os.close(fd)
            os.replace(tmp, directory / index_name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

        manifest = Manifest(
            format_version=FORMAT_VERSION,
            generation=generation,
            kind=kind,
            model=model,
            dim=int(dim),
            count=int(n),
            image_weight=float(image_weight),
            sha256=sha256,
            size_bytes=size,
            created_at=time.time(),
            index_file=index_name,
            previous_generation=previous,
        )
        _publish_bytes(directory, _manifest_name(generation), manifest.to_json().encode())
        _fsync_dir(directory)
        _publish_bytes(directory, CURRENT_NAME, f"{generation}\n".encode("ascii"))
        _fsync_dir(directory)
        logger.info("index generation %d written: %d x %d, %s, %d bytes", generation, n, dim, model, size)

        _collect_garbage(directory, manifest, keep_previous)
    return manifest


def _collect_garbage(directory: Path, current: Manifest, keep_previous: int) -> None:
    """Delete stale temp files and every generation but ``current`` and the
    ``keep_previous`` that were current before it. Runs under the writer lock."""
    keep = {current.generation}
    previous = current.previous_generation
    while previous is not None and len(keep) <= keep_previous and previous not in keep:
        keep.add(previous)
        try:
            previous = _read_manifest_file(directory, previous).previous_generation
        except InvalidGeneration:
            break
    for entry in list(os.scandir(directory)):
        match = _GEN_RE.match(entry.name)
        stale = entry.name.startswith(_TMP_PREFIX) or (match is not None and int(match.group(1)) not in keep)
        if stale:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - permissions etc.
                logger.warning("could not delete %s: %s", entry.path, exc)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Loaded:
    manifest: Manifest
    index: Any
    loaded_at: float
    search: SearchFn


class IndexReader:
    """Serves searches from the current generation of one directory, in one process.

    Share one per process (:func:`get_reader`); it is thread-safe. Every ``search``
    first checks, at most once per ``check_interval`` seconds and with one ``stat`` of
    ``CURRENT``, whether the pointer moved; if it did, the new generation is verified
    and loaded memory-mapped, then swapped in under a lock. Searches in flight keep
    the object they started with.

    With ``background=True`` (the default) a new generation is loaded by a daemon
    thread while searches keep being answered from the old one; the very first load
    (nothing to serve yet) happens in the calling thread. With ``background=False``
    the thread that notices the move loads it; other threads keep serving the old one.

    A generation that fails verification is never served: the reader keeps what it
    has, sets ``last_error`` and logs a warning, and does not retry that generation.
    ``expected_model`` / ``expected_dim`` (``None``: accept any) are checked against
    the manifest.
    """

    def __init__(
        self,
        directory: PathLike,
        *,
        expected_model: str | None = None,
        expected_dim: int | None = None,
        check_interval: float = 0.5,
        background: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.expected_model = expected_model
        self.expected_dim = expected_dim
        self.check_interval = check_interval
        self.background = background
        self.last_error: str | None = None
        self._state: _Loaded | None = None
        self._pointer_sig: tuple[int, ...] | None = None
        self._pointer_generation: int | None = None
        self._failed_generation: int | None = None
        self._next_check = 0.0
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loader: threading.Thread | None = None

    # -- public -------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest | None:
        """Manifest of the generation being served; ``None`` if nothing is loaded."""
        state = self._state
        return state.manifest if state else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product top-``k`` of each query row: exact for the "flat" kind,
        approximate for "ivf" and "hnsw".

        ``queries``: shape ``(m, d)`` (a single ``(d,)`` row is accepted as ``m = 1``),
        finite, converted to float32. Returns ``(scores, ids)``: float32 and int64,
        both ``(m, k)``, best first. Where fewer than ``k`` vectors exist, ids are
        ``-1`` and scores ``-inf``. Raises :class:`IndexUnavailable` if no valid
        generation has been loaded, ``ValueError`` for a bad ``k`` or query shape.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        self._maybe_refresh()
        state = self._state
        if state is None:
            raise IndexUnavailable(self._unavailable_reason())
        dim = state.manifest.dim
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(f"queries must have shape (m, {dim}), got {np.shape(queries)}")
        if not np.isfinite(q).all():
            raise ValueError("queries must be finite")
        m = q.shape[0]
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        ids = np.full((m, k), -1, dtype=np.int64)
        kk = min(k, state.index.ntotal)
        if m and kk:
            d_out, i_out = state.search(np.ascontiguousarray(q), kk)
            scores[:, :kk] = d_out
            ids[:, :kk] = i_out
            scores[ids == -1] = -np.inf
        return scores, ids

    def poll(self) -> Manifest | None:
        """Do the check :meth:`search` does, and return the manifest being served.

        Rate-limited (``check_interval``) and cheap; the first load happens in the
        calling thread, later ones as :meth:`search` does them (in the background, or
        by this thread while others keep serving). ``None``: nothing valid is loaded;
        see ``last_error``. Use it to learn ``dim``/``count`` before searching.
        """
        self._maybe_refresh()
        return self.manifest

    def refresh(self, *, force: bool = False) -> bool:
        """Check ``CURRENT`` now and load the generation it names if it is new.

        Synchronous: it blocks for the whole load (seconds at 1M vectors) and waits
        for a load in progress, so request code should call :meth:`poll` or
        :meth:`search` instead; this is for tests, commands and an admin "reload".
        ``force=True`` also retries a generation that failed before. Returns True if
        a new generation was swapped in.
        """
        return self._refresh(wait=True, force=force)

    def status(self) -> dict[str, Any]:
        """A snapshot for an admin page. Never raises."""
        state = self._state
        m = state.manifest if state else None
        return {
            "directory": str(self.directory),
            "generation": m.generation if m else None,
            "current_generation": self._pointer_generation,
            "kind": m.kind if m else None,
            "count": m.count if m else None,
            "dim": m.dim if m else None,
            "model": m.model if m else None,
            "image_weight": m.image_weight if m else None,
            "size_bytes": m.size_bytes if m else None,
            "created_at": m.created_at if m else None,
            "loaded_at": state.loaded_at if state else None,
            "loading": self._load_lock.locked(),
            "expected_model": self.expected_model,
            "expected_dim": self.expected_dim,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Stop serving and drop the mapped index (searches in flight finish first)."""
        with self._swap_lock:
            self._state = None

    def __repr__(self) -> str:
        m = self.manifest
        return f"<IndexReader {self.directory} generation={m.generation if m else None}>"

    # -- internals ----------------------------------------------------------------

    def _unavailable_reason(self) -> str:
        if self.last_error:
            return f"no valid index generation in {self.directory}: {self.last_error}"
        return f"no index generation has been written in {self.directory} yet"

    def _pointer_signature(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.directory / CURRENT_NAME)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        # Rate-limited only while something is served: with nothing loaded yet, every caller
        # waits for the load in progress (a fresh web process under concurrent requests would
        # otherwise answer "unavailable" to all but the first for check_interval seconds).
        if now < self._next_check and self._state is not None:
            return
        self._next_check = now + self.check_interval
        if self._state is None or not self.background:
            # Nothing to serve: wait for whoever is loading. Otherwise serve the old one.
            self._refresh(wait=self._state is None)
            return
        if self._pointer_signature() == self._pointer_sig:
            return
        with self._swap_lock:
            if self._loader is not None and self._loader.is_alive():
                return
            self._loader = threading.Thread(
                target=self._refresh, kwargs={"wait": True}, name="search-index-loader", daemon=True
            )
            self._loader.start()

    def _refresh(self, *, wait: bool, force: bool = False) -> bool:
        if not self._load_lock.acquire(blocking=wait):
            return False
        try:
            sig = self._pointer_signature()
            if sig == self._pointer_sig and not force:
                return False
            self._pointer_sig = sig
            try:
                generation = _read_pointer(self.directory)
            except InvalidGeneration as exc:
                self._record_error(str(exc))
                return False
            self._pointer_generation = generation
            if generation is None:
                return False
            state = self._state
            if state is not None and state.manifest.generation == generation:
                return False
            if generation == self._failed_generation and not force:
                return False
            try:
                loaded = self._load(generation)
            except InvalidGeneration as exc:
                self._failed_generation = generation
                self._record_error(f"generation {generation}: {exc}")
                return False
            with self._swap_lock:
                self._state = loaded
            self.last_error = None
            self._failed_generation = None
            logger.info(
                "search index generation %d loaded from %s (%d vectors)",
                generation,
                self.directory,
                loaded.manifest.count,
            )
            return True
        finally:
            self._load_lock.release()

    def _record_error(self, message: str) -> None:
        self.last_error = message
        served = self._state.manifest.generation if self._state else None
        logger.warning("search index in %s: %s (serving generation %s)", self.directory, message, served)

    def _load(self, generation: int) -> _Loaded:
        """Verify generation ``generation`` and load it; raise InvalidGeneration otherwise."""
        manifest = _read_manifest_file(self.directory, generation)
        if self.expected_model is not None and manifest.model != self.expected_model:
            raise InvalidGeneration(f"built with model {manifest.model!r}, expected {self.expected_model!r}")
        if self.expected_dim is not None and manifest.dim != self.expected_dim:
            raise InvalidGeneration(f"dimension {manifest.dim}, expected {self.expected_dim}")
        spec = KINDS.get(manifest.kind)
        if spec is None:
            raise InvalidGeneration(f"unknown index kind {manifest.kind!r}")

        path = self.directory / manifest.index_file
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise InvalidGeneration(f"index file {path.name} is missing") from exc
        except OSError as exc:
            raise InvalidGeneration(f"cannot open {path.name}: {exc}") from exc
        try:
            st = os.fstat(fd)
            if st.st_size != manifest.size_bytes:
                raise InvalidGeneration(
                    f"index file {path.name} has {st.st_size} bytes, manifest says {manifest.size_bytes}"
                )
            try:
                digest = _sha256_fd(fd)
            except OSError as exc:
                raise InvalidGeneration(f"cannot read {path.name}: {exc}") from exc
            if digest != manifest.sha256:
                raise InvalidGeneration(f"index file {path.name} checksum mismatch")
            faiss = _faiss()
            try:
                index = faiss.read_index(str(path), spec.io_flags(faiss))
            except (RuntimeError, MemoryError) as exc:
                raise InvalidGeneration(f"faiss cannot read {path.name}: {exc}") from exc
            # The name must still refer to the file we hashed.
            try:
                st2 = os.stat(path)
            except OSError as exc:
                raise InvalidGeneration(f"{path.name} vanished while loading") from exc
            if (st2.st_ino, st2.st_dev) != (st.st_ino, st.st_dev):
                raise InvalidGeneration(f"{path.name} was replaced while loading")
        finally:
            os.close(fd)

        problem = spec.check(faiss, index)
        if problem:
            raise InvalidGeneration(problem)
        if index.d != manifest.dim:
            raise InvalidGeneration(f"index dimension {index.d}, manifest says {manifest.dim}")
        if index.ntotal != manifest.count:
            raise InvalidGeneration(f"index holds {index.ntotal} vectors, manifest says {manifest.count}")
        spec.prepare(faiss, index)
        search = spec.searcher(faiss, index) if spec.searcher is not None else index.search
        return _Loaded(manifest=manifest, index=index, loaded_at=time.time(), search=search)


# --------------------------------------------------------------------------- per-process cache


_readers: dict[str, IndexReader] = {}
_readers_lock = threading.Lock()


def get_reader(
    directory: PathLike,
    expected_model: str | None = None,
    expected_dim: int | None = None,
) -> IndexReader:
    """The process-wide reader for ``directory`` (created on first call).

    A call with other expectations than the cached reader's replaces it.
    """
    key = os.path.realpath(directory)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None or (reader.expected_model, reader.expected_dim) != (expected_model, expected_dim):
            reader = IndexReader(key, expected_model=expected_model, expected_dim=expected_dim)
            _readers[key] = reader
        return reader


def reset_readers() -> None:
    """Forget every cached reader (tests; also done in a forked child)."""
    with _readers_lock:
        readers = list(_readers.values())
        _readers.clear()
    for reader in readers:
        reader.close()


def _after_fork_in_child() -> None:
    # Locks and loader threads do not survive fork(); start clean in the child.
    global _readers_lock, _held_locks_guard
    _readers.clear()
    _readers_lock = threading.Lock()
    _held_locks.clear()
    _held_locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
