"""What `fortifai-bench kr stats` reports of a question file, as data (the CLI prints it, or dumps it as JSON)."""

from __future__ import annotations

from collections import Counter

from fortifai_bench.kr.quality import MAX_DIFF_WORDS, describe_quality, length_bias
from fortifai_bench.kr.schema import find_duplicates


def stats(questions, max_diff_words: int | None = None, tokenizer=None) -> dict:
    """Counts per split, generator and source, mean word lengths, the length bias (the chance level, over the
    distinct questions, as kr_file scores them by default), the duplicate report (items, distinct questions, the
    repeated ones and their share) and what the quality rules of `kr build` say about the distinct questions: a
    description (kr_file scores them all), not a filter."""
    distinct, duplicates = find_duplicates(questions)
    n = len(questions)
    return {
        "questions": n,
        "paragraphs": len({(q.source, q.paragraph) for q in questions}),
        "by_split": dict(sorted(Counter(q.split for q in questions).items())),
        "by_generator": dict(sorted(Counter(q.generator for q in questions).items())),
        "by_source": dict(sorted(Counter(q.source for q in questions).items())),
        "mean_words": {k: round(sum(len(getattr(q, k).split()) for q in questions) / n, 2)
                       for k in ("context", "true", "false")},
        # The chance level of what kr_file scores (each distinct question once, its default), so that a file
        # with repeats has one chance level: counted over items, a question repeated 492 times would weigh 492.
        "length_bias": length_bias(distinct, tokenizer),
        "duplicates": duplicates.to_dict(),
        "quality": describe_quality(distinct, MAX_DIFF_WORDS if max_diff_words is None else max_diff_words),
    }
