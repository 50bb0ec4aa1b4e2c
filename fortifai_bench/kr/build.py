"""Build a KR question set for a corpus: generate, filter, assign splits (`fortifai-bench kr build`)."""

from __future__ import annotations

from fortifai_bench.errors import FortifaiError

GENERATORS = ("facts", "rules", "openai")


def build_questions(corpus, generator: str, n_splits: int, *, max_per_paragraph: int = 5, seed: int = 0,
                    max_diff_words: int | None = None, source: str | None = None, openai_args: dict | None = None,
                    progress: bool = False):
    """(questions, report) for `corpus`: every question carries its paragraph's split under the even
    cut into `n_splits` (`corpus.split_of`). The quality filter runs before anything is returned;
    `report` = {"generator", "corpus", "splits", "quality": {...}, "openai": usage stats or absent}.
    `openai_args` go to `fortifai_bench.kr.openai_gen.generate_openai` (llm, base_url, concurrency, ...).
    """
    from fortifai_bench.kr.quality import MAX_DIFF_WORDS, filter_questions
    from fortifai_bench.kr.schema import assign_splits

    if generator not in GENERATORS:
        raise FortifaiError(f"unknown KR generator {generator!r}; known: {', '.join(GENERATORS)}")
    split_of = corpus.split_of(n_splits)  # checks n_splits against the corpus first: fail before paying
    source = source or f"{corpus.name}:{corpus.part}"
    report = {"generator": generator, "corpus": corpus.name, "part": corpus.part, "splits": n_splits}
    if generator == "facts":
        from fortifai_bench.kr.facts_gen import generate_facts

        questions = generate_facts(corpus, n_splits, max_per_paragraph=max_per_paragraph, seed=seed, source=source)
    elif generator == "rules":
        from fortifai_bench.kr.rules import generate_rules

        questions = generate_rules(corpus, max_per_paragraph=max_per_paragraph, seed=seed, source=source)
    else:
        from fortifai_bench.kr.openai_gen import generate_openai  # optional dependency: imported on use

        questions, usage = generate_openai(list(corpus.paragraphs), source=source, progress=progress,
                                           **(openai_args or {}))
        report["openai"] = usage
    if generator != "facts":  # the facts generator caps facts per paragraph itself (several questions each)
        questions = _cap_per_paragraph(questions, max_per_paragraph)
    questions = assign_splits(questions, split_of)
    kept, quality = filter_questions(questions, max_diff_words if max_diff_words is not None else MAX_DIFF_WORDS)
    report["quality"] = quality.to_dict()
    if not kept:
        raise FortifaiError(f"{generator} generator made no usable questions from {corpus.name} ({corpus.source}); "
                            f"{quality.format().splitlines()[0]}")
    return kept, report


def _cap_per_paragraph(questions, limit: int):
    if limit < 1:
        raise FortifaiError(f"max_per_paragraph must be >= 1, got {limit}")
    count, out = {}, []
    for q in questions:
        count[q.paragraph] = count.get(q.paragraph, 0) + 1
        if count[q.paragraph] <= limit:
            out.append(q)
    return out
