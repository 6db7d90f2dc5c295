from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        from .stores.pgvector import checks as vector_checks

        checks.register(vector_checks.vector_store_check)
        post_migrate.connect(_vector_table_after_migrate, sender=self)


def _vector_table_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """With the pgvector store, create the vector table if its migration ran before the extension
    was installed (that migration leaves it out then); a later ``migrate`` completes the set-up."""
    from django.db import connections

    from .models import ImageVector
    from .stores import pgvector as vectorstore
    from .stores.pgvector import database

    connection = connections[using]
    if not vectorstore.enabled() or connection.vendor != "postgresql" or database.table_exists(connection):
        return
    with connection.schema_editor() as editor:
        reason = database.vectors_table_ensure(editor, ImageVector)
    if reason:
        print(f"  The pgvector store cannot be set up: {reason}.")
