"""Moving the test database to a migration and back, for the tests of a data migration."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(*targets: tuple[str, str]):
    """Migrate to ``targets``; the apps (historical models) as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate(list(targets))
    executor.loader.build_graph()
    return executor.loader.project_state(list(targets)).apps


def migrate_to_the_latest() -> None:
    migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())
