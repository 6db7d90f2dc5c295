"""Build a seeded, randomly initialised multilingual text encoder in the sentence-transformers
layout, made like ``sentence-transformers/clip-ViT-B-32-multilingual-v1``: a DistilBERT (the
BERT family) whose token vectors are mean-pooled, then projected by a ``Dense`` layer (no bias,
no activation) into the image space of a CLIP. The tests load it through the production path
(``IMAGESEARCH_TEXT_MODEL`` -> ``search.encoder``), beside the tiny CLIP of
``tests/support/clip_model.py``, whose dimension the projection matches by default.

Its WordPiece vocabulary holds every letter of the scripts the tests type (Latin with accents,
Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, kana, Hangul, the CJK ideographs, emoji), as
single tokens and as word continuations, so a word in any of them is its own sequence of tokens
rather than ``[UNK]``: two labels in one script get two different vectors. Texts are cut at
:data:`MAX_TEXT_TOKENS` tokens, as the published model cuts them.

Layout (that of the published model)::

    PATH/modules.json                  Transformer (root), 1_Pooling, 2_Dense
    PATH/sentence_bert_config.json     max_seq_length
    PATH/config.json, model.safetensors, tokenizer files
    PATH/1_Pooling/config.json         mean pooling
    PATH/2_Dense/config.json, model.safetensors
    PATH/text_model_build.json         marker: format version, seed, dimensions

Command line::

    python -m tests.support.text_model PATH [--dim 64] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import string
import sys
import threading
from pathlib import Path
from typing import Any, Final

from tests.support.model_dirs import build_model_dir

#: Bump whenever the generated files change: it invalidates every cached build.
FORMAT_VERSION: Final = 1
MARKER_FILE: Final = "text_model_build.json"
#: The published multilingual model reads 128 tokens (its tokenizer cuts the rest).
MAX_TEXT_TOKENS: Final = 128
HIDDEN_SIZE: Final = 32
DENSE_DIR: Final = "2_Dense"

_SPECIAL: Final = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Letters of scripts that separate words by spaces: each gets a token and a "##" continuation.
_WORD_SCRIPT_RANGES: Final = [
    (0x00C0, 0x024F),  # Latin-1 letters, Latin Extended-A/B (é, ñ, ß, ő, ...)
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x04FF),  # Cyrillic
    (0x0590, 0x05FF),  # Hebrew
    (0x0600, 0x06FF),  # Arabic
    (0x0900, 0x097F),  # Devanagari
    (0x0E00, 0x0E7F),  # Thai
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0xAC00, 0xD7A3),  # Hangul syllables
    (0x1F300, 0x1FAFF),  # emoji
    (0x2600, 0x27BF),  # symbols and dingbats (☀, ✈)
    (0x200C, 0x200D),  # the zero-width (non-)joiner inside Persian words and emoji sequences
    (0xFE0F, 0xFE0F),  # the emoji presentation selector
]
# CJK ideographs: BERT's tokenizer splits them one per token, so no continuations are needed.
_CJK_RANGE: Final = (0x4E00, 0x9FFF)

_INIT_LOCK: Final = threading.Lock()


def vocabulary() -> list[str]:
    """The WordPiece vocabulary, in id order."""
    letters = [*string.ascii_letters, *string.digits]
    letters += [
        chr(c)
        for lo, hi in _WORD_SCRIPT_RANGES
        for c in range(lo, hi + 1)
        if chr(c).isprintable() or c in (0x200C, 0x200D)
    ]
    tokens = [*_SPECIAL, *string.punctuation, *letters, *(f"##{ch}" for ch in letters)]
    tokens += [chr(c) for c in range(_CJK_RANGE[0], _CJK_RANGE[1] + 1)]
    return list(dict.fromkeys(tokens))


def build_text_model(path: Path, *, dim: int = 64, seed: int = 0) -> Path:
    """Build (or reuse) the model in ``path``: a complete build with the same marker is returned
    untouched, another build of ours is replaced, any other non-empty directory is refused
    (FileExistsError). ``dim``: the dimension of its vectors (the CLIP's it is paired with)."""
    marker = {"format_version": FORMAT_VERSION, "seed": seed, "dim": dim, "hidden": HIDDEN_SIZE}
    return build_model_dir(path, marker, MARKER_FILE, lambda root: _write_model(root, dim, seed))


def _write_model(root: Path, dim: int, seed: int) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    vocab = vocabulary()
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
    # Cased and accents kept, as the published multilingual DistilBERT's tokenizer.
    tokenizer = BertTokenizerFast(
        str(vocab_file),  # positional: transformers 5 ignores the vocab_file= keyword
        do_lower_case=False,
        strip_accents=False,
        tokenize_chinese_chars=True,
        model_max_length=MAX_TEXT_TOKENS,
    )
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, expected {len(vocab)}")
    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=HIDDEN_SIZE,
        hidden_dim=2 * HIDDEN_SIZE,
        n_layers=2,
        n_heads=2,
        max_position_embeddings=512,
        pad_token_id=vocab.index("[PAD]"),
    )
    # Seeded in a forked RNG state (the caller's is untouched), under a lock (threads).
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = DistilBertModel(config).eval()
        projection = torch.nn.Linear(HIDDEN_SIZE, dim, bias=False)
    transformer.save_pretrained(root, safe_serialization=True)
    tokenizer.save_pretrained(root)
    _write_json(
        root / "sentence_bert_config.json", {"max_seq_length": MAX_TEXT_TOKENS, "do_lower_case": False}
    )

    pooling = root / "1_Pooling"
    pooling.mkdir()
    _write_json(
        pooling / "config.json",
        {
            "word_embedding_dimension": HIDDEN_SIZE,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    dense = root / DENSE_DIR
    dense.mkdir()
    _write_json(
        dense / "config.json",
        {
            "in_features": HIDDEN_SIZE,
            "out_features": dim,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
        },
    )
    save_file({"linear.weight": projection.weight.detach().contiguous()}, str(dense / "model.safetensors"))

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": DENSE_DIR, "type": "sentence_transformers.models.Dense"},
    ]
    _write_json(root / "modules.json", modules)
    # Readable by other accounts, as a copied model would be (mkdtemp makes 0700).
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--dim", type=int, default=64, help="dimension of the vectors (the CLIP's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_text_model(args.path, dim=args.dim, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
