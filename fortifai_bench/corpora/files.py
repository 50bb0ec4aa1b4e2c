"""Corpora from the user's own files: `text:PATH` and `jsonl:PATH:FIELD`.

Paragraphs are separated by blank lines (lines that are empty or whitespace only); the lines of one
paragraph are joined with a single space. Ids are `<file stem>/p0000`, numbered in file order (for
JSONL: `<file stem>/r0003/p01`, row then paragraph within that row).
"""

from __future__ import annotations

import re
from pathlib import Path

from fortifai_bench.corpora.corpus import Corpus, Paragraph
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_jsonl, read_text

_BLANK = re.compile(r"\n[ \t\r\f\v]*\n")


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each with its lines joined by one space."""
    paras = []
    for block in _BLANK.split(text.replace("\r\n", "\n")):
        joined = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if joined:
            paras.append(joined)
    return paras


def _check_part(name: str, part: str) -> None:
    if part not in ("main", None):
        raise FortifaiError(f"corpus {name} has only the part 'main', not {part!r}")


def _read(path: Path, name: str) -> str:
    if path.is_dir():
        raise FortifaiError(f"corpus {name}: {path} is a folder; text:PATH takes one text file")
    return _no_binary(read_text(path), path)


def _no_binary(text: str, where) -> str:
    """UTF-8 can still be binary: a NUL byte never occurs in text, and tokenizers treat it as a word."""
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise FortifaiError(f"{where}:{line}: a NUL byte: this is a binary file, not text")
    return text


def load_text(path: str, part: str = "main"):

    name = f"text:{path}"
    _check_part(name, part)
    p = Path(path)
    paras = split_paragraphs(_read(p, name))
    if not paras:
        raise FortifaiError(f"corpus {name}: {p} has no paragraphs (empty or blank)")
    width = max(4, len(str(len(paras) - 1)))
    return Corpus(
        name=name,
        source=str(p),
        paragraphs=[Paragraph(f"{p.stem}/p{i:0{width}d}", t, {"line_paragraph": i}) for i, t in enumerate(paras)],
    )


def load_jsonl(spec: str, part: str = "main"):
    name = f"jsonl:{spec}"
    _check_part(name, part)
    if ":" not in spec:
        raise FortifaiError(f"corpus {name}: expected jsonl:PATH:FIELD (the field holding the text)")
    path, fld = spec.rsplit(":", 1)
    if not path or not fld:
        raise FortifaiError(f"corpus {name}: expected jsonl:PATH:FIELD (the field holding the text)")
    p = Path(path)
    if not p.is_file():
        raise FortifaiError(f"corpus {name}: no such file {p}")
    rows = read_jsonl(p, required=(fld,))
    paragraphs = []
    for r, row in enumerate(rows):
        value = row[fld]
        if not isinstance(value, str):
            raise FortifaiError(f"{p}: row {r + 1}: field {fld!r} is {type(value).__name__}, not text")
        if "\0" in value:
            raise FortifaiError(f"{p}: row {r + 1}: field {fld!r} holds a NUL byte: binary data, not text")
        for j, t in enumerate(split_paragraphs(value)):
            paragraphs.append(Paragraph(f"{p.stem}/r{r:04d}/p{j:02d}", t, {"row": r}))
    if not paragraphs:
        raise FortifaiError(f"corpus {name}: {p} has no paragraphs (no non-blank {fld!r} text)")
    return Corpus(name=name, source=f"{p}:{fld}", paragraphs=paragraphs)
