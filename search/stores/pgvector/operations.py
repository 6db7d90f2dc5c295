"""Migration operations whose database side runs only where the vector table can exist.

The migration state always holds ``ImageVector`` (so ``makemigrations`` agrees with the model);
the table itself is created only on PostgreSQL with the vector extension, together with the
extension where this user may create it. SQLite, or a PostgreSQL without pgvector, migrates on
without it; the start-up check refuses the pgvector store there, saying what to install.
"""

from __future__ import annotations

from django.db import migrations

from . import database


class CreateVectorTable(migrations.CreateModel):
    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.name)
        database.vectors_table_ensure(schema_editor, model)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.name)
        connection = schema_editor.connection
        if connection.vendor == "postgresql" and database.table_exists(connection):
            schema_editor.delete_model(model)

    def describe(self) -> str:
        return f"Create model {self.name} where PostgreSQL has the vector extension"


def _column_exists(connection, table: str, column: str) -> bool:
    with connection.cursor() as cursor:
        return any(c.name == column for c in connection.introspection.get_table_description(cursor, table))


class AddVectorField(migrations.AddField):
    """A column of the vector table, added where the table exists and lacks it (the table made by
    the ``post_migrate`` hook, after the extension was installed, has it from the model already)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or not database.table_exists(connection):
            return
        if _column_exists(connection, database.TABLE, self.name):
            return
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or not database.table_exists(connection):
            return
        if _column_exists(connection, database.TABLE, self.name):
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"Add field {self.name} to {self.model_name} where its table exists"
