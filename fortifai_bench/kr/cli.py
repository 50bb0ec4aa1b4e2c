"""`fortifai-bench kr build` and `fortifai-bench kr stats`: thin layers over kr.build and kr.quality."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from fortifai_bench.errors import FortifaiError


def register(subparsers) -> None:
    kr = subparsers.add_parser("kr", help="Knowledge-Retention question sets: build, stats")
    sub = kr.add_subparsers(dest="kr_command", metavar="<kr command>")
    kr.set_defaults(func=lambda args: (kr.print_help(), 2)[1])

    b = sub.add_parser("build", help="generate KR questions for a corpus, one split per paragraph's split")
    b.add_argument("--corpus", required=True, help="facts, wikitext-2-raw-v1, text:PATH, jsonl:PATH:FIELD, ...")
    b.add_argument("--part", default="main", help="corpus part (facts: main|pretrain; wikitext: main|valid|test)")
    b.add_argument("--data-dir", default=None, help="local data folder (default: $FORTIFAI_DATA_DIR, then the hub)")
    b.add_argument("--generator", required=True, choices=("facts", "rules", "openai"))
    b.add_argument("--splits", type=int, required=True, help="number of splits N (the collapse protocol's N+1)")
    b.add_argument("--out", required=True, help="output JSON Lines file (written atomically)")
    b.add_argument("--max-per-paragraph", type=int, default=5)
    b.add_argument("--seed", type=int, default=0, help="seed of the generator's choices (facts, rules)")
    b.add_argument("--max-diff-words", type=int, default=None, help="quality filter: longest differing span")
    g = b.add_argument_group("openai generator")
    g.add_argument("--llm", help="model name at the endpoint")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or OpenAI); key from $OPENAI_API_KEY")
    g.add_argument("--concurrency", type=int, default=4)
    g.add_argument("--cache", default=None, help="answer cache file (default: in the user cache)")
    g.add_argument("--allow-failures", action="store_true", help="leave out paragraphs that still fail after retries")
    b.set_defaults(func=_build)

    s = sub.add_parser("stats", help="counts per split and generator, and the quality report, of a question file")
    s.add_argument("file")
    s.add_argument("--max-diff-words", type=int, default=None)
    s.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    s.set_defaults(func=_stats)


def _build(args: argparse.Namespace) -> int:
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.build import build_questions
    from fortifai_bench.kr.schema import write_questions

    openai_args = None
    if args.generator == "openai":
        if not args.llm:
            raise FortifaiError("kr build --generator openai needs --llm MODEL")
        openai_args = {"llm": args.llm, "base_url": args.base_url, "concurrency": args.concurrency,
                       "cache_path": args.cache, "allow_failures": args.allow_failures,
                       "api_key": os.environ.get("OPENAI_API_KEY")}
    corpus = get_corpus(args.corpus, data_dir=args.data_dir, part=args.part)
    questions, report = build_questions(
        corpus, args.generator, args.splits, max_per_paragraph=args.max_per_paragraph, seed=args.seed,
        max_diff_words=args.max_diff_words, openai_args=openai_args, progress=sys.stderr.isatty(),
    )
    n = write_questions(args.out, questions)
    q = report["quality"]
    per_split = Counter(x.split for x in questions)
    print(f"wrote {n} questions to {args.out} ({corpus.name}:{corpus.part}, {len(corpus)} paragraphs, "
          f"{args.splits} splits: {', '.join(str(per_split[k]) for k in range(args.splits))}); "
          f"quality filter dropped {q['total'] - q['kept']} of {q['total']}")
    return 0


def stats(questions, max_diff_words: int | None = None) -> dict:
    """Counts per split, generator and source, mean word lengths, and the quality report."""
    from fortifai_bench.kr.quality import MAX_DIFF_WORDS, filter_questions

    _, report = filter_questions(questions, MAX_DIFF_WORDS if max_diff_words is None else max_diff_words)
    n = len(questions)
    return {
        "questions": n,
        "paragraphs": len({(q.source, q.paragraph) for q in questions}),
        "by_split": dict(sorted(Counter(q.split for q in questions).items())),
        "by_generator": dict(sorted(Counter(q.generator for q in questions).items())),
        "by_source": dict(sorted(Counter(q.source for q in questions).items())),
        "mean_words": {k: round(sum(len(getattr(q, k).split()) for q in questions) / n, 2)
                       for k in ("context", "true", "false")},
        "quality": report.to_dict(),
    }


def _stats(args: argparse.Namespace) -> int:
    from fortifai_bench.kr.quality import QualityReport
    from fortifai_bench.kr.schema import read_questions

    questions = read_questions(args.file, check=False)  # stats reports unscorable items, so it reads them
    s = stats(questions, args.max_diff_words)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{args.file}: {s['questions']} questions from {s['paragraphs']} paragraphs")
    print("per split:     " + ", ".join(f"{'unassigned' if k == -1 else k}: {v}" for k, v in s["by_split"].items()))
    print("per generator: " + ", ".join(f"{k}: {v}" for k, v in s["by_generator"].items()))
    print("per source:    " + ", ".join(f"{k}: {v}" for k, v in s["by_source"].items()))
    print("mean words:    " + ", ".join(f"{k} {v}" for k, v in s["mean_words"].items()))
    q = s["quality"]
    report = QualityReport(total=q["total"], kept=q["kept"], dropped=Counter(q["dropped"]), examples=q["examples"])
    print(report.format())
    return 0
