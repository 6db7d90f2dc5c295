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
