"""What a model forgets, by what its training text said: KR questions against the rewrite each stage trained on.

For every finished run of a sweep (`benchmarks/collapse_regimes.py`'s layout), every split-0 question that M_0
answered correctly, and every stage i >= 1: the rewrite of the question's paragraph that M_i trained on (D_0^(i),
written by M_{i-1}: `RUN/stage_{i-1}/data/split_0.jsonl`; the control trains on the real paragraph instead, so
for it the rewrite is only what its model would have written) is put in one of three classes by the fact the
question asks about: the true phrase stated (the words where the true and false continuations differ, with
`--context` words either side, found verbatim in the rewrite), the false phrase stated, or neither (the fact
dropped or reworded). Then the share of questions M_i still answers correctly, per arm and class, over seeds
and stages (`--within`: only questions found in both the kept and the dropped class). A phrase, not a word: the rules generator draws false values from the corpus, so a false word alone
is often found elsewhere in the same paragraph ("European lobster" beside the false "European").

    python benchmarks/smol_lost_facts.py --out runs/regimes_v3 --regime wikitext_smol --arms ce,tce:0.9,control
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collapse_regimes import finished_run_dir  # noqa: E402  (the sweep's layout, one definition)

CLASSES = ("true phrase stated", "false phrase stated", "neither")


def phrases(question: dict, context: int) -> tuple[list[str], list[str]]:
    """The true and the false continuation's differing words, with `context` words either side."""
    t, f = question["true"].split(), question["false"].split()
    ops = [o for o in difflib.SequenceMatcher(a=t, b=f, autojunk=False).get_opcodes() if o[0] != "equal"]
    a0, a1 = min(o[1] for o in ops), max(o[2] for o in ops)
    b0, b1 = min(o[3] for o in ops), max(o[4] for o in ops)
    return t[max(0, a0 - context): a1 + context], f[max(0, b0 - context): b1 + context]


def states(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(words[k: k + n] == phrase for k in range(len(words) - n + 1))


def paragraph_of(item_id: str) -> str:
    """A question's paragraph id (".../p00/q1" -> ".../p00"), which is its rewritten row's id."""
    return item_id.rsplit("/", 1)[0]


def run_outcomes(run: Path, context: int) -> dict[str, list[tuple[str, bool]]]:
    """class -> (question id, whether M_i answered it correctly), over the questions M_0 answered and stages 1..
    of one run."""
    results = json.loads((run / "results.json").read_text())
    questions = [q for q in map(json.loads, open(results["kr_source"])) if q["split"] == 0]  # the bits' order
    bits = results["items"]["split0_correct"]
    out: dict[str, list[tuple[str, bool]]] = {c: [] for c in CLASSES}
    for i in range(1, len(bits)):
        rows = map(json.loads, open(run / f"stage_{i - 1}" / "data" / "split_0.jsonl"))
        text = {row["id"]: row["text"].split() for row in rows}
        for q, now, first in zip(questions, bits[i], bits[0]):
            if first != "1":
                continue
            true, false = phrases(q, context)
            words = text[paragraph_of(q["id"])]
            cls = CLASSES[0] if states(words, true) else CLASSES[1] if states(words, false) else CLASSES[2]
            out[cls].append((q["id"], now == "1"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/regimes", help="the sweep's folder (collapse_regimes.py --out)")
    p.add_argument("--regime", default="wikitext_smol")
    p.add_argument("--arms", default="ce,tce:0.9,control", help="losses, and control for the clean control")
    p.add_argument("--seeds", default="0-9", help="the seeds to read where finished")
    p.add_argument("--context", type=int, default=1, help="words of context either side of a fact's value")
    p.add_argument("--within", action="store_true",
                   help="only the questions whose fact some rewrite kept and another dropped (same arm): each "
                        "question compared with itself, so easy facts that survive do not flatter the kept class")
    args = p.parse_args(argv)
    from fortifai_bench.seeds import parse_seeds

    print(f"{args.regime}: split-0 questions M_0 answered, stages 1.., by what the rewrite M_i trained on states "
          f"(phrases with {args.context} word(s) of context): share M_i still answers correctly (questions)")
    print("| arm | seeds | " + " | ".join(CLASSES) + " |")
    print("| --- | --- | " + " | ".join(["---:"] * len(CLASSES)) + " |")
    for arm in args.arms.split(","):
        total: dict[str, list[tuple[str, bool]]] = {c: [] for c in CLASSES}
        seeds = []
        for seed in parse_seeds(args.seeds):
            run = finished_run_dir(Path(args.out), args.regime, arm, seed)
            if run is not None:
                seeds.append(seed)
                for c, v in run_outcomes(run, args.context).items():
                    total[c] += v
        if args.within:  # only questions seen both kept and dropped: each question its own control
            both = {q for q, _ in total[CLASSES[0]]} & {q for q, _ in total[CLASSES[2]]}
            total = {c: [(q, ok) for q, ok in v if q in both] for c, v in total.items()}
        cells = [f"{sum(ok for _, ok in v) / len(v):.3f} ({len(v)})" if v else "-" for v in total.values()]
        print(f"| {arm} | {','.join(map(str, seeds)) or '-'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
