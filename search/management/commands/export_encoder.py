"""Export the configured models to ONNX ahead of time (``manage.py export_encoder``).

The ONNX runtime exports a model at its first load when no export of its current files exists;
an image built before deployment runs this command instead, so that no process exports at
start-up. Each model is exported once, beside its files (search.encoder.cache); a second run
finds the exports and changes nothing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search import encoder
from search.encoder import cache


class Command(BaseCommand):
    help = "Export the image model and the text model to ONNX (once per model), for IMAGESEARCH_ENCODER=onnx."

    def add_arguments(self, parser):
        parser.add_argument(
            "--int8",
            action="store_true",
            help="also make the int8 graphs (used only where a worker measures that they agree)",
        )

    def handle(self, *args, int8: bool, **options):
        models = {encoder.model_name(): "IMAGESEARCH_CLIP_MODEL"}
        models.setdefault(encoder.text_model_name(), "IMAGESEARCH_TEXT_MODEL")
        for name, setting in models.items():
            try:
                directory = cache.export_in_subprocess(name, encoder.export_root(), setting=setting)
            except encoder.ModelUnavailable as exc:
                raise CommandError(str(exc)) from None
            towers = cache.read_manifest(directory)["modalities"]
            if int8:
                for tower in towers:
                    cache.int8_graph(directory, tower)
            self.stdout.write(f"{setting}={name}: {', '.join(towers)} -> {directory}")
