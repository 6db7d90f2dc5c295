"""What a label name is: how it is spelled when stored, how long it may be, and how a list of
names typed by a person is cleaned. The models, forms, admin, API schemas and search forms all
take these rules from here."""

from __future__ import annotations

from collections.abc import Iterable

MAX_LABEL_LENGTH = 100  # characters, after normalising; also the column's max_length


class InvalidLabels(ValueError):
    pass


def normalize_label_name(name: str) -> str:
    """Collapse inner whitespace and strip the ends: the stored spelling of a label."""
    return " ".join(str(name).split())


def clean_label_names(names: Iterable[str]) -> list[str]:
    """Normalise, drop empties and case-insensitive repeats, and check lengths."""
    seen: set[str] = set()
    cleaned: list[str] = []
    for raw in names:
        name = normalize_label_name(raw)
        if not name:
            continue
        if len(name) > MAX_LABEL_LENGTH:
            raise InvalidLabels(f"Labels are at most {MAX_LABEL_LENGTH} characters: {name[:30]!r}...")
        if any(ord(ch) < 32 for ch in name):
            raise InvalidLabels("Labels cannot contain control characters.")
        if name.lower() not in seen:
            seen.add(name.lower())
            cleaned.append(name)
    return cleaned


def split_label_text(text: str) -> list[str]:
    """Labels typed in one box, separated by commas."""
    return clean_label_names(text.split(","))
