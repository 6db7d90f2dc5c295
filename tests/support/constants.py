"""Values that several tests (and the benchmarks) share."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_URL = "/admin/gallery/image/upload/"
# A worker as ./run starts it: one prefork pool process, which a test can kill on its own.
PREFORK_ONE = ("--pool", "prefork", "--concurrency", "1")
# A real worker embeds and indexes a few images in seconds; the bound allows for a loaded
# two-core machine and coalesced rebuilds, and only a failing test waits it out.
INDEXED_TIMEOUT = 150.0
