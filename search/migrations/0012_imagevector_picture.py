# The image vector beside the hybrid in the pgvector store's table (search.models.ImageVector),
# for an emphasis on the picture. Added only where the table exists (PostgreSQL with the vector
# extension); its HNSW indexes are made by the store after ``migrate`` (search.stores.pgvector),
# and existing rows are filled by the sweep's backfill.

import pgvector.django.halfvec
from django.db import migrations

from search.stores.pgvector.operations import AddVectorField


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0011_jobs"),
    ]

    operations = [
        AddVectorField(
            model_name="imagevector",
            name="picture",
            field=pgvector.django.halfvec.HalfVectorField(null=True),
        ),
    ]
