"""The Knowledge-Retention (KR) test: question schema, generators, scorer and lm-eval glue.

Names are loaded lazily so that `import fortifai_bench.kr` stays cheap (no torch until scoring).
"""

import importlib

_EXPORTS = {
    "Question": "fortifai_bench.kr.schema",
    "read_questions": "fortifai_bench.kr.schema",
    "write_questions": "fortifai_bench.kr.schema",
    "score": "fortifai_bench.kr.scoring",
    "ScoreResult": "fortifai_bench.kr.scoring",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fortifai_bench.kr' has no attribute {name!r}")


__all__ = list(_EXPORTS)
