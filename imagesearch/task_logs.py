"""The worker's log without the periodic sweep's "nothing to do".

Beat sends the sweep every ``SWEEP_INTERVAL`` (15 s) and Celery logs three lines for each run
(sent, received, succeeded): some 700 lines an hour of a sweep that found nothing, among which
the lines of the uploads being embedded are hard to find. A periodic sweep is logged here when
it did something (a count in its result that is not 0), and like any task when it fails; the
sweep a worker sends itself when it starts (``at_start``) is always logged, once per start (the
tests wait for its line); with ``--loglevel DEBUG`` every run is logged, as Celery logs it.
"""

from __future__ import annotations

import ast
import logging

#: Periodic tasks whose runs are logged only when they did something.
QUIET_WHEN_IDLE = frozenset({"search.tasks.sweep"})

#: The loggers of the three lines: beat sending the task, the worker receiving it, its success.
_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


def _literal(text: object) -> object:
    """The value of a repr Celery logged (a result, the keyword arguments); None if unreadable."""
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _did_something(return_value: object) -> bool:
    """Whether a sweep's result (Celery logs its repr) counts anything; True where it cannot tell."""
    counts = _literal(return_value)
    if not isinstance(counts, dict):
        return True
    return any(value for value in counts.values())


def _at_start(kwargs: object) -> bool:
    """Whether the run is the one a worker sends itself when it starts."""
    found = _literal(kwargs)
    return isinstance(found, dict) and bool(found.get("at_start"))


class IdleSweepFilter(logging.Filter):
    """Drops the records of a quiet task's run that did nothing (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        args = record.args
        if record.name == "celery.beat":
            # 'Scheduler: Sending due task %s (%s)', entry.name, entry.task
            return not (isinstance(args, tuple) and len(args) == 2 and args[1] in QUIET_WHEN_IDLE)
        if isinstance(args, dict) and args.get("name") in QUIET_WHEN_IDLE and record.levelno == logging.INFO:
            if _at_start(args.get("kwargs")):
                return True
            if "return_value" in args:  # "Task ... succeeded in ...s: <result>"
                return _did_something(args["return_value"])
            return "exc" in args  # "received" is dropped; a failure's line is a warning or an error
        return True


def install() -> None:
    """Put the filter on the loggers of those lines (once per process)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, IdleSweepFilter) for f in logger.filters):
            logger.addFilter(IdleSweepFilter())
