"""python manage.py import_images PATH [--label NAME ...] [--labels-from-dirs]"""

from __future__ import annotations

import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from gallery.exports import InvalidExport, export_detect, export_open, export_uploads
from gallery.importing import InvalidArchive, uploads_from_directory, uploads_from_zip
from gallery.labels import InvalidLabels, clean_label_names
from gallery.services import ImageUpload, ImportResult, images_create


class Command(BaseCommand):
    help = (
        "Import images from a folder or a .zip archive, with labels given or taken from folder names, "
        "or read back an export made by export_images (labels, upload times and vectors from its manifest)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", type=Path, help="a folder (searched recursively), a .zip file, or an export_images export"
        )
        parser.add_argument(
            "--label",
            action="append",
            default=[],
            dest="labels",
            help="a label for every image (repeat for several); added to an export's own labels",
        )
        parser.add_argument(
            "--labels-from-dirs",
            action="store_true",
            help="also label each image with the name of its parent folder (not for an export)",
        )

    def handle(self, *args, path: Path, labels: list[str], labels_from_dirs: bool, **options):
        try:
            labels = clean_label_names(labels)
        except InvalidLabels as exc:
            raise CommandError(str(exc)) from None
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        if export_detect(path):
            self._import_export(path, labels=labels, labels_from_dirs=labels_from_dirs)
            return
        if not labels and not labels_from_dirs:
            raise CommandError("Give at least one --label, or --labels-from-dirs.")
        try:
            if path.is_dir():
                uploads = list(uploads_from_directory(path, labels=labels, labels_from_dirs=labels_from_dirs))
            elif zipfile.is_zipfile(path):
                uploads = list(uploads_from_zip(path, labels=labels, labels_from_dirs=labels_from_dirs))
            else:
                raise CommandError(f"{path} is neither a folder nor a zip archive.")
        except InvalidArchive as exc:
            raise CommandError(str(exc)) from None
        self._report(self._create(uploads))

    def _import_export(self, path: Path, *, labels: list[str], labels_from_dirs: bool) -> None:
        if labels_from_dirs:
            raise CommandError(
                f"{path} is an export: its labels come from its manifest, so --labels-from-dirs does not "
                "apply (--label adds labels to every image)."
            )
        self.stdout.write(f"{path} is an export made by export_images: checking every file first.")
        try:
            with tqdm(unit="file", file=self.stderr, disable=None, desc="checking") as bar:
                export = export_open(path, extra_labels=labels, on_progress=lambda: bar.update(1))
        except InvalidExport as exc:
            raise CommandError(str(exc)) from None
        with export:
            uploads, vectors = export_uploads(export)
            result = self._create(uploads)
        self._report(result)
        if vectors.reused or vectors.ignored:
            self.stdout.write(
                f"{vectors.reused} image vectors reused (the image model skips those images), "
                f"{vectors.ignored} ignored (made by another model or of another dimension: embedded again)."
            )
        if export.unlisted:
            count = len(export.unlisted)
            shown = ", ".join(export.unlisted[:20]) + (", ..." if count > 20 else "")
            self.stdout.write(
                self.style.WARNING(
                    f"{count} file{'' if count == 1 else 's'} in the export "
                    f"{'is' if count == 1 else 'are'} not in its manifest and "
                    f"{'was' if count == 1 else 'were'} left out: {shown}"
                )
            )

    def _create(self, uploads: list[ImageUpload]) -> ImportResult:
        with tqdm(total=len(uploads), unit="image", file=self.stderr, disable=None) as bar:
            return images_create(uploads=uploads, on_progress=lambda _: bar.update(1))

    def _report(self, result: ImportResult) -> None:
        self.stdout.write(
            f"{len(result.added)} added, {len(result.duplicates)} skipped as duplicates, "
            f"{len(result.refused)} refused."
        )
        for name, reason in result.refused:
            self.stdout.write(f"  refused {name}: {reason}")
        if result.added and not result.queued:
            self.stdout.write(
                self.style.WARNING(
                    "The task queue is unreachable: the images are stored and will be embedded "
                    "when a worker and the broker are running."
                )
            )
