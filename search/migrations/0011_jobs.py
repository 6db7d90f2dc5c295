"""The index rebuild, the near-duplicate scan and the labelling pass become rows of one table,
``Job`` (one lifecycle: search.jobs); their former single-row tables are carried over and dropped.
``IndexState``, ``DuplicateScan`` and ``LabellingPass`` stay as proxies of their job's row."""

from django.db import migrations, models

COMMON = ("requested", "queued_at", "running_since", "finished_at", "seconds", "last_error")
SCAN_RESULT = ("number", "images", "threshold", "model", "fingerprint")
LABELLING_RESULT = ("images", "labels", "suggestions", "mislabels", "note")


def carry_over(apps, schema_editor):
    Job = apps.get_model("search", "Job")
    rebuild = apps.get_model("search", "IndexState").objects.filter(pk=1).first()
    if rebuild is not None:
        Job.objects.create(
            name="rebuild",
            requested=rebuild.requested,
            done_request=rebuild.built_request,
            queued=rebuild.rebuild_queued,
            queued_at=rebuild.queued_at,
            # A rebuild queued before its due time was kept was due when it was queued.
            due_at=rebuild.rebuild_due_at or rebuild.queued_at,
            finished_at=rebuild.last_rebuild_at,
            seconds=rebuild.last_rebuild_seconds,
            last_error=rebuild.last_error,
        )
    # The scan and the labelling pass: (old model, its done_request, its queued, its result fields).
    for name, model, done, queued, fields in (
        ("duplicates", "DuplicateScan", "scanned_request", "scan_queued", SCAN_RESULT),
        ("labelling", "LabellingPass", "done_request", "queued", LABELLING_RESULT),
    ):
        row = apps.get_model("search", model).objects.filter(pk=1).first()
        if row is None:
            continue
        Job.objects.create(
            name=name,
            done_request=getattr(row, done),
            queued=getattr(row, queued),
            due_at=row.due_at,
            done=getattr(row, "done", 0),
            total=getattr(row, "total", 0),
            result={field: getattr(row, field) for field in fields},
            **{field: getattr(row, field) for field in COMMON},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0010_calibration"),
    ]

    operations = [
        migrations.CreateModel(
            name="Job",
            fields=[
                ("name", models.CharField(max_length=20, primary_key=True, serialize=False)),
                ("requested", models.PositiveBigIntegerField(default=0)),
                ("done_request", models.PositiveBigIntegerField(default=0)),
                ("queued", models.BooleanField(default=False)),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
                ("due_at", models.DateTimeField(blank=True, null=True)),
                ("running_since", models.DateTimeField(blank=True, null=True)),
                ("done", models.PositiveIntegerField(default=0)),
                ("total", models.PositiveIntegerField(default=0)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("seconds", models.FloatField(blank=True, null=True)),
                ("result", models.JSONField(blank=True, default=dict)),
                ("last_error", models.TextField(blank=True)),
            ],
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.DeleteModel(name="IndexState"),
        migrations.DeleteModel(name="DuplicateScan"),
        migrations.DeleteModel(name="LabellingPass"),
        *(
            migrations.CreateModel(
                name=name,
                fields=[],
                options={"verbose_name": verbose, "verbose_name_plural": verbose, "proxy": True},
                bases=("search.job",),
            )
            for name, verbose in (
                ("IndexState", "index status"),
                ("DuplicateScan", "near-duplicates"),
                ("LabellingPass", "label suggestions"),
            )
        ),
    ]
