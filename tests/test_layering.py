"""The layering contracts of pyproject.toml ([tool.importlinter]) catch the breaks they exist for.

``./test`` runs ``lint-imports`` over the real tree. These tests prove that the contracts would fail
it: each copies the contracts into a stand-in tree that has the real tree's modules (empty, with
only the imports the contracts name as allowed), adds one import that breaks a rule, and expects
``lint-imports`` to name the broken contract. The unbroken stand-in passes, so a failure below is
the contract's doing, not the stand-in's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _module_path(tree: Path, module: str) -> Path:
    path = tree.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _stand_in_tree(tree: Path) -> None:
    """The real packages' modules, empty, plus the imports that contracts allow by name."""
    config = _config()
    for package in config["root_packages"]:
        for source in (ROOT / package).rglob("*.py"):
            target = tree / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    for contract in config["contracts"]:
        for allowed in contract.get("ignore_imports", []):
            importer, imported = (part.strip() for part in allowed.split("->"))
            with _module_path(tree, importer).open("a") as fh:
                fh.write(f"import {imported}\n")
    (tree / "pyproject.toml").write_text(
        re.search(r"^\[tool\.importlinter\].*", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(0)
    )


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _contract_name(contract_id: str) -> str:
    return next(c["name"] for c in _config()["contracts"] if c["id"] == contract_id)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"lint-imports is not installed beside {sys.executable} (requirements-dev.txt)")
    _stand_in_tree(tmp_path)
    return tmp_path


def test_the_stand_in_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_config()['contracts'])} kept, 0 broken." in result.stdout


# (contract id, [(module, lines added to it), ...]): each entry breaks that contract.
BREAKS = [
    ("layers", [("gallery.views", "from search.query import ranking\n")]),
    ("layers", [("search.query.ranking", "from api import endpoints\n")]),
    ("dispatch", [("search.dispatch", "from search import tasks\n")]),
    # The cycle services and tasks had: tasks imports the pipeline, which imports tasks back
    # inside a function.
    (
        "acyclic",
        [
            ("search.tasks", "from search.ingest import pipeline\n"),
            ("search.ingest.pipeline", "def later():\n    from search import tasks\n"),
        ],
    ),
    ("store-selection", [("search.ingest.pipeline", "from search.stores import faiss_store\n")]),
    ("stores-apart", [("search.stores.pgvector_store", "from search.stores import faiss_store\n")]),
    ("query-store-internals", [("search.query.ranking", "from search.stores.faiss import reader\n")]),
    ("heavy", [("gallery.models", "import torch\n")]),
    ("heavy", [("imagesearch.settings", "def later():\n    import faiss\n")]),
    ("heavy", [("search.query.ranking", "import sentence_transformers\n")]),
    # The ONNX path reaching torch directly, or through the torch runtime or the exporter.
    (
        "onnx-without-torch",
        [("search.encoder.onnx_runtime", "def later():\n    from . import torch_runtime\n")],
    ),
    ("onnx-without-torch", [("search.encoder.preprocessing", "from search.encoder import torch_runtime\n")]),
    (
        "onnx-without-torch",
        [("search.encoder.cache", "def later():\n    from search.encoder import export\n")],
    ),
    ("onnx-without-torch", [("search.encoder.int8", "from search.encoder.export import export_model\n")]),
]


@pytest.mark.parametrize(("contract_id", "additions"), BREAKS, ids=[f"{b[0]}-{b[1][-1][0]}" for b in BREAKS])
def test_an_import_that_breaks_the_layering_fails_its_contract(
    tree: Path, contract_id: str, additions: list[tuple[str, str]]
) -> None:
    for module, lines in additions:
        with _module_path(tree, module).open("a") as fh:
            fh.write(lines)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    broken = " ".join(result.stdout.split("Broken contracts", 1)[-1].split())  # unwrapped
    assert _contract_name(contract_id) in broken, result.stdout
    assert f"Contracts: {len(_config()['contracts']) - 1} kept, 1 broken." in result.stdout


def test_the_real_tree_keeps_every_contract() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
