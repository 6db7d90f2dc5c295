"""python manage.py import_images PATH [--label NAME ...] [--labels-from-dirs]"""

from __future__ import annotations

import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from gallery.importing import InvalidArchive, uploads_from_directory, uploads_from_zip
from gallery.labels import InvalidLabels, clean_label_names
from gallery.services import images_create


class Command(BaseCommand):
    help = "Import images from a folder or a .zip archive, with labels given or taken from folder names."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a folder (searched recursively) or a .zip file")
        parser.add_argument(
            "--label",
            action="append",
            default=[],
            dest="labels",
            help="a label for every image (repeat for several)",
        )
        parser.add_argument(
            "--labels-from-dirs",
            action="store_true",
            help="also label each image with the name of its parent folder",
        )

    def handle(self, *args, path: Path, labels: list[str], labels_from_dirs: bool, **options):
        try:
            labels = clean_label_names(labels)
        except InvalidLabels as exc:
            raise CommandError(str(exc)) from None
        if not labels and not labels_from_dirs:
            raise CommandError("Give at least one --label, or --labels-from-dirs.")
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        try:
            if path.is_dir():
                uploads = list(uploads_from_directory(path, labels=labels, labels_from_dirs=labels_from_dirs))
            elif zipfile.is_zipfile(path):
                uploads = list(uploads_from_zip(path, labels=labels, labels_from_dirs=labels_from_dirs))
            else:
                raise CommandError(f"{path} is neither a folder nor a zip archive.")
        except InvalidArchive as exc:
            raise CommandError(str(exc)) from None
        with tqdm(total=len(uploads), unit="image", file=self.stderr, disable=None) as bar:
            result = images_create(uploads=uploads, on_progress=lambda _: bar.update(1))
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
