"""Settings: what one request may cost (body, upload and query-image sizes, model slots), the
sign-in lockout and the per-client rate limits. Part of imagesearch.settings, which imports
every name of it (DJANGO_SETTINGS_MODULE stays imagesearch.settings)."""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from .env import envfloat, envint, envstr

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
