"""Synthetic libraries: clustered unit vectors shaped like real embeddings, written as rows.

Real CLIP embeddings are not uniform on the sphere: photos of one subject sit in a tight
cone, and all of them share a common direction. :class:`ClusteredVectors` draws each vector
from one of a few thousand clusters grouped into topics (see its docstring), deterministically,
block by block, so row ``i`` is the same vector in every run whatever the chunking. Queries
for recall are stored vectors plus a little noise (cosine about 0.95 to the vector they came
from): "near stored vectors".

:func:`grow_library` inserts such rows as *ready* images (both vectors stored, as the
worker stores them, so rows have their real size in the database) until the library holds
the requested number. They share one small placeholder file for the original and the
thumbnail, so the search page renders them like real images.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

import numpy as np

DIM = 512
BLOCK = 8192  # rows generated per seeded block


@dataclass
class ClusteredVectors:
    """A mixture of tight clusters inside broader topics, around a common direction.

    ``v = normalize(a*g + b*topic + c*cluster + e*noise)`` with unit directions; the shares
    ``a^2 : b^2 : c^2 : e^2`` are about ``0.45 : 0.15 : 0.2 : 0.2`` (``e^2`` varies per
    cluster from 0.12 to 0.3), so, as with CLIP image embeddings, unrelated vectors still have a
    cosine of about 0.45, vectors of one topic about 0.6 and of one cluster about 0.8. Cluster
    sizes are uneven (Zipf-like).
    """

    dim: int = DIM
    clusters: int = 3000
    topics: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])

        def unit(*shape: int) -> np.ndarray:
            x = rng.standard_normal((*shape, self.dim), dtype=np.float32)
            return x / np.linalg.norm(x, axis=-1, keepdims=True)

        g, topics, own = unit(1)[0], unit(self.topics), unit(self.clusters)
        topic_of = rng.integers(0, self.topics, self.clusters)
        self.topic_of = topic_of  # each cluster's topic
        self.centres = (
            math.sqrt(0.45) * g + math.sqrt(0.15) * topics[topic_of] + math.sqrt(0.2) * own
        ).astype(np.float32)
        self.noise = np.sqrt(rng.uniform(0.12, 0.3, self.clusters)).astype(np.float32)
        weights = 1.0 / (np.arange(self.clusters) + 10.0) ** 0.8
        self.cumulative = np.cumsum(weights / weights.sum())

    def _block(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1, index])
        cluster = np.minimum(np.searchsorted(self.cumulative, rng.random(BLOCK)), self.clusters - 1)
        noise = rng.standard_normal((BLOCK, self.dim), dtype=np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        x = self.centres[cluster] + noise * self.noise[cluster, None]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, cluster

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``start .. stop - 1`` (float32, unit norm) and their cluster numbers."""
        parts, clusters = [], []
        for block in range(start // BLOCK, math.ceil(stop / BLOCK)):
            x, c = self._block(block)
            lo = max(start, block * BLOCK) - block * BLOCK
            hi = min(stop, (block + 1) * BLOCK) - block * BLOCK
            parts.append(x[lo:hi])
            clusters.append(c[lo:hi])
        if not parts:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64)
        return np.concatenate(parts), np.concatenate(clusters)


