"""`fortifai-bench corpus list | show | build-facts`: thin layers over the corpus registry."""

from __future__ import annotations

import argparse

from fortifai_bench.errors import FortifaiError


def register(subparsers) -> None:
    from fortifai_bench.corpora.facts import PRESETS  # the facts corpora build-facts writes (no numpy needed)

    c = subparsers.add_parser("corpus", help="corpora: list, show, build the shipped facts data")
    sub = c.add_subparsers(dest="corpus_command", metavar="<corpus command>")
    c.set_defaults(func=lambda args: (c.print_help(), 2)[1])

    ls = sub.add_parser("list", help="names of the known corpora")
    ls.set_defaults(func=_list)

    sh = sub.add_parser("show", help="size, splits and first paragraphs of a corpus")
    sh.add_argument("name")
    sh.add_argument("--part", default="main", help="part of the corpus (default: main)")
    sh.add_argument("--data-dir", default=None,
                    help="local data folder (default: FORTIFAI_DATA_DIR, else the Hugging Face Hub)")
    sh.add_argument("--splits", type=int, default=None,
                    help="also show the sizes of an even cut into N splits (default: none)")
    sh.add_argument("-n", type=int, default=3, help="paragraphs to print (default: 3)")
    sh.set_defaults(func=_show)

    bf = sub.add_parser("build-facts", help="write the facts corpus (main part) and its KR questions to a folder")
    bf.add_argument("--out", required=True, help="folder for corpus.jsonl and kr.jsonl (e.g. data/facts)")
    bf.add_argument("--corpus", default="facts", choices=tuple(PRESETS),
                    help="facts, facts-longtail (skewed categorical values, tagged questions) or facts-longtail-450 "
                         "(75 paragraphs per split, tail share 0.5) (default: facts)")
    bf.add_argument("--seed", type=int, default=0, help="generator seed (default: 0, the shipped data)")
    bf.add_argument("--paragraphs", type=int, default=None,
                    help="paragraphs of the main part (default: the corpus's own, 180 or 450)")
    bf.add_argument("--splits", type=int, default=6, help="splits the questions are assigned to (default: 6)")
    bf.add_argument("--max-per-paragraph", type=int, default=5,
                    help="facts asked about per paragraph, three questions each (default: 5)")
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


def _build_facts(args: argparse.Namespace) -> int:
    if args.out is None:
        raise FortifaiError("corpus build-facts needs --out DIR")
    from fortifai_bench.kr.build import build_facts_files

    corpus_path, kr_path, report = build_facts_files(
        args.out, corpus=args.corpus, seed=args.seed, paragraphs=args.paragraphs, splits=args.splits,
        max_per_paragraph=args.max_per_paragraph,
    )
    paragraphs = sum(1 for _ in open(corpus_path, encoding="utf-8"))
    print(f"wrote {corpus_path} ({paragraphs} paragraphs) and {kr_path} "
          f"({report['quality']['kept']} questions, {args.splits} splits)")
    return 0
