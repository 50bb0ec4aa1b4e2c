"""BLiMP, HellaSwag and GSM8K from local folders (or the Hub): for the Imagination-of-Web corpus and for the
lm-eval tasks `blimp_local`, `hellaswag_local`, `gsm8k_local` (tasks/benchmarks/).

lm-eval's built-in `blimp`, `hellaswag` and `gsm8k` tasks download from the Hugging Face Hub. These variants
read the same data from a data folder laid out like `../shared/data`:

    DATA_DIR/blimp/<paradigm>.jsonl                 67 files, the BLiMP repository's data/ folder
    DATA_DIR/hellaswag/hellaswag_val_full.txt       llama.cpp's 6-lines-per-item text form of the validation set
    DATA_DIR/gsm8k/{train,test}.jsonl               the GSM8K repository's files
    DATA_DIR/wikitext-2-raw-v1/wiki.*.raw           (read by fortifai_bench.corpora.wikitext)

The folder is `data_dir` (an argument, or lm-eval `--metadata '{"data_dir": ...}'`), else `FORTIFAI_DATA_DIR`;
with neither, each reader loads the original dataset from the Hub.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_jsonl

HELLASWAG_FILE = "hellaswag_val_full.txt"
HUB = {"blimp": "nyu-mll/blimp", "hellaswag": "Rowan/hellaswag", "gsm8k": "openai/gsm8k"}


def data_root(data_dir=None) -> Path | None:
    root = data_dir or os.environ.get("FORTIFAI_DATA_DIR")
    return Path(root).expanduser() if root else None


def _folder(data_dir, name: str) -> Path | None:
    root = data_root(data_dir)
    if root is None:
        return None
    folder = root / name
    if not folder.is_dir():
        raise FortifaiError(f"{name}: no folder {folder} (data folder {root}; see fortifai_bench/local_benchmarks.py)")
    return folder


def _hub(name: str, *args, **kwargs):
    try:
        import datasets

        return datasets.load_dataset(HUB[name], *args, **kwargs)
    except Exception as exc:  # offline, auth, missing: all mean "give me a local folder"
        raise FortifaiError(f"{name}: cannot load {HUB[name]} from the Hugging Face Hub ({type(exc).__name__}); "
                            f"give a local data folder with data_dir / --data-dir or FORTIFAI_DATA_DIR") from exc


# ----------------------------------------------------------------------------------------------- HellaSwag


def read_hellaswag_txt(path: str | os.PathLike) -> list[dict]:
    """llama.cpp's form: per item `<activity>: <ctx>`, the gold index 0-3, then the four endings."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise FortifaiError(f"hellaswag: cannot read {path}: {exc}") from exc
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise FortifaiError(f"{path}: {len(lines)} lines is not a multiple of 6 (context, label, 4 endings per item)")
    docs = []
    for start in range(0, len(lines), 6):
        ctx, label, *endings = lines[start:start + 6]
        if label.strip() not in ("0", "1", "2", "3"):
            raise FortifaiError(f"{path}:{start + 2}: gold label must be 0-3, got {label!r}")
        docs.append({"query": ctx.strip(), "choices": [e.strip() for e in endings], "label": int(label)})
    return docs


def _hellaswag_preprocess(text: str) -> str:
    # lm-eval's tasks/hellaswag/utils.py: WikiHow's bracketed artefacts removed
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_docs(data_dir=None, split: str = "validation") -> list[dict]:
    """{query, choices, label} items. Locally only the validation set exists (llama.cpp's file)."""
    folder = _folder(data_dir, "hellaswag")
    if folder is not None:
        if split != "validation":
            raise FortifaiError(f"hellaswag: the local folder {folder} holds only the validation split, not {split!r}")
        return read_hellaswag_txt(folder / HELLASWAG_FILE)
    rows = _hub("hellaswag", split=split)
    return [{"query": _hellaswag_preprocess(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize()),
             "choices": [_hellaswag_preprocess(e) for e in r["endings"]], "label": int(r["label"])} for r in rows]


# ----------------------------------------------------------------------------------------------- GSM8K


def gsm8k_rows(data_dir=None, split: str = "test") -> list[dict]:
    """{question, answer} rows of the `main` configuration; the final answer follows `#### `."""
    if split not in ("train", "test"):
        raise FortifaiError(f"gsm8k: split must be train or test, got {split!r}")
    folder = _folder(data_dir, "gsm8k")
    if folder is not None:
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise FortifaiError(f"gsm8k: {path} does not exist")
        rows = read_jsonl(path, required=("question", "answer"))
        return [{"question": r["question"], "answer": r["answer"]} for r in rows]
    return [{"question": r["question"], "answer": r["answer"]} for r in _hub("gsm8k", "main", split=split)]


# ----------------------------------------------------------------------------------------------- BLiMP


def blimp_rows(data_dir=None, per_paradigm: int | None = None) -> list[dict]:
    """Minimal pairs of all 67 paradigms, interleaved (pair 0 of every paradigm, then pair 1, ...), so that
    lm-eval's `--limit N` takes a mix of phenomena rather than the first paradigm only."""
    folder = _folder(data_dir, "blimp")
    by_paradigm: dict[str, list[dict]] = {}
    if folder is not None:
        files = sorted(folder.glob("*.jsonl"))
        if not files:
            raise FortifaiError(f"blimp: no <paradigm>.jsonl files in {folder}")
        for f in files:
            by_paradigm[f.stem] = read_jsonl(f, required=("sentence_good", "sentence_bad"))
    else:
        import datasets

        try:
            names = datasets.get_dataset_config_names(HUB["blimp"])
        except Exception as exc:
            raise FortifaiError(f"blimp: cannot list {HUB['blimp']} on the Hub ({type(exc).__name__}); "
                                f"give a local data folder") from exc
        for name in names:
            by_paradigm[name] = list(_hub("blimp", name, split="train"))
    if per_paradigm is not None:
        by_paradigm = {k: v[: int(per_paradigm)] for k, v in by_paradigm.items()}
    longest = max(len(v) for v in by_paradigm.values())
    return [{"sentence_good": rows[i]["sentence_good"], "sentence_bad": rows[i]["sentence_bad"], "paradigm": name}
            for i in range(longest) for name, rows in sorted(by_paradigm.items()) if i < len(rows)]


# ----------------------------------------------------------------------------------------------- lm-eval


def _dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows)


def blimp_dataset(data_dir=None, per_paradigm=None, **_metadata):
    """`custom_dataset` of `blimp_local` (lm-eval passes the task metadata as keywords; the rest is ignored)."""
    return {"train": _dataset(blimp_rows(data_dir, per_paradigm))}


def hellaswag_dataset(data_dir=None, **_metadata):
    return {"validation": _dataset(hellaswag_docs(data_dir, "validation"))}


def gsm8k_dataset(data_dir=None, **_metadata):
    return {"train": _dataset(gsm8k_rows(data_dir, "train")), "test": _dataset(gsm8k_rows(data_dir, "test"))}
