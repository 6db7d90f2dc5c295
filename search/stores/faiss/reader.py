"""Serving searches: a verified, memory-mapped generation per directory and process.

A generation is verified (manifest fields, file size, sha256, expected model and
dimension, ``ntotal``) once, before it is served; a damaged, truncated, missing or
mismatched one is never served (docs/architecture.md, 'Invariants'). The index is loaded
memory-mapped, so its vectors stay in the page cache, shared by every process that loads
the same generation, instead of being copied into each process's private memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import pictures
from .answers import check_k, query_matrix, ranked
from .errors import IndexUnavailable, InvalidGeneration
from .faiss_lib import import_faiss
from .files import CURRENT_NAME, PathLike, existing_generations, read_pointer
from .kinds import KINDS, Kind, SearchFn
from .manifest import Manifest, read_manifest_file
from .verify import check_loaded, read_verified

logger = logging.getLogger(__name__)

# What status() reports of the loaded generation's manifest.
_STATUS_MANIFEST_FIELDS = (
    "kind", "requested_kind", "param", "param_value", "recall_text", "recall_image",
    "count", "dim", "model", "image_weight", "size_bytes", "created_at",
)  # fmt: skip


@dataclass(frozen=True)
class _Loaded:
    manifest: Manifest
    index: Any
    loaded_at: float
    search: SearchFn
    spec: Kind
    param_value: int | None  # the approximate kind's search parameter as loaded
    pictures: pictures.Loaded | None = None  # the picture index, where it has one that verified
    picture_error: str | None = None  # why the picture index it records is not served


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

    def search(self, queries: np.ndarray, k: int, *, widen: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product top-``k`` of each query row: exact for the "flat" kind,
        approximate for "ivf" and "hnsw".

        ``queries``: shape ``(m, d)`` (a single ``(d,)`` row is accepted as ``m = 1``),
        finite, converted to float32. Returns ``(scores, ids)``: float32 and int64,
        both ``(m, k)``, best first. Where fewer than ``k`` vectors exist, ids are
        ``-1`` and scores ``-inf``. Raises :class:`IndexUnavailable` if no valid
        generation has been loaded, ``ValueError`` for a bad ``k`` or query shape.
        ``widen``: an approximate kind searches with its tuned parameter times this (more
        lists, a wider beam) for this search only; the exact kind ignores it.
        """
        k = check_k(k)
        state = self._served()
        search = state.search
        if widen > 1 and state.spec.search_params is not None and state.param_value is not None:
            params = state.spec.search_params(import_faiss(), state.param_value * int(widen))

            def search(q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
                return state.index.search(q, kk, params=params)

        return ranked(search, state.index.ntotal, query_matrix(queries, state.manifest.dim), k)

    def search_pictures(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Like :meth:`search`, over the served generation's picture index (the rows' image
        vectors alone); None where that generation has none or its picture index did not verify
        (every other search is answered as before)."""
        k = check_k(k)
        state = self._served()
        if state.pictures is None:
            return None
        q = query_matrix(queries, state.manifest.dim)
        return ranked(state.pictures.search, state.pictures.count, q, k)

    def _served(self) -> _Loaded:
        self._maybe_refresh()
        state = self._state
        if state is None:
            raise IndexUnavailable(self._unavailable_reason())
        return state

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
            **{field: getattr(m, field) if m else None for field in _STATUS_MANIFEST_FIELDS},
            "loaded_at": state.loaded_at if state else None,
            "picture_count": state.pictures.count if state and state.pictures else None,
            "picture_error": state.picture_error if state else None,
            "loading": self._load_lock.locked(),
            "expected_model": self.expected_model,
            "expected_dim": self.expected_dim,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Stop serving and drop the mapped index (searches in flight finish first)."""
        with self._swap_lock:
            self._state = None

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, no loader thread (neither survives fork)."""
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loader = None

    def __repr__(self) -> str:
        m = self.manifest
        return f"<IndexReader {self.directory} generation={m.generation if m else None}>"

    # -- noticing a new generation ----------------------------------------------------

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
            generation = self._generation_to_load(force=force)
            if generation is None:
                if self._state is None and self.last_error:  # CURRENT itself is unreadable
                    return self._load_earlier(None)
                return False
            try:
                loaded = self._load(generation)
            except InvalidGeneration as exc:
                self._failed_generation = generation
                self._record_error(f"generation {generation}: {exc}")
                if self._state is None:
                    # Nothing to serve: the newest intact earlier generation beats none at all.
                    return self._load_earlier(generation)
                return False
            self._swap_in(loaded)
            return True
        finally:
            self._load_lock.release()

    def _generation_to_load(self, *, force: bool) -> int | None:
        """The generation ``CURRENT`` names if the pointer moved and it is worth loading;
        ``None`` otherwise. Called with ``_load_lock`` held."""
        sig = self._pointer_signature()
        if sig == self._pointer_sig and not force:
            return None
        self._pointer_sig = sig
        try:
            generation = read_pointer(self.directory)
        except InvalidGeneration as exc:
            self._record_error(str(exc))
            return None
        self._pointer_generation = generation
        if generation is None:
            return None
        state = self._state
        if state is not None and state.manifest.generation == generation:
            return None
        if generation == self._failed_generation and not force:
            return None
        return generation

    def _load_earlier(self, damaged: int | None) -> bool:
        """Serve the newest generation before ``damaged`` (any, when ``CURRENT`` is unreadable)
        that verifies; the problem stays reported (``last_error``, ``failed_generation``) until a
        newer generation replaces it."""
        error = self.last_error
        earlier = (g for g in existing_generations(self.directory) if damaged is None or g < damaged)
        for generation in sorted(earlier, reverse=True):
            try:
                loaded = self._load(generation)
            except InvalidGeneration:
                continue
            self._swap_in(loaded)
            self.last_error, self._failed_generation = error, damaged
            logger.warning("serving generation %d: %s", generation, error)
            return True
        return False

    @property
    def serves_pictures(self) -> bool:
        """Whether the served generation has a picture index that verified."""
        state = self._state
        return state is not None and state.pictures is not None

    @property
    def picture_error(self) -> str | None:
        """Why the served generation's picture index is not served (None: it is, or it has none)."""
        state = self._state
        return state.picture_error if state else None

    @property
    def failed_generation(self) -> int | None:
        """The generation ``CURRENT`` names when it failed verification (not served), else None."""
        return self._failed_generation

    def _swap_in(self, loaded: _Loaded) -> None:
        with self._swap_lock:
            self._state = loaded
        self.last_error = None
        self._failed_generation = None
        logger.info(
            "search index generation %d loaded from %s (%d vectors)",
            loaded.manifest.generation,
            self.directory,
            loaded.manifest.count,
        )

    def _record_error(self, message: str) -> None:
        self.last_error = message
        served = self._state.manifest.generation if self._state else None
        logger.warning("search index in %s: %s (serving generation %s)", self.directory, message, served)

    # -- verifying and loading a generation -------------------------------------------

    def _load(self, generation: int) -> _Loaded:
        """Verify generation ``generation`` and load it; raise InvalidGeneration otherwise."""
        manifest = read_manifest_file(self.directory, generation)
        if self.expected_model is not None and manifest.model != self.expected_model:
            raise InvalidGeneration(f"built with model {manifest.model!r}, expected {self.expected_model!r}")
        if self.expected_dim is not None and manifest.dim != self.expected_dim:
            raise InvalidGeneration(f"dimension {manifest.dim}, expected {self.expected_dim}")
        spec = KINDS.get(manifest.kind)
        if spec is None:
            raise InvalidGeneration(f"unknown index kind {manifest.kind!r}")
        path = self.directory / manifest.index_file
        index = read_verified(path, size_bytes=manifest.size_bytes, sha256=manifest.sha256, spec=spec)
        faiss = import_faiss()
        check_loaded(faiss, spec, index, dim=manifest.dim, count=manifest.count)
        spec.prepare(faiss, index)
        param_value = spec.default_param
        if manifest.param_value is not None and manifest.param == spec.param:
            spec.set_param(faiss, index, manifest.param_value)
            param_value = manifest.param_value
        # A damaged picture index costs the emphasis its second source, never the generation.
        loaded_pictures, picture_error = None, None
        try:
            loaded_pictures = pictures.load(faiss, self.directory, manifest)
        except InvalidGeneration as exc:
            picture_error = str(exc)
            logger.warning("search index in %s, generation %d: %s", self.directory, generation, exc)
        return _Loaded(
            manifest=manifest,
            index=index,
            loaded_at=time.time(),
            search=spec.search_fn(faiss, index),
            spec=spec,
            param_value=param_value,
            pictures=loaded_pictures,
            picture_error=picture_error,
        )
