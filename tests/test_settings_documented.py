"""Every environment variable the code reads is documented in docs/configuration.md and .env.example."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    "imagesearch/settings.py",
    "imagesearch/settings_limits.py",
    "run",
    "search/encoder/__init__.py",
    "search/encoder/torch_runtime.py",
]


def _read_variables() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        text = (ROOT / source).read_text()
        names |= set(re.findall(r'env(?:bool|int|float|str)?\(\s*"([A-Z_]+)"', text))
        names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', text))
        names |= set(re.findall(r"\$\{([A-Z][A-Z_]+):-", text))
    return names - {"PYTHON", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}


def test_every_setting_read_from_the_environment_is_documented():
    names = _read_variables()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "IMAGESEARCH_CLIP_MODEL", "DJANGO_SECRET_KEY"} <= names
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    example = (ROOT / ".env.example").read_text()
    assert sorted(n for n in names if f"`{n}`" not in configuration) == []
    assert sorted(n for n in names if n not in example) == []
