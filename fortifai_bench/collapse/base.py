"""The base model M_0: a hub id or local directory as is, or the `tiny` GPT-2 pretrained once and cached.

The tiny base is pretrained (plain cross-entropy) on a part of the corpus that shares no paragraph
with the protocol's splits (for `facts`: the "pretrain" part, other entities with the same templates
and values). From random weights the stage-0 model learns facts only weakly and the first
regeneration wipes them out, which says nothing about the loss under test.

The cache lives in `resources.cache_dir()/base/<key>`, where the key hashes everything that decides
the weights (architecture, pretraining corpus and settings, the format below), so changing any of
them builds a new base. The folder is built under a temporary name and renamed (`io.atomic_dir`):
a killed build leaves no half model behind, and the next call removes the temporary it left.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.errors import FortifaiError

BASE_FORMAT = 2  # bump when the way the base is built changes (2: pretrained with one thread)


def base_key(task: CollapseTask) -> str:
    """Hash of everything that decides the base's weights, including the pretraining text itself: a
    corpus whose generator changed under the same name must not reuse a base trained on the old text."""
    m = task.model
    if m.pretrain is not None:
        texts = pretrain_texts(task)
    else:
        from fortifai_bench.corpora import get_corpus

        texts = get_corpus(task.corpus, part=task.corpus_part).texts()
    spec = {"format": BASE_FORMAT, "tiny": dataclasses.asdict(m.tiny),
            "pretrain": dataclasses.asdict(m.pretrain) if m.pretrain else None,
            "texts_sha256": hashlib.sha256("\n\n".join(texts).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def base_dir(task: CollapseTask) -> Path | None:
    """Where M_0 lives: the cached tiny base, a local directory, or None for a hub id."""
    from fortifai_bench.resources import cache_dir

    if task.model.name == "tiny":
        return cache_dir() / "base" / f"tiny-{base_key(task)}"
    path = Path(task.model.name).expanduser()
    return path if path.exists() else None


def pretrain_texts(task: CollapseTask) -> list[str]:
    from fortifai_bench.corpora import get_corpus

    pre = task.model.pretrain
    corpus = get_corpus(pre.corpus, part=pre.part)
    n = len(corpus) if pre.paragraphs is None else pre.paragraphs
    if n > len(corpus):
        raise FortifaiError(f"model.pretrain.paragraphs={n} but corpus {pre.corpus} part {pre.part} has "
                            f"only {len(corpus)} paragraphs")
    return corpus.texts()[:n]


def base_model(task: CollapseTask, *, progress: bool = True) -> str:
    """Build M_0 if needed; return the model spec to load it from (a directory or a hub id)."""
    if task.model.name != "tiny":
        return task.model.name
    path = base_dir(task)
    from fortifai_bench.io import remove_orphan_temps

    remove_orphan_temps(path.parent, path.name)  # what a killed build of this base left in the cache
    if (path / "model" / "config.json").is_file():
        return str(path / "model")
    _build_tiny_base(task, path, progress)
    return str(path / "model")


def _build_tiny_base(task: CollapseTask, path: Path, progress: bool) -> None:
    from fortifai_bench import threads
    from fortifai_bench.io import atomic_dir, write_json
    from fortifai_bench.models import TinyConfig, build_tiny, save_model
    from fortifai_bench.train import train

    m = task.model
    tiny = TinyConfig(**dataclasses.asdict(m.tiny))
    start = time.perf_counter()
    if m.pretrain is None:
        # An untrained base: its tokenizer is trained on the protocol's own corpus.
        from fortifai_bench.corpora import get_corpus

        texts = get_corpus(task.corpus, part=task.corpus_part).texts()
        model, tokenizer = build_tiny(texts, tiny, seed=0)
        history = []
    else:
        texts = pretrain_texts(task)
        model, tokenizer = build_tiny(texts, tiny, seed=m.pretrain.seed)
        if progress:
            print(f"building the tiny base model M_0: pretraining on {len(texts)} paragraphs of "
                  f"{m.pretrain.corpus}:{m.pretrain.part} (once; cached in {path})", flush=True)
        config = dataclasses.replace(m.pretrain.train, seed=m.pretrain.seed)
        # One thread, whatever the load: the thread count changes float rounding and so the weights, and
        # every result of this base must be a function of (code, config, seed) only (issue 20).
        with threads.pinned(1):
            result = train(model, tokenizer, texts, "ce", config, progress=progress)
        model, history = result.model, result.history
    with atomic_dir(path) as tmp:
        save_model(model, tokenizer, tmp / "model")
        write_json(tmp / "base.json", {
            "key": base_key(task), "tiny": dataclasses.asdict(m.tiny),
            "pretrain": dataclasses.asdict(m.pretrain) if m.pretrain else None,
            "history": history, "seconds": time.perf_counter() - start,
        })