def queries_near(vectors: np.ndarray, count: int, *, cosine: float = 0.95, seed: int = 1) -> np.ndarray:
    """``count`` queries, each a random stored vector moved a little (cosine ~``cosine``)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(vectors), count)
    sigma = math.sqrt((1.0 / cosine**2 - 1.0) / vectors.shape[1])
    q = vectors[picks] + rng.standard_normal((count, vectors.shape[1]), dtype=np.float32) * sigma
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


PLACEHOLDER = "bench/placeholder.jpg"
LABEL_COUNT = 1000


def _placeholder() -> None:
    from pathlib import Path

    from django.conf import settings
    from PIL import Image as PILImage

    path = Path(settings.MEDIA_ROOT) / PLACEHOLDER
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), (120, 140, 160)).save(out, "JPEG")
    path.write_bytes(out.getvalue())


def label_text_vectors(vectors: ClusteredVectors) -> np.ndarray:
    """Text vectors of the synthetic labels, shaped like CLIP text embeddings of their images.

    Label ``i`` is the first label of the images of clusters ``c`` with ``c % LABEL_COUNT == i``
    (:func:`grow_library`). Like a real caption's vector it shares a common *text* direction with
    every other label (the modality gap: cosine ~0.55 between unrelated labels, ~0 with the
    image direction) and leans towards its images' cluster centres (cosine ~0.3 to them, as
    a caption's to its photos), plus its own noise.
    """
    rng = np.random.default_rng(99)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    text = unit(rng.standard_normal(vectors.dim, dtype=np.float32))
    common = unit(vectors.centres.mean(axis=0))  # the images' shared direction: not the text's
    sums = np.stack([vectors.centres[i::LABEL_COUNT].sum(axis=0) for i in range(LABEL_COUNT)])
    content = unit(sums - (sums @ common)[:, None] * common)
    own = unit(rng.standard_normal((LABEL_COUNT, vectors.dim), dtype=np.float32))
    out = math.sqrt(0.55) * text + math.sqrt(0.3) * content + math.sqrt(0.15) * own
    return unit(out).astype(np.float32)


def _labels(model: str, vectors: ClusteredVectors) -> list[int]:
    """The synthetic labels, with text vectors as the worker caches them on the row."""
    from gallery.models import Label

    existing = dict(Label.objects.filter(name__startswith="topic ").values_list("name", "pk"))
    missing = [i for i in range(LABEL_COUNT) if f"topic {i:04d}" not in existing]
    if missing:
        text = label_text_vectors(vectors)
        Label.objects.bulk_create(
            [
                Label(name=f"topic {i:04d}", vector=text[i].astype("<f4").tobytes(), vector_model=model)
                for i in missing
            ]
        )
        existing = dict(Label.objects.filter(name__startswith="topic ").values_list("name", "pk"))
    return [existing[f"topic {i:04d}"] for i in range(LABEL_COUNT)]


def synthetic_count() -> int:
    from gallery.models import Image

    return Image.objects.filter(sha256__startswith="synthetic-").count()


def _insert_sql(model: type, fields: list) -> str:
    from django.db import connection

    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES ({marks})"


def ready_row_template(model: str, now) -> tuple[list, list, list[int]]:
    """What every synthetic row inserts: the Image table's fields (primary key aside), their
    database values for a ready row of ``model`` made at ``now``, and the positions of the four
    that vary per row (original name, sha256, image vector, hybrid vector)."""
    from django.db import connection

    from gallery.models import Image

    template = Image(
        file=PLACEHOLDER,
        thumbnail=PLACEHOLDER,
        content_type="image/jpeg",
        width=640,
        height=480,
        status=Image.Status.READY,
        status_changed_at=now,
        embedding_model=model,
        hybrid_weight=0.5,
        hybrid_updated_at=now,
        uploaded_at=now,
    )
    fields = [f for f in Image._meta.concrete_fields if not f.primary_key]
    base = [f.get_db_prep_save(f.pre_save(template, True), connection) for f in fields]
    position = {f.name: i for i, f in enumerate(fields)}
    varying = [position[n] for n in ("original_name", "sha256", "image_vector", "hybrid_vector")]
    return fields, base, varying


def grow_library(target: int, *, vectors: ClusteredVectors, model: str, chunk: int = 5000) -> dict:
    """Insert synthetic ready rows until ``target`` synthetic images exist. Returns timings.

    Rows go in with one ``executemany`` per chunk (the ORM's ``bulk_create`` spends most of its
    time building model instances): the column values come from one model instance prepared by
    Django, so defaults of fields added later are honoured; only the per-row columns change.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from gallery.models import Image

    started = time.perf_counter()
    _placeholder()
    label_ids = _labels(model, vectors)
    have = synthetic_count()
    now = timezone.now()
    fields, base, varying = ready_row_template(model, now)
    insert_image = _insert_sql(Image, fields)
    through = Image.labels.through
    link_fields = [through._meta.get_field("image"), through._meta.get_field("label")]
    insert_link = _insert_sql(through, link_fields)
    table = connection.ops.quote_name(Image._meta.db_table)
    for start in range(have, target, chunk):
        stop = min(target, start + chunk)
        x, cluster = vectors.rows(start, stop)
        rows = []
        for i, row in enumerate(x):
            params = list(base)
            blob = row.astype("<f4").tobytes()
            for slot, value in zip(
                varying,
                (f"synthetic-{start + i}.jpg", f"synthetic-{start + i:054d}", blob, blob),
                strict=True,
            ):
                params[slot] = value
            rows.append(params)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(insert_image, rows)
            cursor.execute(
                f"SELECT id FROM {table} WHERE sha256 >= %s AND sha256 <= %s ORDER BY sha256",
                [f"synthetic-{start:054d}", f"synthetic-{stop - 1:054d}"],
            )
            pks = [pk for (pk,) in cursor.fetchall()]
            assert len(pks) == stop - start, (len(pks), stop - start)
            links = []
            for pk, c in zip(pks, cluster, strict=True):
                first = label_ids[int(c) % LABEL_COUNT]
                second = label_ids[(int(c) * 7 + 3) % LABEL_COUNT]
                links.append((pk, first))
                if second != first:
                    links.append((pk, second))
            cursor.executemany(insert_link, links)
    return {"rows": target, "added": max(0, target - have), "seconds": time.perf_counter() - started}


def sizes_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    run,
    results_name: str,
    options: dict[str, tuple[int, str]] | None = None,
    line=None,
) -> int:
    """The command line of a benchmark that measures one pass over libraries of growing sizes:
    ``--sizes`` and the integer ``options`` (name: (default, help); ``--rounds`` by default), a
    fresh data directory, the library grown to each size in turn (``run(size, **options)``
    returns that size's figures, printed as it goes: ``line(figures)``, JSON by default), and
    every size's figures written to ``results_name`` in the results directory."""
    import argparse
    import json

    from . import env

    options = options if options is not None else {"rounds": (1, "")}
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    for name, (default, help_text) in options.items():
        parser.add_argument(f"--{name}", type=int, default=default, help=help_text or None)
    args = parser.parse_args(argv)
    env.configure(fresh=True)
    env.build_model()
    env.setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    vectors, results = ClusteredVectors(), {}
    for size in args.sizes:
        grow_library(size, vectors=vectors, model=str(env.MODEL_DIR))
        results[str(size)] = run(size, **{name: getattr(args, name) for name in options})
        print((line or json.dumps)(results[str(size)]), flush=True)
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (env.RESULTS_DIR / results_name).write_text(json.dumps(results, indent=2) + "\n")
    return 0
