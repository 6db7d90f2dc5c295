"""python manage.py export_images PATH [--with-vectors]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from gallery.exports import MANIFEST_NAME, ExportRefused, export_target_check, library_export
from gallery.models import Image


class Command(BaseCommand):
    help = (
        "Export the whole library (every image file, byte for byte, and a manifest of labels, "
        "checksums, upload times and uploaders) to a new folder, or to a .zip archive when PATH "
        "ends in .zip. import_images reads it back."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a new (or empty) folder, or a new file ending in .zip")
        parser.add_argument(
            "--with-vectors",
            action="store_true",
            help="also export each image vector and its model, so that importing into an "
            "installation with the same model skips the image model",
        )

    def handle(self, *args, path: Path, with_vectors: bool, **options):
        try:
            export_target_check(path)
        except ExportRefused as exc:
            raise CommandError(str(exc)) from None
        total = Image.objects.count()
        try:
            with tqdm(total=total, unit="image", file=self.stderr, disable=None) as bar:
                report = library_export(
                    path=path, with_vectors=with_vectors, on_progress=lambda: bar.update(1)
                )
        except ExportRefused as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(
                f"The export could not be written ({exc}); nothing was left at {path}."
            ) from None
        vectors = f", {report.vectors} with image vectors" if with_vectors else ""
        self.stdout.write(
            f"{report.exported} images exported ({report.bytes / 1e6:.1f} MB{vectors}), "
            f"{len(report.not_exported)} not exported, to {path} (manifest: {MANIFEST_NAME})."
        )
        for what, reason in report.not_exported:
            self.stdout.write(self.style.WARNING(f"  not exported: {what}: {reason}"))
