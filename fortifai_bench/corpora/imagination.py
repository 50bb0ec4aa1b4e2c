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

import logging
import os

from fortifai_bench.corpora import Corpus, Paragraph, get_corpus
from fortifai_bench.corpora.wikitext import default_part
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.sets import kr_set
from fortifai_bench.local_benchmarks import data_root, gsm8k_rows, hellaswag_docs

log = logging.getLogger(__name__)

NAME = "imagination-of-web"
PARTS = ("main", "pretrain")
SOURCES = ("wikitext", "hellaswag", "gsm8k")
N_SPLITS = 6  # kr_imagination_split0..5, as kr_wikitext


def _wikitext(data_dir, part: str) -> tuple[list[Paragraph], str]:
    """WikiText paragraphs of the part and the WikiText part used (the rule of `wikitext.default_part`)."""
    wt_part = "test" if part == "pretrain" else default_part(data_dir)[0]
    corpus = get_corpus("wikitext-2-raw-v1", data_dir=data_dir, part=wt_part)
    return [Paragraph(p.id.split("/", 1)[1], p.text, dict(p.meta)) for p in corpus.paragraphs], corpus.part


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
    wikitext, wt_part = _wikitext(data_dir, part)
    sources = {"wikitext": wikitext, "hellaswag": _hellaswag(data_dir, part), "gsm8k": _gsm8k(data_dir, part)}
    k = min(len(v) for v in sources.values())
    paragraphs = [Paragraph(f"{NAME}/{part}/{name}/{p.id}", p.text, {**p.meta, "source": name})
                  for i in range(k) for name, p in ((n, sources[n][i]) for n in SOURCES)]
    where = str(data_root(data_dir)) if data_dir else "hf-hub"
    return Corpus(name=NAME, source=f"{where}: wikitext-2-raw-v1 ({wt_part}) + hellaswag + gsm8k, {k} paragraphs each",
                  paragraphs=paragraphs, part=part)


# ----------------------------------------------------------------------------------------------- KR questions


def imagination_questions(data_dir=None, part: str = "main", n_splits: int = N_SPLITS) -> list:
    """Rules-generated KR questions of the corpus (split k = the k-th of `n_splits` even cuts), built once per
    corpus text and cached: `fortifai_bench.kr.sets.kr_set`, the one KR-set resolver."""
    return kr_set(NAME, part, n_splits, data_dir=data_dir).questions
