"""Where the tests find the public datasets, laid out like the project's `shared/data` folder:

    <root>/wikitext-2-raw-v1/wiki.{valid,test}.raw      <root>/gsm8k/{train,test}.jsonl
    <root>/hellaswag/hellaswag_val_full.txt             <root>/blimp/<paradigm>.jsonl

(the layout `fortifai_bench.local_benchmarks` and `fortifai_bench.corpora.wikitext` read). Looked for in order:

1. `FORTIFAI_TEST_DATA`: a folder in that layout (a folder that does not exist is an error, not a skip);
2. `../shared/data` beside the checkout (as in CI);
3. the Hugging Face datasets cache (the tests stay offline; `HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0 python
   tests/public_data.py` fills it once from the Hub): each dataset is written once per test session into a
   temporary folder in that layout, from the rows the Hub serves (the shared/data files are byte copies of the
   originals; the writers below keep WikiText byte for byte, and the others in the form their readers parse).

With none of them, the tests that need a dataset skip with `HOW` (one line). WikiText is written with its
valid and test parts only, as in `shared/data`: some tests check what happens when train is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ENV = "FORTIFAI_TEST_DATA"
NAMES = ("wikitext-2-raw-v1", "hellaswag", "gsm8k", "blimp")
HOW = (f"get the public test data: set {ENV}=DIR (a folder laid out like shared/data), put it at {SHARED_DATA}, "
       "or fetch it once into the Hugging Face cache: HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0 python "
       "tests/public_data.py (README, Data)")


class Missing(Exception):
    """A dataset the tests cannot find anywhere; the message says where it looked."""


# ------------------------------------------------------------------------------------------ the search


_hub_root: Path | None = None
_unavailable: dict[str, Missing] = {}  # one try per dataset and session: every test that needs it then skips at once


def find(name: str, env: dict | None = None, beside: Path = SHARED_DATA, hub: bool = True) -> Path:
    """The root folder holding `<root>/<name>/`, from the first source that has it; else `Missing`."""
    if name not in NAMES:
        raise ValueError(f"unknown test dataset {name!r}; known: {', '.join(NAMES)}")
    env = os.environ if env is None else env
    given = env.get(ENV)
    if given:
        root = Path(given).expanduser()
        if not root.is_dir():
            raise NotADirectoryError(f"{ENV}={given}: no such folder")
        if not (root / name).is_dir():
            raise Missing(f"{ENV}={given} has no {name}/ folder")
        return root
    if beside.is_dir():  # one source per session: a test reading two datasets reads them from one root
        if not (beside / name).is_dir():
            raise Missing(f"{beside} has no {name}/ folder")
        return beside
    if not hub:
        raise Missing(f"no {name}/ in {beside}")
    global _hub_root
    if _hub_root is None:
        _hub_root = Path(tempfile.mkdtemp(prefix="fortifai-test-data-"))
    if name in _unavailable:
        raise _unavailable[name]
    if not (_hub_root / name).is_dir():
        try:
            WRITERS[name](_hub_root / name)
        except Exception as exc:  # offline and not cached, no `datasets`, Hub down: all mean "not available"
            _unavailable[name] = Missing(f"no {ENV}, no {beside}, and {name} is not in the Hugging Face cache "
                                         f"({type(exc).__name__})")
            raise _unavailable[name] from exc
    return _hub_root


def describe(env: dict | None = None, beside: Path = SHARED_DATA) -> str:
    """One line for pytest's header: where the data comes from (without downloading anything)."""
    env = os.environ if env is None else env
    if env.get(ENV):
        return f"test data: {ENV}={env[ENV]}"
    if beside.is_dir():
        return f"test data: {beside}"
    return f"test data: none in {ENV} or {beside}; trying the Hugging Face cache, else the tests that need it skip"


# ------------------------------------------------------------------ writers: Hub rows -> shared/data layout


def _load(path: str, *args, **kwargs):
    import datasets

    return datasets.load_dataset(path, *args, **kwargs)


def wikitext_file(rows: list[str]) -> str:
    """A `wiki.*.raw` file from the Hub's rows: a row is a line with its newline, a blank line is "" there
    and " \\n" in the file (shared/data/wikitext-2-raw-v1/SOURCE.md: byte-identical to the original)."""
    return "".join(row if row else " \n" for row in rows)


def _write_wikitext(folder: Path) -> None:
    parts = {stem: wikitext_file(_load("Salesforce/wikitext", "wikitext-2-raw-v1", split=split)["text"])
             for stem, split in (("valid", "validation"), ("test", "test"))}
    _write(folder, {f"wiki.{stem}.raw": text for stem, text in parts.items()})


def _jsonl(rows, keys=None) -> str:
    return "".join(json.dumps({k: r[k] for k in (keys or r)}) + "\n" for r in rows)


def _write_gsm8k(folder: Path) -> None:
    _write(folder, {f"{split}.jsonl": _jsonl(_load("openai/gsm8k", "main", split=split), ("question", "answer"))
                    for split in ("train", "test")})


def _write_blimp(folder: Path) -> None:
    import datasets

    names = datasets.get_dataset_config_names("nyu-mll/blimp")
    _write(folder, {f"{name}.jsonl": _jsonl(_load("nyu-mll/blimp", name, split="train")) for name in names})


def hellaswag_clean(text: str) -> str:
    """The tag clean-up of llama.cpp's extractor (klosax/hellaswag_text_data, extract_hellaswag.cpp), which
    wrote shared/data/hellaswag/hellaswag_val_full.txt."""
    for old, new in (("[header]", ""), ("[step]", ""), ("[substeps]", ""), (" [title]", ". "), ("[title] ", ""),
                     ("[title].", ""), ("  ", " ")):
        text = text.replace(old, new)
    return text[1:] if text.startswith(" ") else text


def hellaswag_lines(row: dict) -> list[str]:
    """One item's six lines: `<activity>: <ctx>`, the gold index, the four endings."""
    return ([f"{hellaswag_clean(row['activity_label'])}: {hellaswag_clean(row['ctx'])}", str(int(row["label"]))]
            + [hellaswag_clean(e) for e in row["endings"]])


def _write_hellaswag(folder: Path) -> None:
    rows = _load("Rowan/hellaswag", split="validation")
    _write(folder, {"hellaswag_val_full.txt": "".join(line + "\n" for r in rows for line in hellaswag_lines(r))})


def _write(folder: Path, files: dict[str, str]) -> None:
    """Every file, or none: the folder appears (renamed into place) only once all its files are written."""
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    for name, text in files.items():
        (tmp / name).write_text(text, encoding="utf-8")
    tmp.rename(folder)


WRITERS = {"wikitext-2-raw-v1": _write_wikitext, "hellaswag": _write_hellaswag, "gsm8k": _write_gsm8k,
           "blimp": _write_blimp}


if __name__ == "__main__":  # fetch every dataset into the Hugging Face cache (online), then say where it went
    import sys

    for dataset in NAMES:
        try:
            WRITERS[dataset](Path(tempfile.mkdtemp()) / dataset)
        except Exception as exc:
            sys.exit(f"{dataset}: cannot load it from the Hugging Face Hub ({type(exc).__name__}: {exc}); "
                     "run online with HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0")
        print(f"{dataset}: in the Hugging Face cache; the tests will find it there", file=sys.stderr)
