"""Celery tasks: thin, take ids, call services. Each is safe to run twice.

``acks_late`` + ``reject_on_worker_lost`` re-deliver a task whose worker died mid-way (killed,
out of memory); that is only allowed because every task here is idempotent by stored state.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import celeryd_init, worker_ready


@shared_task(acks_late=True, reject_on_worker_lost=True)
def embed_images(image_ids: list[int]) -> dict[str, int]:
    """Embed these images. Run twice: images already embedded by the current model are not
    run through the model again; deleted ids are skipped."""
    from . import services

    return vars(services.images_embed(image_ids=image_ids))


@shared_task(acks_late=True, reject_on_worker_lost=True)
def refresh_hybrids(image_ids: list[int]) -> int:
    """Recompute hybrids from stored vectors. Run twice: the same hybrids are written again."""
    from . import services

    return services.hybrids_refresh(image_ids=image_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rebuild_index() -> dict[str, object]:
    """Write a new index generation. Run twice (or concurrently): one writer wins, the other
    backs off; the written generation always equals a rebuild from the database."""
    from . import services

    return vars(services.index_rebuild())


@shared_task
def sweep() -> dict[str, int]:
    """Re-enqueue images left pending and schedule a rebuild when the index is behind."""
    from . import services

    return services.sweep()


@celeryd_init.connect
def _record_concurrency(sender=None, conf=None, instance=None, options=None, **kwargs) -> None:
    # Torch threads per process = cores / processes (see search.embedding.torch_threads).
    from . import embedding

    concurrency = (options or {}).get("concurrency") or getattr(conf, "worker_concurrency", None)
    if concurrency:
        embedding.set_worker_processes(int(concurrency))


@worker_ready.connect
def _sweep_at_start(sender=None, **kwargs) -> None:
    # Images uploaded while no worker (or no broker) was running get picked up right away.
    sweep.apply_async(retry=False)
