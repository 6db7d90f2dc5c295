"""Build a seeded, randomly initialised CLIP model in the sentence-transformers layout.

The tests and benchmarks must never download anything, yet they want to exercise the real
code path: ``sentence_transformers.SentenceTransformer(path)`` loading a CLIP model that
encodes both text and images.  :func:`build_clip_model` writes such a model to disk:

* the weights come from the real ``transformers.CLIPModel`` architecture, initialised with
  random (but seeded, hence reproducible) weights;
* the tokenizer is a real ``CLIPTokenizer`` whose byte-level BPE vocabulary and merges are
  learned here, deterministically, from a small built-in corpus;
* the image processor is a real ``CLIPImageProcessor``.

Two sizes are available:

``"tiny"``
    Two-layer text and vision towers, 32x32 images, 64-dimensional embeddings.  Builds in
    about a second in a fresh process (a few hundredths once the BPE vocabulary is cached)
    and encodes in milliseconds on a CPU; meant for unit tests.
``"full"``
    ``transformers.CLIPConfig()`` defaults, i.e. the ViT-B/32 shape of ``clip-ViT-B-32``
    (224x224 images, 512-dimensional embeddings).  Costs what the real model costs to run;
    meant for benchmarks.  Its weights take about 600 MB on disk.

The on-disk layout mirrors the published ``sentence-transformers/clip-ViT-B-32`` model::

    PATH/modules.json                 [{"type": "sentence_transformers.models.CLIPModel",
                                        "path": "0_CLIPModel", ...}]
    PATH/0_CLIPModel/config.json      CLIPConfig
    PATH/0_CLIPModel/model.safetensors
    PATH/0_CLIPModel/vocab.json, merges.txt, tokenizer.json, tokenizer_config.json
    PATH/0_CLIPModel/preprocessor_config.json, processor_config.json
    PATH/clip_model_build.json        marker: format version, size, seed

Command line::

    python -m tests.support.clip_model PATH [--size tiny|full] [--seed N]
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import os
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from tests.support.model_dirs import build_model_dir

if TYPE_CHECKING:  # pragma: no cover
    from transformers import CLIPConfig, CLIPTokenizer

__all__ = [
    "FORMAT_VERSION",
    "MARKER_FILE",
    "MAX_TEXT_TOKENS",
    "MODULE_DIR",
    "SIZES",
    "build_clip_model",
    "embedding_dim",
    "main",
]

#: Bump whenever the generated files change (architecture, tokenizer corpus, layout ...):
#: it invalidates every cached build.
FORMAT_VERSION: Final = 1

#: Name of the file that records what a directory holds; written last, so its presence
#: means the build is complete.
MARKER_FILE: Final = "clip_model_build.json"

#: Sub-directory holding the CLIP module, as in ``sentence-transformers/clip-ViT-B-32``.
MODULE_DIR: Final = "0_CLIPModel"

#: Context length of CLIP's text tower; longer texts are truncated by the tokenizer.
MAX_TEXT_TOKENS: Final = 77

Size = Literal["tiny", "full"]
SIZES: Final[tuple[Size, ...]] = ("tiny", "full")

_EMBEDDING_DIMS: Final[dict[Size, int]] = {"tiny": 64, "full": 512}

_BOS_TOKEN: Final = "<|startoftext|>"
_EOS_TOKEN: Final = "<|endoftext|>"
_END_OF_WORD: Final = "</w>"

#: Number of BPE merges learned from the corpus (the vocabulary is 512 + merges + 2 tokens).
_NUM_MERGES: Final = 1000

_INIT_LOCK: Final = threading.Lock()

# A few hundred common English words, plus vocabulary an image-search test is likely to use.
# Listed roughly by frequency: earlier words weigh more in the BPE training.
_CORPUS_WORDS: Final = """
the of and to a in is it you that he was for on are with as i his they be at one have this
from or had by hot word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left
late run while press close night real life few north open seem together next white children
begin got walk example ease paper group always music those both mark often letter until mile
river car feet care second book carry took science eat room friend began idea fish mountain
stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard best
hour better true during hundred five remember step early hold west ground interest reach
fast verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern pull
cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green oh quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force
blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought
heat snow tire bring yes distant fill east paint language among photo image photograph cat
kitten puppy beach sunset sunrise forest lake street building bridge bicycle train airplane
flower garden portrait landscape sky cloud clouds snowy winter summer autumn spring yellow
orange purple pink brown gray grey dark bright night city skyline mountains hills desert
ocean waves sand people crowd child woman smiling running sitting standing holding playing
wearing shirt dress hat glasses phone computer laptop keyboard screen kitchen table chair
sofa window door wall floor painting drawing sketch cartoon logo text sign road highway
traffic truck bus motorcycle boat ship harbor market shop store food pizza burger salad
coffee cup glass bottle wine beer cake fruit apple banana strawberry vegetables bread
""".split()

# Affixes combined with the words above to give the BPE trainer morphology to learn from.
_SUFFIXES: Final = ("s", "es", "ed", "ing", "er", "ers", "ly", "ness", "ful", "less", "able", "est")
_PREFIXES: Final = ("un", "re", "pre", "dis", "over", "under", "out", "non")


def embedding_dim(size: Size) -> int:
    """Return the dimension of the vectors a model of the given ``size`` produces."""
    return _EMBEDDING_DIMS[_check_size(size)]


def build_clip_model(path: Path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Build (or reuse) a seeded random-weight CLIP model in sentence-transformers layout.

    Args:
        path: Directory to create.  If it already holds a complete build with the same
            ``size``, ``seed`` and :data:`FORMAT_VERSION`, it is returned untouched.  If it
            holds an older or different build, that build is replaced.  Any other non-empty
            directory is refused rather than overwritten.
        size: ``"tiny"`` (unit tests, 64-dim vectors) or ``"full"`` (ViT-B/32 shape, 512-dim).
        seed: Seed for the weight initialisation.  The same ``(size, seed)`` always gives the
            same files, byte for byte, hence the same vectors.

    Returns:
        ``path``, ready for ``sentence_transformers.SentenceTransformer(str(path))``.

    Raises:
        ValueError: ``size`` is not one of :data:`SIZES`.
        FileExistsError: ``path`` exists, is not empty and was not written by this function.

    The model is written to a temporary sibling directory and renamed into place, so a
    concurrent reader or builder never sees a half-written model.  Nothing is downloaded.
    """
    checked_size = _check_size(size)
    return build_model_dir(
        path, _marker(checked_size, seed), MARKER_FILE, lambda root: _write_model(root, checked_size, seed)
    )


