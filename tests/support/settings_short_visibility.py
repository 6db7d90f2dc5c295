"""Settings of a test worker whose Redis visibility timeout is 2 s instead of an hour, with
unacknowledged messages checked every second: a task that runs a few seconds outlives it, and
Redis hands the same message to another pool process while the first run goes on."""

from imagesearch.settings import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "visibility_timeout": 2,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
