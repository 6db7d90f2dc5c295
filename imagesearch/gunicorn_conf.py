"""gunicorn settings used by ./run: load the model and map the index once, in the master, before
the workers are forked, so that every worker shares those pages copy-on-write instead of holding
its own fp32 copy of CLIP (hundreds of MiB each: BENCHMARKS.md, memory per added web process).

Threads and fork: the master loads the model with one thread (ONNX Runtime sessions of one
intra-op thread start no pool; torch encodes its warm-up text with one thread), so no thread pool
exists when it forks (a pool inherited across fork can hang the child). A torch worker then
sets its own thread count; an ONNX Runtime session keeps the one thread each web process runs.

Exit: a worker ends with ``os._exit`` once gunicorn has finished with it (``worker_exit``), never
through the interpreter's exit. ``import onnxruntime`` starts a native thread in the master, which
a forked worker does not have but whose condition variable it inherits with that thread waiting on
it; ONNX Runtime's C++ destructors, run by ``exit()``, destroy that variable (waiting forever for
the absent waiter) or join the absent thread (``std::system_error``, SIGABRT). Either way the
worker never ended by itself, and ``./run`` killed it after 10 s. A worker told to quit (SIGINT,
SIGQUIT) ignores any further quit signal (``worker_int``): a Ctrl-C reaching the master and the
workers together makes the master send its own SIGQUIT a moment later, and that second
``sys.exit`` raised inside gunicorn's exit path would skip ``worker_exit``.
"""

import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

# The application (Django, the model, the index) is imported in the master, then forked.
preload_app = True


def _control_socket() -> str | None:
    """This instance's control socket (``gunicornc -s <path>``): in its data directory. gunicorn's
    default is one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl), which a second
    instance on the machine (another data directory, the tests' servers) takes over from the
    first. None where the path is longer than a Unix socket's address holds (107 bytes)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    from django.conf import settings

    path = str(Path(settings.DATA_DIR) / "gunicorn.ctl")
    return path if len(os.fsencode(path)) <= 107 else None


control_socket = _control_socket() or ""
control_socket_disable = not control_socket
# gunicorn's threaded worker (./run's --threads), which parks a rate-limited client's connection.
worker_class = "imagesearch.gunicorn_worker.ParkingThreadWorker"


def when_ready(server) -> None:
    """In the master, after the application is loaded and before the workers are forked."""
    from django.conf import settings
    from django.db import connections

    from search import encoder
    from search.stores.selection import vector_store

    def index_load() -> None:
        try:
            vector_store().warm()  # FAISS: verified once, mapped here, shared by the workers
        except Exception as exc:  # noqa: BLE001 - no index yet, or a damaged one: workers report it
            server.log.warning("the index could not be loaded before forking: %s", exc)
        try:
            first_request_warm()
        except Exception as exc:  # noqa: BLE001 - each worker's first page does it itself
            server.log.warning("the search page could not be prepared before forking: %s", exc)
        finally:
            connections.close_all()  # this thread's own connections

    # The index is verified (a hash of the whole file: I/O and hashing, outside the GIL), and what
    # the first search page would do itself is done, while torch and the model load, which take
    # most of a restart.
    index_thread = threading.Thread(target=index_load, name="preload-index")
    index_thread.start()
    configured = settings.IMAGESEARCH_TORCH_THREADS
    settings.IMAGESEARCH_TORCH_THREADS = 1
    try:
        encoder.ensure_models()
    except encoder.ModelUnavailable as exc:
        # Each worker tries again on its first search and the page says why.
        server.log.warning("the model could not be loaded before forking: %s", exc)
    finally:
        settings.IMAGESEARCH_TORCH_THREADS = configured
    index_thread.join()
    connections.close_all()  # no database connection may be shared by the workers
    # Everything loaded so far lives as long as the process: keep the collector away from it, or
    # its first full pass in each worker touches every object and copies the pages holding them.
    gc.collect()
    gc.freeze()


def first_request_warm() -> None:
    """What each worker's first search page would otherwise wait for, done once in the master
    (the workers inherit it): the library's label counts (a read of the whole library, which the
    workers reuse: search.query.label_counts), the URL configuration (which imports every view
    and the API's schemas) and the project's templates, compiled."""
    from django.conf import settings
    from django.template.loader import get_template
    from django.urls import get_resolver

    from search.query import label_counts

    label_counts.popular_labels_count()
    get_resolver().url_patterns  # noqa: B018 - imports the URL configuration's modules
    for directory in settings.TEMPLATES[0]["DIRS"]:
        for path in sorted(Path(directory).rglob("*.html")):
            get_template(path.relative_to(directory).as_posix())


def post_fork(server, worker) -> None:
    from search.query import slots

    slots.set_web_processes(server.cfg.workers)  # the cores are shared among them
    if "torch" in sys.modules:  # loaded in the master with one thread: this worker's own count
        from search import encoder

        sys.modules["torch"].set_num_threads(encoder.threads())


def on_starting(server) -> None:
    """Refuse to start (the master exits with the reason) when the configured vector store cannot
    be served by this database: gunicorn does not run Django's system checks."""
    import django

    django.setup()
    from search.stores import checks

    checks.refuse_unless_usable()


def post_worker_init(worker) -> None:
    # Without a preloaded model (it failed in the master), load it before the first search.
    def warm() -> None:
        from search import encoder

        try:
            encoder.ensure_models()  # the image model, and the text model of word queries
        except Exception:  # noqa: BLE001 - the search page reports an unavailable model itself
            worker.log.warning("the model could not be loaded; search will say so")

    threading.Thread(target=warm, name="warm-model", daemon=True).start()


def worker_int(worker) -> None:
    """In the worker, on its first quit signal (it leaves at once, through ``worker_exit``)."""
    _ignore_quit_signals()


def _ignore_quit_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)


def worker_exit(server, worker) -> None:
    """In the worker, last, once it has answered its connections and gunicorn has logged its exit:
    end the process with the status it was leaving with, without the interpreter's exit (the
    native destructors of libraries it inherited from the master hang or abort: module docstring).
    What the interpreter's exit would still do that matters is done here: the database
    connections closed, the logs and the standard streams flushed."""
    _ignore_quit_signals()  # leaving already: a quit signal now would only interrupt this
    leaving = sys.exc_info()[1]  # the SystemExit that gunicorn's worker process ends with
    code = leaving.code if isinstance(leaving, SystemExit) else (1 if leaving else 0)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    try:
        from django.db import connections

        connections.close_all()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or gone: nothing left to lose
                pass
        os._exit(code)
