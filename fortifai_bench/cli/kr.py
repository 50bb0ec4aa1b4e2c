"""`fortifai-bench kr build` and `fortifai-bench kr stats`: thin layers over kr.sets, kr.build and kr.stats."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from fortifai_bench.errors import FortifaiError

TOP = 5  # `kr stats` text lists this many sources; --json has them all


def register(subparsers) -> None:
    """Every option's help names its default (explicitly: argparse's ArgumentDefaultsHelpFormatter would
    print "(default: None)" for required options and repeat the switch defaults)."""
    from fortifai_bench.cli.args import add_quiet
    from fortifai_bench.kr.build import GENERATORS
    from fortifai_bench.kr.quality import MAX_DIFF_WORDS

    kr = subparsers.add_parser("kr", help="Knowledge-Retention question sets: build, stats")
    sub = kr.add_subparsers(dest="kr_command", metavar="<kr command>")
    kr.set_defaults(func=lambda args: (kr.print_help(), 2)[1])

    b = sub.add_parser("build", help="generate KR questions for a corpus, one split per paragraph's split")
    b.add_argument("--corpus", required=True,
                   help="facts, wikitext-2-raw-v1, imagination-of-web, text:PATH, jsonl:PATH:FIELD, a corpus an "
                        "installed project declares, or a loader of your own as module:Name (required)")
    b.add_argument("--part", default="main",
                   help="corpus part (facts: main|pretrain; wikitext: main|valid|test) (default: main)")
    b.add_argument("--data-dir", default=None,
                   help="local data folder (default: $FORTIFAI_DATA_DIR, then the Hugging Face Hub)")
    b.add_argument("--generator", required=True, choices=GENERATORS,
                   help="a generator's name, or one of your own as module:Name (required)")
    b.add_argument("--splits", type=int, required=True,
                   help="number of splits N (the collapse protocol's N+1) (required)")
    b.add_argument("--paragraphs-per-split", type=int, default=None,
                   help="split k = paragraphs kP..(k+1)P-1, as the collapse protocol cuts "
                        "(default: the whole part, cut evenly)")
    b.add_argument("--out", required=True, help="output JSON Lines file, written atomically (required)")
    b.add_argument("--max-per-paragraph", type=int, default=5, help="questions per paragraph at most (default: 5)")
    b.add_argument("--seed", type=int, default=0, help="seed of the generator's choices (facts, rules) (default: 0)")
    b.add_argument("--max-diff-words", type=int, default=None,
                   help=f"quality filter: longest differing span in words (default: {MAX_DIFF_WORDS})")
    add_quiet(b)
    g = b.add_argument_group("openai generator")
    g.add_argument("--llm", help="model name at the endpoint (required with --generator openai)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI); "
                                      "key from $OPENAI_API_KEY")
    g.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: 4)")
    g.add_argument("--cache", default=None, help="answer cache file (default: in the user cache)")
    g.add_argument("--allow-failures", action="store_true",
                   help="leave out paragraphs that still fail after retries (default: fail)")
    b.set_defaults(func=_build)

    s = sub.add_parser("stats", help="counts per split, generator and source, chance level, duplicates and what the "
                                     "quality rules say of a question file (JSON Lines or the authors' JSON list)")
    s.add_argument("file", help="question file")
    s.add_argument("--max-diff-words", type=int, default=None,
                   help=f"quality rule long_diff: longest differing span in words (default: {MAX_DIFF_WORDS})")
    s.add_argument("--tokenizer", default=None,
                   help="a Hugging Face tokenizer (model folder or name): the length bias in its tokens too "
                        "(default: characters only)")
    s.add_argument("--json", action="store_true", help="print one JSON object, the full breakdown (default: text)")
    s.set_defaults(func=_stats)


def _build(args: argparse.Namespace) -> int:
    from fortifai_bench.kr.schema import write_questions

    if args.generator == "openai":
        questions, quality, corpus_text = _build_openai(args)
    else:
        from fortifai_bench.kr.sets import kr_set

        kr = kr_set(args.corpus, args.part, args.splits, paragraphs_per_split=args.paragraphs_per_split,
                    generator=args.generator, data_dir=args.data_dir, max_per_paragraph=args.max_per_paragraph,
                    seed=args.seed, max_diff_words=args.max_diff_words, use_shipped=False)
        questions, quality = kr.questions, kr.provenance["quality"]
        used = kr.bounds[-1][1]
        corpus_text = f"{kr.provenance['corpus']}:{kr.provenance['part']}, {used} paragraphs"
    n = write_questions(args.out, questions)
    per_split = Counter(x.split for x in questions)
    dropped = f"; quality filter dropped {quality['total'] - quality['kept']} of {quality['total']}" if quality else ""
    print(f"wrote {n} questions to {args.out} ({corpus_text}, {args.splits} splits: "
          f"{', '.join(str(per_split[k]) for k in range(args.splits))}){dropped}")
    return 0


def _build_openai(args: argparse.Namespace):
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.build import build_questions
    from fortifai_bench.kr.sets import cut

    if not args.llm:
        raise FortifaiError("kr build --generator openai needs --llm MODEL")
    openai_args = {"llm": args.llm, "base_url": args.base_url, "concurrency": args.concurrency,
                   "cache_path": args.cache, "allow_failures": args.allow_failures,
                   "api_key": os.environ.get("OPENAI_API_KEY")}
    corpus = cut(get_corpus(args.corpus, data_dir=args.data_dir, part=args.part), args.splits,
                 args.paragraphs_per_split)
    questions, report = build_questions(
        corpus, "openai", args.splits, max_per_paragraph=args.max_per_paragraph, seed=args.seed,
        max_diff_words=args.max_diff_words, openai_args=openai_args,
        progress=sys.stderr.isatty() and not args.quiet,
    )
    return questions, report["quality"], f"{corpus.name}:{corpus.part}, {len(corpus)} paragraphs"


def summarize_counts(counts: dict, top: int = TOP, label=str) -> str:
    """`a: 5, b: 3, c: 2` for a few keys; `610 distinct; largest: a 5, b 3, ... (--json for all)` for many."""
    if len(counts) <= top + 1:
        return ", ".join(f"{label(k)}: {v}" for k, v in counts.items())
    largest = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]
    values = sorted(counts.values())
    return (f"{len(counts)} distinct, {values[0]}..{values[-1]} each; largest: "
            + ", ".join(f"{label(k)} {v}" for k, v in largest) + " (--json for all)")


def _stats(args: argparse.Namespace) -> int:
    from fortifai_bench.kr.quality import format_length_bias, format_quality
    from fortifai_bench.kr.schema import Duplicates, read_questions
    from fortifai_bench.kr.stats import stats

    questions = read_questions(args.file, check=False)  # stats reports unscorable items, so it reads them
    s = stats(questions, args.max_diff_words, _load_tokenizer(args.tokenizer) if args.tokenizer else None)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    split_label = lambda k: "unassigned" if k == -1 else str(k)  # noqa: E731
    d = s["duplicates"]
    what = f"{d['items']} items ({d['distinct']} distinct questions)" if d["copies"] else f"{s['questions']} questions"
    print(f"{args.file}: {what} from {s['paragraphs']} paragraphs")
    print("per split:     " + summarize_counts(s["by_split"], label=split_label))
    print("per generator: " + summarize_counts(s["by_generator"]))
    print("per source:    " + summarize_counts(s["by_source"]))
    print("mean words:    " + ", ".join(f"{k} {v}" for k, v in s["mean_words"].items()))
    print(format_length_bias(s["length_bias"]))
    print("duplicates:    " + Duplicates(**{k: s["duplicates"][k] for k in ("items", "distinct", "repeated")}).format())
    print(format_quality(s["quality"]))
    return 0


def _load_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # not found, offline, not a tokenizer: say which and stop
        raise FortifaiError(f"kr stats --tokenizer {name}: cannot load a tokenizer ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
