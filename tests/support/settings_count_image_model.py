"""Settings of a test worker that records, one line each, when its image model (the CLIP of
IMAGESEARCH_CLIP_MODEL) loads and every call that makes it encode anything afterwards, in the
file IMAGESEARCH_TEST_IMAGE_MODEL_CALLS: a test reads it to prove that the image model did not
run (or did). The calls still go through to the model."""

import os

from imagesearch.settings import *  # noqa: F403
from search import encoder

_CALLS_FILE = os.environ["IMAGESEARCH_TEST_IMAGE_MODEL_CALLS"]
_load_probed = encoder._load_probed


def _record(line: str) -> None:
    with open(_CALLS_FILE, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _load_probed_counting(name, setting):
    model, dim = _load_probed(name, setting)  # its probe is not a call of the application's
    if setting == "IMAGESEARCH_CLIP_MODEL":
        for method in ("encode_images", "encode_texts"):
            model.__dict__[method] = _counted(getattr(model, method))
        _record("loaded")
    return model, dim


def _counted(encode):
    def counted(inputs, *args, **kwargs):
        _record(f"encode {len(inputs)}")
        return encode(inputs, *args, **kwargs)

    return counted


encoder._load_probed = _load_probed_counting
