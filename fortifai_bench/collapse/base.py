"""The base model M_0: a hub id or local directory as is, or the `tiny` GPT-2 pretrained once and cached.

The tiny base is pretrained (plain cross-entropy) on a part of the corpus that shares no paragraph
with the protocol's splits (for `facts`: the "pretrain" part, other entities with the same templates
and values). From random weights the stage-0 model learns facts only weakly and the first
regeneration wipes them out, which says nothing about the loss under test.

The cache lives in `resources.cache_dir()/base/<key>`, where the key hashes everything that decides
the weights (architecture, pretraining corpus and settings, the format below), so changing any of
them builds a new base. The folder is built under a temporary name and renamed (`io.atomic_dir`):
a killed build leaves no half model behind, and the next call removes the temporary it left.

The package also ships the base of collapse_facts (`data/bases/<key>/`, written by
`python -m fortifai_bench.collapse.base --ship`): the same files a one-thread build writes, with a
base.json giving its key and every file's sha256. `base_model` uses it when its key is the task's and
every file's sha256 checks, so a first run skips the pretraining; anything else is built as above.
Every run records the base it started from (`base_record`: key and the weights' sha256), and a board
refuses runs made from another base.

The base is one seed's draw (`model.pretrain.seed`). With ``model.pretrain.seed: run`` every run pretrains
its own base with the run's seed (`with_base_seed`), so that seeds sample the base as well as the data
order and decoding, and a board's spread covers base-to-base variation (issue 26 item 3: one base moved
tce:0.99's time to failure more than any seed did); seed 0's base is the shipped one.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from fortifai_bench import threads
from fortifai_bench.collapse.config import CollapseTask, load_task
from fortifai_bench.corpora import get_corpus
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import atomic_dir, file_sha256, file_sha256_once, read_json, remove_orphan_temps, write_json
from fortifai_bench.models import TinyConfig, build_tiny, resolve, save_model
from fortifai_bench.resources import cache_dir, data_dir
from fortifai_bench.results import BASE_SEED_RUN

BASE_FORMAT = 2  # bump when the way the base is built changes (2: pretrained with one thread)


def with_base_seed(task: CollapseTask) -> CollapseTask:
    """The task with its base's seed resolved: `model.pretrain.seed: run` becomes the run's seed (every
    seed pretrains its own base), any other seed stays."""
    pre = task.model.pretrain
    if pre is None or pre.seed != BASE_SEED_RUN:
        return task
    return dataclasses.replace(task, model=dataclasses.replace(task.model, pretrain=dataclasses.replace(
        pre, seed=task.seed)))


def base_key(task: CollapseTask) -> str:
    """Hash of everything that decides the base's weights, including the pretraining text itself: a
    corpus whose generator changed under the same name must not reuse a base trained on the old text."""
    m = with_base_seed(task).model
    if m.pretrain is not None:
        texts = pretrain_texts(task)
    else:
        texts = get_corpus(task.corpus, part=task.corpus_part).texts()
    spec = {"format": BASE_FORMAT, "tiny": dataclasses.asdict(m.tiny),
            "pretrain": dataclasses.asdict(m.pretrain) if m.pretrain else None,
            "texts_sha256": hashlib.sha256("\n\n".join(texts).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def base_dir(task: CollapseTask) -> Path | None:
    """Where M_0 lives: the cached tiny base, a local directory, or None for a hub id."""
    if task.model.name == "tiny":
        return cache_dir() / "base" / f"tiny-{base_key(task)}"
    path = Path(task.model.name).expanduser()
    return path if path.exists() else None


def pretrain_texts(task: CollapseTask) -> list[str]:
    pre = task.model.pretrain
    corpus = get_corpus(pre.corpus, part=pre.part)
    n = len(corpus) if pre.paragraphs is None else pre.paragraphs
    if n > len(corpus):
        raise FortifaiError(f"model.pretrain.paragraphs={n} but corpus {pre.corpus} part {pre.part} has "
                            f"only {len(corpus)} paragraphs")
    return corpus.texts()[:n]


def base_model(task: CollapseTask, *, progress: bool = True) -> str:
    """Build M_0 if needed; return the model spec to load it from (a directory or a hub id). A tiny base the
    package ships (`shipped_base`) is used as it is, else the one cached, else it is built into the cache."""
    if task.model.name != "tiny":
        return resolve(task.model.name)  # a gguf: spec is dequantised into the cache once
    shipped = shipped_base(task)
    if shipped is not None:
        return str(shipped)
    path = base_dir(task)
    remove_orphan_temps(path.parent, path.name)  # what a killed build of this base left in the cache
    if (path / "model" / "config.json").is_file():
        return str(path / "model")
    _build_tiny_base(task, path, progress)
    return str(path / "model")


def _build_tiny_base(task: CollapseTask, path: Path, progress: bool) -> None:
    # The trainer imports torch, and this module must not: collapse.compute (which `fortifai-bench --help`
    # loads) reads the base's key and folder from here.
    from fortifai_bench.train.loop import train

    m = with_base_seed(task).model
    tiny = TinyConfig(**dataclasses.asdict(m.tiny))
    start = time.perf_counter()
    if m.pretrain is None:
        # An untrained base: its tokenizer is trained on the protocol's own corpus.
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


# ------------------------------------------------------------------------------------------ identity

WEIGHTS = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"


def weights_sha256(model_dir: str | Path) -> str | None:
    """sha256 of a model directory's safetensors weights: of `model.safetensors`, or for sharded weights of
    the lines "<shard> <its sha256>" in the index's order; None when the directory holds neither."""
    model_dir = Path(model_dir)
    files = [model_dir / WEIGHTS]
    if not files[0].is_file():
        index = model_dir / SHARD_INDEX
        if not index.is_file():
            return None
        shards = dict.fromkeys(json.loads(index.read_text())["weight_map"].values())
        files = [model_dir / name for name in shards]
    if len(files) == 1:
        return file_sha256_once(files[0])
    lines = "".join(f"{f.name} {file_sha256_once(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def base_record(task: CollapseTask, spec: str) -> dict:
    """What a run records about its M_0 (results.json `base`): the model name, the tiny base's key, the
    sha256 of the weights it loaded (None for a hub id: its revision is in the config), and whether it
    was the copy the package ships."""
    path = Path(spec)
    info_file = next((p / "base.json" for p in (path, path.parent) if (p / "base.json").is_file()), None)
    info = json.loads(info_file.read_text()) if info_file else {}
    return {"model": task.model.name, "key": info.get("key"),
            "sha256": weights_sha256(path) if path.is_dir() else None,
            "shipped": path.resolve().parent == shipped_root().resolve()}


# ------------------------------------------------------------------------------------------ shipped copy

SHIPPED_TASK = "collapse_facts"


def shipped_root() -> Path:
    return data_dir() / "bases"


def _files_sha256(folder: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "base.json"}


def shipped_base(task: CollapseTask, root: str | Path | None = None) -> Path | None:
    """The shipped copy of this task's tiny base: `data/bases/<key>/` when its base.json names the task's
    key and every file has the sha256 recorded there; else None (and a line on stderr when a copy is
    there but does not check: the base is then built into the cache)."""
    key = base_key(task)
    folder = Path(root or shipped_root()) / key
    info_file = folder / "base.json"
    if not info_file.is_file():
        return None
    try:
        info = json.loads(info_file.read_text())
        recorded = info["files"]
        ok = info["key"] == key and recorded.get(WEIGHTS) == info["sha256"] and _files_sha256(folder) == recorded
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        print(f"fortifai-bench: the shipped base {folder} does not match its base.json; building it instead",
              file=sys.stderr)
        return None
    return folder


def ship(task: CollapseTask, root: str | Path | None = None, *, progress: bool = True) -> Path:
    """Build this task's tiny base afresh (one thread, as `base_model` builds it, in a temporary folder
    rather than the user's cache) and write it into `root/<key>/` (default: the package's data/bases/)
    with its base.json; returns the folder."""
    if task.model.name != "tiny" or task.model.pretrain is None:
        raise FortifaiError(f"task {task.task}: only a pretrained tiny base can be shipped")
    key = base_key(task)
    root = Path(root) if root is not None else shipped_root()
    with tempfile.TemporaryDirectory(prefix="fortifai-base-") as scratch:
        built = Path(scratch) / f"tiny-{key}"
        _build_tiny_base(task, built, progress)
        info = read_json(built / "base.json")
        with atomic_dir(root / key) as tmp:
            for f in sorted((built / "model").iterdir()):
                (tmp / f.name).write_bytes(f.read_bytes())
            files = _files_sha256(tmp)
            write_json(tmp / "base.json", {
                "key": key, "task": task.task, "format": BASE_FORMAT, "sha256": files[WEIGHTS], "files": files,
                "tiny": info["tiny"], "pretrain": info["pretrain"], "built_seconds": info["seconds"],
                "note": "written by `python -m fortifai_bench.collapse.base --ship`: a one-thread build of this "
                        "task's base (fortifai_bench/collapse/base.py)"})
    return root / key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fortifai_bench.collapse.base",
                                     description="Build a collapse task's tiny base M_0 (one thread) and print "
                                                 "its folder and the sha256 of its weights.")
    parser.add_argument("--task", default=SHIPPED_TASK, help=f"task name or YAML path (default: {SHIPPED_TASK})")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a task field")
    parser.add_argument("--ship", action="store_true",
                        help="write it into the package's data/bases/<key>/ (or --to), with base.json")
    parser.add_argument("--to", default=None, help="folder to ship into instead of data/bases/")
    args = parser.parse_args(argv)
    threads.start()
    threads.apply_default()  # as every command: the pretraining itself is pinned to one thread regardless
    try:
        task = load_task(args.task, args.set)
        if args.ship:
            folder = ship(task, args.to)
        else:
            folder = Path(base_model(task))
        print(f"{folder}\nsha256 {weights_sha256(folder)}")
    except FortifaiError as exc:
        print(f"fortifai-bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
