"""Imagination-of-Web (ForTIFAI, Sec. 4.1.1): a composite of WikiText-2, HellaSwag and GSM8K.

Encyclopedic prose, everyday situations and grade-school arithmetic in one corpus, so that collapse shows up
on knowledge, commonsense and reasoning at once. Paragraphs:

* WikiText-2: one paragraph per wikitext paragraph (`fortifai_bench.corpora.wikitext`);
* HellaSwag: the context followed by its gold ending (`"<activity>: <context> <ending>"`);
* GSM8K: `"<question>\\n<worked answer>"` (the answer with its `<<a*b=c>>` annotations and `#### n` line).

The three are interleaved round-robin (w, h, g, w, h, g, ...) with the same number `k` of paragraphs from each,
`k` the size of the smallest source, so every contiguous split of the collapse protocol holds an equal mix.
Ids are `imagination-of-web/<part>/<source>/<id in the source>`; `meta["source"]` names the source.

Parts (disjoint): `main` (the collapse text) and `pretrain` (for the tiny base model):

    source     | main                                   | pretrain
    wikitext   | train (valid when a local folder has   | test
               | no wiki.train.raw, as kr_wikitext)      |
    hellaswag  | train (Hub); first half of validation  | validation (Hub); second half of validation
               | (local: llama.cpp's file has only val)  | (local)
    gsm8k      | train                                  | test

Where the data comes from: `data_dir` (argument or `--data-dir`), else `FORTIFAI_DATA_DIR`, a folder laid out
like `../shared/data` (wikitext-2-raw-v1/, hellaswag/, gsm8k/; see `fortifai_bench.local_benchmarks`); with
neither, the Hugging Face Hub (Salesforce/wikitext, Rowan/hellaswag, openai/gsm8k).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

from fortifai_bench.corpora import Corpus, Paragraph, get_corpus
from fortifai_bench.errors import FortifaiError
from fortifai_bench.local_benchmarks import data_root, gsm8k_rows, hellaswag_docs

log = logging.getLogger(__name__)

NAME = "imagination-of-web"
PARTS = ("main", "pretrain")
SOURCES = ("wikitext", "hellaswag", "gsm8k")
N_SPLITS = 6  # kr_imagination_split0..5, as kr_wikitext


def _wikitext(data_dir, part: str) -> list[Paragraph]:
    if part == "pretrain":
        wt_part = "test"
    else:
        root = data_root(data_dir)
        has_train = root is not None and any(
            (f / "wiki.train.raw").is_file() for f in (root / "wikitext-2-raw-v1", root))
        wt_part = "valid" if root is not None and not has_train else "main"
    corpus = get_corpus("wikitext-2-raw-v1", data_dir=data_dir, part=wt_part)
    return [Paragraph(p.id.split("/", 1)[1], p.text, dict(p.meta)) for p in corpus.paragraphs]


def _hellaswag(data_dir, part: str) -> list[Paragraph]:
    if data_root(data_dir) is not None:
        docs = hellaswag_docs(data_dir, "validation")
        half = len(docs) // 2
        chosen = list(enumerate(docs))[:half] if part == "main" else list(enumerate(docs))[half:]
        split = "validation"
    else:
        split = "train" if part == "main" else "validation"
        chosen = list(enumerate(hellaswag_docs(None, split)))
    return [Paragraph(f"{split}/{i:05d}", f"{d['query']} {d['choices'][d['label']]}", {"label": d["label"]})
            for i, d in chosen]


def _gsm8k(data_dir, part: str) -> list[Paragraph]:
    split = "train" if part == "main" else "test"
    return [Paragraph(f"{split}/{i:04d}", f"{r['question']}\n{r['answer']}", {})
            for i, r in enumerate(gsm8k_rows(data_dir, split))]


def load_imagination(data_dir=None, part: str = "main") -> Corpus:
    """The composite corpus (see the module docstring); a registered loader `loader_fn(data_dir, part)`."""
    if part not in PARTS:
        raise FortifaiError(f"{NAME}: unknown part {part!r}; known: {', '.join(PARTS)}")
    data_dir = data_dir or os.environ.get("FORTIFAI_DATA_DIR") or None
    sources = {"wikitext": _wikitext(data_dir, part), "hellaswag": _hellaswag(data_dir, part),
               "gsm8k": _gsm8k(data_dir, part)}
    k = min(len(v) for v in sources.values())
    paragraphs = [Paragraph(f"{NAME}/{part}/{name}/{p.id}", p.text, {**p.meta, "source": name})
                  for i in range(k) for name, p in ((n, sources[n][i]) for n in SOURCES)]
    where = str(data_root(data_dir)) if data_dir else "hf-hub"
    return Corpus(name=NAME, source=f"{where}: wikitext-2-raw-v1 + hellaswag + gsm8k, {k} paragraphs each",
                  paragraphs=paragraphs, part=part)


# ----------------------------------------------------------------------------------------------- KR questions


def imagination_questions(data_dir=None, part: str = "main", n_splits: int = N_SPLITS) -> list:
    """Rules-generated KR questions of the corpus (split k = the k-th of `n_splits` even cuts), built once per
    corpus text and cached under the user cache (the file name carries generator, part, splits, text hash)."""
    data_dir = data_dir or os.environ.get("FORTIFAI_DATA_DIR") or None
    return list(_cached_questions(str(data_dir) if data_dir else None, part, n_splits))


@functools.lru_cache(maxsize=4)
def _cached_questions(data_dir, part: str, n_splits: int) -> tuple:
    from fortifai_bench.kr import rules
    from fortifai_bench.kr.build import build_questions
    from fortifai_bench.kr.schema import read_questions, write_questions
    from fortifai_bench.resources import cache_dir

    corpus = load_imagination(data_dir, part)
    digest = hashlib.sha256()
    for p in corpus.paragraphs:
        digest.update(p.id.encode() + b"\0" + p.text.encode() + b"\0")
    name = f"{NAME}-{part}-{rules.GENERATOR.replace('@', '-v')}-s{n_splits}-{digest.hexdigest()[:16]}.jsonl"
    path = Path(cache_dir()) / "kr" / name
    if path.is_file():
        return tuple(read_questions(path))
    log.info("kr_imagination: building questions from %s into %s", corpus.source, path)
    questions, _report = build_questions(corpus, "rules", n_splits, source=f"{NAME}:{part}")
    if not questions:
        raise FortifaiError(f"kr_imagination: the rules generator made no questions from {corpus.source}")
    write_questions(path, questions)
    return tuple(questions)


def kr_imagination_dataset(kr_split=None, data_dir=None, part="main", **_metadata):
    """`custom_dataset` of the lm-eval tasks kr_imagination_splitK: {"test": Dataset} of split K."""
    import datasets

    from fortifai_bench.kr.lm_eval_tasks import to_docs

    questions = imagination_questions(data_dir, part or "main")
    if kr_split is not None:
        questions = [q for q in questions if q.split == int(kr_split)]
    if not questions:
        raise FortifaiError(f"kr_imagination: no questions in split {kr_split}")
    return {"test": datasets.Dataset.from_list(to_docs(questions))}


from fortifai_bench.corpora import register_corpus  # noqa: E402  (the registry is fully defined by now)

register_corpus(NAME, load_imagination)
