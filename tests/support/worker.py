"""``celery -A imagesearch worker ...`` with some of the product's named constants changed first.

A test that must see lost work come back within seconds shortens a timing that no deployment
setting exposes (the sweep's interval, a claim's timeout, the pending timeout). Run as
``python -m tests.support.worker CONSTANTS celery-arguments...``, where CONSTANTS is a JSON object
of ``"module:NAME": value``. The constants are set after Django's set-up and before the worker
starts, so the pool's forked processes inherit them.
"""

from __future__ import annotations

import importlib
import json
import sys


def main() -> None:
    constants = json.loads(sys.argv[1])
    import django
    from django.conf import settings

    django.setup()
    for target, value in constants.items():
        module_name, name = target.split(":")
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            raise SystemExit(f"{module_name} has no constant {name}")
        setattr(module, name, value)
        if module_name == "imagesearch.settings":
            setattr(settings, name, value)
    # Beat's schedule was built from SWEEP_INTERVAL when the settings loaded: it follows a new one.
    settings.CELERY_BEAT_SCHEDULE["sweep"]["schedule"] = float(settings.SWEEP_INTERVAL)
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *sys.argv[2:]]
    celery_main()


if __name__ == "__main__":
    main()
