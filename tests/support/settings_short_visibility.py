"""Settings of a test worker whose Redis visibility timeout is 2 s instead of an hour, with
unacknowledged messages checked every second: a task that runs a few seconds outlives it, and
Redis hands the same message to another pool process while the first run goes on.

The test keeps that first run going by holding its rows (tests.support.workers.rows_held). On
SQLite the held run waits for them up to the busy timeout, 30 s in the product: on a loaded
machine the redelivery and the copy's back-off could take longer, the held run then failed with
"database is locked", and nothing re-ran its images. Here it waits HELD_ROWS_WAIT, which the test
keeps its hold within (PostgreSQL waits for row locks without a limit).
"""

from imagesearch.settings import *  # noqa: F403

VISIBILITY_TIMEOUT = 2  # seconds
UNACKED_RESTORE_INTERVAL = 1  # seconds
HELD_ROWS_WAIT = 120  # seconds

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "unacked_restore_interval": UNACKED_RESTORE_INTERVAL,
    "unacked_restore_throttle": UNACKED_RESTORE_INTERVAL,
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # Copies, not changes: a test process imports this module for its constants, and shares the
    # product settings' dictionaries.
    DATABASES = {  # noqa: F405
        **DATABASES,  # noqa: F405
        "default": {
            **DATABASES["default"],  # noqa: F405
            "OPTIONS": {**DATABASES["default"]["OPTIONS"], "timeout": HELD_ROWS_WAIT},  # noqa: F405
        },
    }
