# The pgvector store's table (search.models.ImageVector): created only on PostgreSQL with the
# vector extension, which this migration creates where the database user may
# (search.stores.pgvector.operations). Elsewhere only the migration state records the model.

import django.db.models.deletion
import pgvector.django.halfvec
from django.db import migrations, models

from search.stores.pgvector.operations import CreateVectorTable


class Migration(migrations.Migration):
    dependencies = [
        ("gallery", "0002_claims_and_stale_hybrids"),
        ("search", "0004_duplicate_groups"),
    ]

    operations = [
        CreateVectorTable(
            name="ImageVector",
            fields=[
                (
                    "image",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="gallery.image",
                    ),
                ),
                ("model", models.CharField(max_length=500)),
                ("dimension", models.PositiveSmallIntegerField()),
                ("embedding", pgvector.django.halfvec.HalfVectorField()),
                ("updated_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "image vector",
            },
        ),
    ]
