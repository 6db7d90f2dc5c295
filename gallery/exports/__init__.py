"""The whole library as a folder or a zip archive (``export_images``), and such an export read back
(``import_images``): every stored image file, byte for byte, and a manifest of labels, checksums,
upload times, uploaders and, optionally, image vectors.

``manifest`` holds the format and its parser, ``writing`` the export, ``reading`` the validation
of an export and its turning into uploads. The names below are the public surface.
"""

from __future__ import annotations

from .manifest import MANIFEST_NAME, ExportEntry, InvalidExport, export_path_problem
from .reading import LibraryExport, VectorCounts, export_detect, export_open, export_uploads
from .writing import ExportRefused, ExportReport, export_target_check, library_export

__all__ = [
    "MANIFEST_NAME",
    "ExportEntry",
    "ExportRefused",
    "ExportReport",
    "InvalidExport",
    "LibraryExport",
    "VectorCounts",
    "export_detect",
    "export_open",
    "export_path_problem",
    "export_target_check",
    "export_uploads",
    "library_export",
]
