"""`fortifai-bench corpus list | show | build-facts`: thin layers over the corpus registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from fortifai_bench.errors import FortifaiError


def register(subparsers) -> None:
    c = subparsers.add_parser("corpus", help="corpora: list, show, build the shipped facts data")
    sub = c.add_subparsers(dest="corpus_command", metavar="<corpus command>")
    c.set_defaults(func=lambda args: (c.print_help(), 2)[1])

    ls = sub.add_parser("list", help="names of the known corpora")
    ls.set_defaults(func=_list)

    sh = sub.add_parser("show", help="size, splits and first paragraphs of a corpus")
    sh.add_argument("name")
    sh.add_argument("--part", default="main")
    sh.add_argument("--data-dir", default=None)
    sh.add_argument("--splits", type=int, default=None, help="also show the sizes of an even cut into N splits")
    sh.add_argument("-n", type=int, default=3, help="paragraphs to print")
    sh.set_defaults(func=_show)

    bf = sub.add_parser("build-facts", help="write the facts corpus (main part) and its KR questions to a folder")
    bf.add_argument("--out", required=True, help="folder for corpus.jsonl and kr.jsonl (e.g. data/facts)")
    bf.add_argument("--seed", type=int, default=0)
    bf.add_argument("--paragraphs", type=int, default=180)
    bf.add_argument("--splits", type=int, default=6)
    bf.add_argument("--max-per-paragraph", type=int, default=5)
    bf.set_defaults(func=_build_facts)


def _list(args: argparse.Namespace) -> int:
    from fortifai_bench.corpora import known_corpora

    for name in known_corpora():
        print(name)
    return 0


def _show(args: argparse.Namespace) -> int:
    from fortifai_bench.corpora import get_corpus

    corpus = get_corpus(args.name, data_dir=args.data_dir, part=args.part)
    words = sum(len(t.split()) for t in corpus.texts())
    print(f"{corpus.name} part {corpus.part}: {len(corpus)} paragraphs, {words} words; source {corpus.source}")
    if args.splits:
        print(f"splits ({args.splits}): " + ", ".join(str(len(s)) for s in corpus.splits(args.splits)))
    for p in corpus.paragraphs[: max(args.n, 0)]:
        print(f"\n[{p.id}] {p.text}")
    return 0


def build_facts_files(out, *, seed: int = 0, paragraphs: int = 180, splits: int = 6,
                      max_per_paragraph: int = 5) -> tuple[Path, Path, dict]:
    """Write `<out>/corpus.jsonl` (the main part) and `<out>/kr.jsonl` (its facts questions).

    Same arguments, same bytes: the shipped `data/facts` files are made by this function with its
    defaults, and a test rebuilds them and compares.
    """
    from fortifai_bench.corpora.facts import FactsConfig, build_facts
    from fortifai_bench.io import write_jsonl
    from fortifai_bench.kr.build import build_questions
    from fortifai_bench.kr.schema import write_questions

    corpus = build_facts(FactsConfig(seed=seed, paragraphs=paragraphs), part="main")
    # Everything is generated before the first byte is written: a bad argument leaves no file.
    questions, report = build_questions(corpus, "facts", splits, max_per_paragraph=max_per_paragraph, seed=seed)
    out = Path(out)
    corpus_path, kr_path = out / "corpus.jsonl", out / "kr.jsonl"
    write_jsonl(corpus_path, ({"id": p.id, "text": p.text, "meta": p.meta} for p in corpus.paragraphs))
    write_questions(kr_path, questions)
    return corpus_path, kr_path, report


def _build_facts(args: argparse.Namespace) -> int:
    if args.out is None:
        raise FortifaiError("corpus build-facts needs --out DIR")
    corpus_path, kr_path, report = build_facts_files(
        args.out, seed=args.seed, paragraphs=args.paragraphs, splits=args.splits,
        max_per_paragraph=args.max_per_paragraph,
    )
    print(f"wrote {corpus_path} ({args.paragraphs} paragraphs) and {kr_path} "
          f"({report['quality']['kept']} questions, {args.splits} splits)")
    return 0
