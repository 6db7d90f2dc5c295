"""Settings for the image search application.

Everything a deployment changes comes from the environment (see docs/configuration.md and .env.example).
The defaults serve a single machine: SQLite database, an embedded SQLite Celery broker, and the
media files and index generations under one data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from .env import envbool, envfloat, envint, envstr

# Request limits, the sign-in lockout and the per-client rate limits.
from .settings_limits import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core ------------------------------------------------------------------------------------

DEBUG = envbool("DJANGO_DEBUG", False)

# A relative directory is taken from the repository root, where ./run runs its processes, so that
# manage.py run by hand from any directory uses the same one.
DATA_DIR = (BASE_DIR / envstr("IMAGESEARCH_DATA_DIR", "data")).resolve()

# ./run keeps this installation's key in the data directory; reading it here means that manage.py
# run by hand (createsuperuser, import_images, ...) agrees with the processes ./run starts.
SECRET_KEY_FILE = DATA_DIR / "secret_key"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY and SECRET_KEY_FILE.is_file():
    SECRET_KEY = SECRET_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off, or kept in "
            f"{SECRET_KEY_FILE} (./run generates one there for you)."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = [
    h.strip() for h in envstr("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

# Several machines point this at one shared volume (docs/operations.md, "Several machines").
MEDIA_ROOT = Path(envstr("IMAGESEARCH_MEDIA_DIR", str(DATA_DIR / "media"))).resolve()
MEDIA_URL = "/media/"
INDEX_DIR = DATA_DIR / "index"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Index expressions with operator classes (the pgvector store's HNSW index); inert elsewhere.
    "django.contrib.postgres",
    "csp",  # its system checks catch settings left in django-csp's old format
    "ninja",  # serves the API docs page's scripts from static files, not a CDN
    "axes",  # locks out an address after repeated failed sign-ins (the admin's login)
    "django_ratelimit",  # its system checks: the rate-limit cache must be a usable one
    "gallery",
    "search",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # before the size limit, so that its refusals carry it too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication (the staff upload paths' larger limit is for staff only) and before
    # any view or CsrfViewMiddleware.process_view, which reads the body (request.POST).
    "imagesearch.middleware.RequestSizeLimitMiddleware",
    "imagesearch.middleware.RateLimitMiddleware",  # per client, before any work of the view
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out sign-in
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out address before any check
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "imagesearch.urls"
WSGI_APPLICATION = "imagesearch.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "gallery.context_processors.image_formats",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker) share the file: wait for locks instead of failing at once,
    # and use WAL so that readers never block the writer. Connections are kept, as on
    # PostgreSQL: opening one (the pragmas, Django's SQL functions) is a large share of a request.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The Celery worker in the integration tests is another process: it needs a file, not memory.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Compressed copies, no manifest: pages render even before collectstatic has run.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True  # serve from static/ even before collectstatic has run

# Three caches, apart so that one cannot evict another: "default" (upload batches, which staff
# follow for up to a day), "query_vectors" (the vectors of query images, for paging: anyone fills
# it) and "ratelimit" (the per-client counters, search.query.throttle). A file cache is shared by the web
# processes of one machine; several machines share a Redis (IMAGESEARCH_CACHE_URL=redis://...),
# each alias under its own key prefix.
IMAGESEARCH_CACHE_URL = envstr("IMAGESEARCH_CACHE_URL", "")
_CACHE_ENTRIES = {"default": 5000, "query_vectors": 5000, "ratelimit": 20000}
if IMAGESEARCH_CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": IMAGESEARCH_CACHE_URL,
            "TIMEOUT": 3600,
            "KEY_PREFIX": "" if alias == "default" else alias,
        }
        for alias in _CACHE_ENTRIES
    }
elif IMAGESEARCH_CACHE_URL:
    raise ImproperlyConfigured(
        f"IMAGESEARCH_CACHE_URL must be a redis:// address (or unset), not {IMAGESEARCH_CACHE_URL!r}"
    )
else:
    CACHES = {
        alias: {
            # The rate-limit counters need an atomic increment across processes (imagesearch.cache).
            "BACKEND": "imagesearch.cache.LockedFileBasedCache"
            if alias == "ratelimit"
            else "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache" if alias == "default" else DATA_DIR / f"cache-{alias}"),
            "TIMEOUT": 3600,
            "OPTIONS": {"MAX_ENTRIES": entries},
        }
        for alias, entries in _CACHE_ENTRIES.items()
    }

LOGIN_URL = "admin:login"
# Messages stay on the server (the session), never in a cookie: a new API token is shown once in
# one, and a signed cookie is readable by anyone who holds it.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Search and embedding ---------------------------------------------------------------------

IMAGESEARCH_CLIP_MODEL = envstr("IMAGESEARCH_CLIP_MODEL", "clip-ViT-B-32")
# The model of label texts and text queries (e.g. a multilingual encoder trained into the CLIP's
# image space). Empty: the image model, whatever IMAGESEARCH_CLIP_MODEL is (search.encoder).
IMAGESEARCH_TEXT_MODEL = envstr("IMAGESEARCH_TEXT_MODEL", "")
IMAGESEARCH_IMAGE_WEIGHT = envfloat("IMAGESEARCH_IMAGE_WEIGHT", 0.5, minimum=0.0, maximum=1.0)
IMAGESEARCH_PUBLIC_SEARCH = envbool("IMAGESEARCH_PUBLIC_SEARCH", True)
# The runtime of both models (search.encoder): "onnx" (ONNX Runtime over a graph exported once
# from the configured model; web processes never import torch) or "torch" (sentence-transformers).
IMAGESEARCH_ENCODER = envstr("IMAGESEARCH_ENCODER", "onnx").lower()
if IMAGESEARCH_ENCODER not in ("onnx", "torch"):
    raise ImproperlyConfigured(f"IMAGESEARCH_ENCODER must be onnx or torch, not {IMAGESEARCH_ENCODER!r}")
# int8 weights for the ONNX runtime, used only once a worker has measured that they keep the
# top 10 of fp32 on this library (search.encoder.int8).
IMAGESEARCH_ENCODER_INT8 = envbool("IMAGESEARCH_ENCODER_INT8", False)
# "auto": CUDA where the installed torch sees a GPU, else the CPU (torch runtime and ONNX export).
IMAGESEARCH_TORCH_DEVICE = envstr("IMAGESEARCH_TORCH_DEVICE", "auto")
# Threads of the model in each process, either runtime. 0 means "the cores divided by the
# worker processes" (search.encoder.threads).
IMAGESEARCH_TORCH_THREADS = envint("IMAGESEARCH_TORCH_THREADS", 0, minimum=0)
IMAGESEARCH_EMBED_BATCH_SIZE = envint("IMAGESEARCH_EMBED_BATCH_SIZE", 16, minimum=1, maximum=512)
# Seconds between periodic sweeps (search.ingest.rebuild.index_sweep, Celery beat). The sweep is a
# few indexed queries: often enough that lost work comes back within a minute.
SWEEP_INTERVAL = 15.0
# "auto" (the default): the exact flat index up to search.stores.faiss.AUTO_FLAT_MAX_VECTORS
# vectors, an IVF index tuned for recall@10 >= 0.95 above. "flat", "ivf": that kind whatever the
# size. HNSW is not offered: auto never picks it, and IVF beats it on text-like queries
# (BENCHMARKS.md); the benchmarks still build it.
IMAGESEARCH_INDEX_KIND = envstr("IMAGESEARCH_INDEX_KIND", "auto").lower()
if IMAGESEARCH_INDEX_KIND not in ("auto", "flat", "ivf"):
    raise ImproperlyConfigured(
        f"IMAGESEARCH_INDEX_KIND must be auto, flat or ivf, not {IMAGESEARCH_INDEX_KIND!r}"
    )
# Two images are near-duplicates at or above this cosine of their image vectors (search.duplicates.scan;
# the default and what it rests on: BENCHMARKS.md, "Near-duplicates").
IMAGESEARCH_DUPLICATE_THRESHOLD = envfloat("IMAGESEARCH_DUPLICATE_THRESHOLD", 0.95, minimum=0.5, maximum=1.0)

# "faiss": index generations in the data directory (one machine). "pgvector": the vectors live in
# PostgreSQL beside the rows (search.stores.pgvector), so web and worker machines share one database.
IMAGESEARCH_VECTOR_BACKEND = envstr("IMAGESEARCH_VECTOR_BACKEND", "faiss").lower()
if IMAGESEARCH_VECTOR_BACKEND not in ("faiss", "pgvector"):
    raise ImproperlyConfigured(
        f"IMAGESEARCH_VECTOR_BACKEND must be faiss or pgvector, not {IMAGESEARCH_VECTOR_BACKEND!r}"
    )
# pgvector's HNSW search breadth (hnsw.ef_search, at most 1000): recall against speed; the default
# is what text-like queries need (BENCHMARKS.md, pgvector).
IMAGESEARCH_PGVECTOR_EF_SEARCH = envint("IMAGESEARCH_PGVECTOR_EF_SEARCH", 400, minimum=1, maximum=1000)
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # pgvector's search settings from the connection's start (placeholders until the extension
    # loads), so that a search needs no extra round trips (search.stores.pgvector.store.nearest).
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = " ".join(
        part
        for part in (
            _options.get("options", ""),
            f"-c hnsw.ef_search={IMAGESEARCH_PGVECTOR_EF_SEARCH} -c hnsw.iterative_scan=strict_order",
        )
        if part
    )

# --- Celery ----------------------------------------------------------------------------------

CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}")
CELERY_TASK_DEFAULT_QUEUE = envstr("CELERY_TASK_DEFAULT_QUEUE", "imagesearch")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# Options of the Redis transport only: kombu hands the SQLAlchemy transport's options to
# create_engine, which refuses them.
REDIS_BROKER_TRANSPORT_OPTIONS = {
    # Redis re-delivers an unacknowledged (acks_late) message after this long: far above the
    # longest task (one batch, or one rebuild), so a slow task is never handed to a second worker.
    # A copy that comes anyway backs off while the first holds the task's lock (search.tasks;
    # tests/search/test_faults_visibility_timeout.py).
    "visibility_timeout": 3600,
    # An enqueue while Redis is down or hung fails in seconds instead of retrying or blocking the
    # request, so an upload still succeeds ("embedding is delayed") and the sweep enqueues later.
    # max_retries is for publishing only (consumers reconnect on their own); socket_timeout stays
    # above kombu's 1 s BRPOP, so an idle worker is never cut off.
    "max_retries": 0,
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
}
CELERY_BROKER_TRANSPORT_OPTIONS = (
    dict(REDIS_BROKER_TRANSPORT_OPTIONS) if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else {}
)
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "search.tasks.sweep", "schedule": SWEEP_INTERVAL},
    # Files a failed delete left behind (gallery.media): a walk of the media storage, so hourly.
    "sweep-media": {"task": "search.tasks.sweep_media", "schedule": 3600.0},
    "backfill-taken-at": {"task": "search.tasks.backfill_taken_at", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Production hardening (DEBUG off) -----------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# Every page (search, image, admin, API docs): scripts, styles and images from this site only, no
# inline script or style. Images may also be blob: (the search box previews a dropped picture)
# and data: (the preview kept for the results page). A response that sets its own policy keeps
# it: stored media send the stricter "default-src 'none'; sandbox" (gallery.views).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if not DEBUG:
    # Off by default: ./run serves plain HTTP on one machine, where secure-only cookies would
    # never come back and a redirect to HTTPS would lead nowhere. Behind HTTPS turn them all on
    # (docs/operations.md, "Behind HTTPS"); then `manage.py check --deploy` reports no issues.
    SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", False)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = envbool("DJANGO_SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = (
        ("HTTP_X_FORWARDED_PROTO", "https") if envbool("DJANGO_BEHIND_PROXY", False) else None
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("IMAGESEARCH_LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"level": "INFO"},
        "PIL": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # faiss's loader logs, at every import, that it "could not load" its per-CPU builds: the
        # wheel's one library chooses its AVX2 / AVX-512 code at run time, so nothing is missing.
        "faiss": {"level": "WARNING"},
    },
}
