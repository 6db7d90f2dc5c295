"""Settings for the image search application.

Everything a deployment changes comes from the environment (see docs/configuration.md and .env.example).
The defaults serve a single machine: SQLite database, an embedded SQLite Celery broker, and the
media files and index generations under one data directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def envint(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, not {number}")
    return number


def envfloat(name: str, default: float, *, minimum: float, maximum: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, not {number}")
    return number


def envstr(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


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

# --- Request limits ----------------------------------------------------------------------------

# The client's address: from this request header when a trusted reverse proxy sets it (e.g.
# X-Forwarded-For, whose last entry is the address the proxy saw, or X-Real-IP), else the
# socket's. Set it only behind such a proxy: otherwise any client could claim any address.
IMAGESEARCH_CLIENT_IP_HEADER = envstr("IMAGESEARCH_CLIENT_IP_HEADER", "")

IMAGESEARCH_MAX_UPLOAD_BYTES = envint("IMAGESEARCH_MAX_UPLOAD_BYTES", 30 * 1024 * 1024, minimum=1)
IMAGESEARCH_MAX_UPLOAD_FILES = envint("IMAGESEARCH_MAX_UPLOAD_FILES", 500, minimum=1)
# The staff upload paths (the admin's upload page, POST /api/images) for staff only; every other
# request body (search by image, /knn-service, sign-in) is held to the public limit. Both are
# checked on Content-Length before anything reads the body (imagesearch.middleware).
IMAGESEARCH_MAX_REQUEST_BYTES = envint("IMAGESEARCH_MAX_REQUEST_BYTES", 512 * 1024 * 1024, minimum=1024)
IMAGESEARCH_MAX_PUBLIC_REQUEST_BYTES = envint(
    "IMAGESEARCH_MAX_PUBLIC_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024
)
IMAGESEARCH_MAX_IMAGE_PIXELS = envint("IMAGESEARCH_MAX_IMAGE_PIXELS", 80_000_000, minimum=1)
IMAGESEARCH_MAX_FRAMES = envint("IMAGESEARCH_MAX_FRAMES", 1000, minimum=1)
# Query images (anyone may send them where search is public) are bounded far below the staff
# limits: the model reads 224 x 224 pixels (gallery.validation.query_image_decode).
IMAGESEARCH_MAX_QUERY_IMAGE_BYTES = envint("IMAGESEARCH_MAX_QUERY_IMAGE_BYTES", 8 * 1024 * 1024, minimum=1)
IMAGESEARCH_MAX_QUERY_IMAGE_PIXELS = envint("IMAGESEARCH_MAX_QUERY_IMAGE_PIXELS", 16_000_000, minimum=1)
# Django refuses more form fields / files than this before a view runs (a 400, not a crash).
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = IMAGESEARCH_MAX_UPLOAD_FILES + 1  # the files plus an optional zip
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # non-file fields only
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o644

# Model work at once per web process (query encodes and query-image decodes, search.query.slots); 0:
# the cores divided among the web processes. A query that finds none free within the wait
# (seconds) is refused at once: a 503 with Retry-After.
IMAGESEARCH_MODEL_SLOTS = envint("IMAGESEARCH_MODEL_SLOTS", 0, minimum=0, maximum=256)
IMAGESEARCH_MODEL_SLOT_WAIT = envfloat("IMAGESEARCH_MODEL_SLOT_WAIT", 5.0, minimum=0.0, maximum=60.0)

# --- Sign-in lockout (django-axes) -------------------------------------------------------------

# After this many failed sign-ins from one address, that address may not sign in for the
# cool-off (minutes); a successful sign-in resets the count.
AXES_FAILURE_LIMIT = envint("IMAGESEARCH_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = envint("IMAGESEARCH_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["ip_address"]  # never by username alone: anyone could lock staff out
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "search.query.throttle.axes_client_ip"
AXES_VERBOSE = False

# --- Per-client rate limits (django-ratelimit; search.query.throttle) ----------------------------------

# "N/s", "N/m", "N/h" or "N/d" per client: an address for anonymous callers, an account for
# signed-in users and API tokens; "off" for none. Staff and token callers have their own limits.
IMAGESEARCH_RATE_LIMIT_TEXT = envstr("IMAGESEARCH_RATE_LIMIT_TEXT", "60/m")
IMAGESEARCH_RATE_LIMIT_IMAGE = envstr("IMAGESEARCH_RATE_LIMIT_IMAGE", "20/m")
IMAGESEARCH_RATE_LIMIT_KNN = envstr("IMAGESEARCH_RATE_LIMIT_KNN", "60/m")
IMAGESEARCH_RATE_LIMIT_STAFF_TEXT = envstr("IMAGESEARCH_RATE_LIMIT_STAFF_TEXT", "600/m")
IMAGESEARCH_RATE_LIMIT_STAFF_IMAGE = envstr("IMAGESEARCH_RATE_LIMIT_STAFF_IMAGE", "200/m")
IMAGESEARCH_RATE_LIMIT_STAFF_KNN = envstr("IMAGESEARCH_RATE_LIMIT_STAFF_KNN", "600/m")
for _name in [n for n in list(globals()) if n.startswith("IMAGESEARCH_RATE_LIMIT_")]:
    if globals()[_name] != "off" and not re.fullmatch(r"[1-9][0-9]*/[1-9]?[0-9]*[smhd]", globals()[_name]):
        raise ImproperlyConfigured(f"{_name} must look like 60/m (or 10/s, 500/h, 1000/d, off)")
RATELIMIT_USE_CACHE = "ratelimit"
RATELIMIT_ENABLE = True  # the tests turn it off where they do not test it
# A cache that cannot answer (Redis down) must not close search: the model slots still bound work.
RATELIMIT_FAIL_OPEN = True
# Without Redis the counters are in a file cache whose add and incr hold a file lock
# (imagesearch.cache), shared by the web processes of one machine: django-ratelimit knows
# neither it (W001) nor Django's own RedisCache, whose INCR is atomic.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

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
    "loggers": {"django": {"level": "INFO"}, "PIL": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
