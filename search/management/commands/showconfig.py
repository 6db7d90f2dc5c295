"""Print where the application keeps its data and which services it talks to."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Command(BaseCommand):
    help = "Show the database, broker, model and data directory in use."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")

    def handle(self, *args, bind: str, **options):
        db = settings.DATABASES["default"]
        engine = db["ENGINE"].rsplit(".", 1)[-1]
        broker = settings.CELERY_BROKER_URL
        embedded = broker.startswith("sqla+")
        lines = [
            f"Database:   {engine} {db.get('NAME')}",
            f"Broker:     {_redact(broker)}"
            + (
                "  (embedded, for a single machine; set CELERY_BROKER_URL=redis://... to use Redis)"
                if embedded
                else ""
            ),
            f"Model:      {settings.IMAGESEARCH_CLIP_MODEL}",
            f"Text model: {settings.IMAGESEARCH_TEXT_MODEL or '(the same)'}",
            f"Data dir:   {settings.DATA_DIR}",
            f"Media:      {settings.MEDIA_ROOT}",
            "Vectors:    "
            + (
                "pgvector, in the database (several machines may share it)"
                if settings.IMAGESEARCH_VECTOR_BACKEND == "pgvector"
                else f"FAISS index files in {settings.INDEX_DIR} (this machine)"
            ),
            "",
            f"Open http://{bind}/ to search.",
            "Create the first admin user with:  .venv/bin/python manage.py createsuperuser",
            f"then upload images at http://{bind}/admin/gallery/image/upload/",
        ]
        self.stdout.write("\n".join(lines))