def _check_size(size: str) -> Size:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return cast(Size, size)


def _marker(size: Size, seed: int) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "size": size, "seed": seed}


def _write_model(root: Path, size: Size, seed: int) -> None:
    """Write a complete sentence-transformers CLIP model into the (empty) ``root`` directory."""
    import torch
    from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

    module_dir = root / MODULE_DIR
    module_dir.mkdir()

    vocab, merges = _bpe_vocab_and_merges()
    vocab_file = module_dir / "vocab.json"
    merges_file = module_dir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    merges_file.write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges), encoding="utf-8"
    )
    # Positional file paths: with transformers 5 the ``vocab_file=``/``merges_file=`` keywords
    # are silently ignored and give an empty tokenizer.
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=MAX_TEXT_TOKENS)
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, expected {len(vocab)}")

    image_size = 32 if size == "tiny" else 224
    image_processor = _image_processor_class()(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )

    config = _clip_config(size, tokenizer)
    # The initialisers draw from torch's global generator: seed it in a forked RNG state, so the
    # caller's state is untouched, and under a lock, so concurrent builds in threads can't interleave.
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(module_dir, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(module_dir)
    # transformers 5 nests the image processor settings in processor_config.json; also write the
    # classic preprocessor_config.json that published CLIP checkpoints (and transformers 4) carry.
    image_processor.save_pretrained(module_dir)

    modules = [{"idx": 0, "name": "0", "path": MODULE_DIR, "type": "sentence_transformers.models.CLIPModel"}]
    (root / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")

    # mkdtemp() creates the directory 0700 and safetensors writes 0600 files: make the model
    # readable by other users (e.g. a server running under another account), as a copy would be.
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def _image_processor_class() -> type[Any]:
    """``CLIPImageProcessor``, or its PIL twin when torchvision is missing.

    transformers 5 makes ``CLIPImageProcessor`` torchvision-based and, without torchvision,
    falls back to ``CLIPImageProcessorPil`` with a warning; pick the fallback directly.  Both
    save ``"image_processor_type": "CLIPImageProcessor"``.
    """
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        try:
            from transformers import CLIPImageProcessorPil
        except ImportError:  # transformers 4: CLIPImageProcessor is PIL-based already.
            pass
        else:
            return CLIPImageProcessorPil
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor


def _clip_config(size: Size, tokenizer: CLIPTokenizer) -> CLIPConfig:
    """Return the ``CLIPConfig`` for ``size``, with the tokenizer's special-token ids.

    The text tower pools the hidden state at the first ``eos_token_id``; the config default
    (49407) is not an id of the generated tokenizer, so it must be overridden or every text
    would be pooled at position 0 and get the same vector.
    """
    from transformers import CLIPConfig

    special_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if size == "full":
        # ViT-B/32 defaults throughout, including the 49408-token embedding table.
        return CLIPConfig(text_config=special_ids)
    dim = _EMBEDDING_DIMS["tiny"]
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    return CLIPConfig(
        text_config={
            **tower,
            **special_ids,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": MAX_TEXT_TOKENS,
            "projection_dim": dim,
        },
        vision_config={**tower, "image_size": 32, "patch_size": 8, "projection_dim": dim},
        projection_dim=dim,
    )


# --------------------------------------------------------------------------------------------
# Byte-level BPE vocabulary
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return dict(sorted(mapping.items()))


def _corpus() -> Counter[str]:
    """Word frequencies of the deterministic training corpus (Zipf-like weights)."""
    freqs: Counter[str] = Counter()
    for rank, word in enumerate(_CORPUS_WORDS):
        weight = 2000 // (rank + 20) + 1
        freqs[word] += weight
        for suffix in _SUFFIXES:
            freqs[word + suffix] += max(1, weight // 4)
        for prefix in _PREFIXES:
            freqs[prefix + word] += 1
    for digit in "0123456789":  # The pre-tokenizer splits numbers into single digits.
        freqs[digit] += 10
    return freqs


def _learn_merges(
    word_freqs: Counter[str], byte_chars: dict[int, str], num_merges: int
) -> list[tuple[str, str]]:
    """Learn BPE merges from ``word_freqs``, CLIP style (``</w>`` marks the end of a word).

    The most frequent adjacent pair is merged first; ties go to the smallest pair in sort
    order, so the result never depends on hashing or dict order (the ``tokenizers`` trainer
    breaks ties in hash order, which makes two trainings differ).
    """
    words: list[list[str]] = []
    weights: list[int] = []
    for word in sorted(word_freqs):
        symbols = [byte_chars[b] for b in word.encode("utf-8")]
        symbols[-1] += _END_OF_WORD
        words.append(symbols)
        weights.append(word_freqs[word])

    pair_counts: Counter[tuple[str, str]] = Counter()
    pair_words: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for index, symbols in enumerate(words):
        for pair in pairwise(symbols):
            pair_counts[pair] += weights[index]
            pair_words[pair].add(index)
    # Max-heap of (-count, pair); entries go stale when a count changes and are skipped.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges and heap:
        negative_count, best = heapq.heappop(heap)
        if negative_count != -pair_counts.get(best, 0) or negative_count >= 0:
            continue  # Stale entry, or a pair that no longer occurs.
        merges.append(best)
        merged = best[0] + best[1]
        changed: set[tuple[str, str]] = set()
        for index in sorted(pair_words.pop(best)):
            symbols, weight = words[index], weights[index]
            for pair in pairwise(symbols):
                pair_counts[pair] -= weight
                pair_words[pair].discard(index)
                changed.add(pair)
            new_symbols: list[str] = []
            position = 0
            while position < len(symbols):
                if position + 1 < len(symbols) and (symbols[position], symbols[position + 1]) == best:
                    new_symbols.append(merged)
                    position += 2
                else:
                    new_symbols.append(symbols[position])
                    position += 1
            for pair in pairwise(new_symbols):
                pair_counts[pair] += weight
                pair_words[pair].add(index)
                changed.add(pair)
            words[index] = new_symbols
        pair_counts.pop(best, None)
        for pair in sorted(changed - {best}):
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
    return merges


@functools.cache
def _bpe_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Return the CLIP-style vocabulary (token -> id) and the merges, in rank order.

    Vocabulary order follows CLIP: the 256 byte characters, the same with ``</w>``, one token
    per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.  Every byte has a token, so any
    text, whatever its script, emoji or control characters, maps to known ids.
    """
    byte_chars = _bytes_to_unicode()
    merges = _learn_merges(_corpus(), byte_chars, _NUM_MERGES)
    tokens = _unique(
        [
            *byte_chars.values(),
            *(char + _END_OF_WORD for char in byte_chars.values()),
            *(left + right for left, right in merges),
            _BOS_TOKEN,
            _EOS_TOKEN,
        ]
    )
    return {token: index for index, token in enumerate(tokens)}, tuple(merges)


def _unique(tokens: Iterable[str]) -> list[str]:
    """Drop repeated tokens (two merges can spell the same token), keeping first occurrences."""
    return list(dict.fromkeys(tokens))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: build the model and print its path."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.clip_model",
        description="Build a seeded random-weight CLIP model loadable by sentence-transformers.",
    )
    parser.add_argument("path", type=Path, help="directory to create (reused if already built)")
    parser.add_argument("--size", choices=SIZES, default="tiny", help="model size (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    args = parser.parse_args(argv)
    print(build_clip_model(args.path, size=args.size, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
