from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        from .stores import checks as store_checks

        checks.register(store_checks.vector_store_check)
        post_migrate.connect(_store_after_migrate, sender=self)


def _store_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """Let the vector store complete what ``migrate`` had to leave out (pgvector: its table)."""
    from django.db import connections

    from .stores.selection import vector_store

    vector_store().after_migrate(connections[using])
