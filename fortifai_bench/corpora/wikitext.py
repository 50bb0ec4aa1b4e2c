"""WikiText-2 (raw, `wikitext-2-raw-v1`): articles cut at ` = Title = ` headings.

Each non-blank, non-heading line of wikitext is one paragraph (that is how the dataset stores
them). Section headings (` = = Section = = `) are not paragraphs; the paragraphs under them stay in
their article and carry the section name in `meta`. Ids: `wikitext-2-raw-v1/<part>/a003/p02`
(article number within the part, paragraph number within the article).

Where the text comes from, in order: `data_dir` (argument or `--data-dir`), the `FORTIFAI_DATA_DIR`
environment variable, then the Hugging Face Hub (`Salesforce/wikitext`). A data folder may hold the
`wiki.{train,valid,test}.raw` files itself or a `wikitext-2-raw-v1/` folder that does.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from fortifai_bench.corpora.corpus import Corpus, Paragraph
from fortifai_bench.errors import FortifaiError

NAME = "wikitext-2-raw-v1"
# part name -> (file stem, Hugging Face split). "main" is the training text, as in the paper.
PARTS = {"main": ("train", "train"), "train": ("train", "train"), "valid": ("valid", "validation"),
         "validation": ("valid", "validation"), "test": ("test", "test")}
# ` = Title = `, ` = = Section = = `, ` = = = Sub = = = ` (the line is stripped first)
_HEADING = re.compile(r"^((?:=\s)+)(.*?)((?:\s=)+)$")
log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def default_part(data_dir=None) -> tuple[str, str | None]:
    """The part to use when none is asked for, and why when it is not `main` (the training text).

    `main`, as in the paper, except that a local folder holding no `wiki.train.raw` (such as a copy of
    only the validation and test files) gives `valid`. The fallback is logged once per folder and
    process; the returned note is for the caller to record (KR-set provenance).
    """
    data_dir = data_dir or os.environ.get("FORTIFAI_DATA_DIR") or None
    if not data_dir:
        return "main", None
    root = Path(data_dir)
    if any((folder / "wiki.train.raw").is_file() for folder in (root / NAME, root)):
        return "main", None
    note = f"{root} holds no wiki.train.raw: used the 'valid' part instead of the training text"
    if str(root) not in _WARNED:
        _WARNED.add(str(root))
        log.warning("%s: %s (choose one with part=...)", NAME, note)
    return "valid", note


def parse_wikitext(lines, part: str):
    """Paragraphs of wikitext lines (file lines or HF rows), with article and section in meta."""
    paragraphs = []
    article, title, section, in_article = -1, "", "", 0
    for line in lines:
        text = line.strip()
        if not text:
            continue
        m = _HEADING.match(text)
        if m:
            if m.group(1).count("=") == 1:  # ` = Title = ` starts a new article
                article, title, section, in_article = article + 1, m.group(2), "", 0
            else:
                section = m.group(2)
            continue
        if article < 0:  # text before any title: an untitled first article
            article = 0
        paragraphs.append(Paragraph(
            id=f"{NAME}/{part}/a{article:03d}/p{in_article:02d}",
            text=text,
            meta={"article": article, "title": title, "section": section},
        ))
        in_article += 1
    return paragraphs


def _local_file(data_dir, stem: str) -> Path | None:
    if not data_dir:
        return None
    root = Path(data_dir)
    for folder in (root / NAME, root):
        if folder.is_dir() and any(folder.glob("wiki.*.raw")):
            return folder / f"wiki.{stem}.raw"
    raise FortifaiError(f"{NAME}: no wiki.*.raw files in {root} (nor in {root / NAME})")


def load_wikitext(data_dir=None, part: str = "main"):
    if part not in PARTS:
        raise FortifaiError(f"{NAME}: unknown part {part!r}; known: {', '.join(PARTS)}")
    stem, hf_split = PARTS[part]
    data_dir = data_dir or os.environ.get("FORTIFAI_DATA_DIR")
    path = _local_file(data_dir, stem)
    if path is not None:
        if not path.is_file():
            raise FortifaiError(f"{NAME}: part {part!r} needs {path}, which does not exist")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise FortifaiError(f"{NAME}: cannot read {path}: {exc}") from exc
        source = f"{path}"
    else:
        lines = _from_hub(hf_split)
        source = f"hf:Salesforce/wikitext/{NAME}/{hf_split}"
    paragraphs = parse_wikitext(lines, stem)
    if not paragraphs:
        raise FortifaiError(f"{NAME}: {source} has no paragraphs")
    return Corpus(name=NAME, source=source, paragraphs=paragraphs, part=stem)


def _from_hub(split: str) -> list[str]:
    try:
        import datasets

        ds = datasets.load_dataset("Salesforce/wikitext", NAME, split=split)
    except Exception as exc:  # network, auth, cache: all mean "give me a local folder"
        raise FortifaiError(
            f"{NAME}: cannot load split {split!r} from the Hugging Face Hub ({type(exc).__name__}); "
            f"give a local folder of wiki.*.raw files with --data-dir or FORTIFAI_DATA_DIR"
        ) from exc
    return [row["text"] for row in ds]
