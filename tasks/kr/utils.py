"""lm-eval resolves `!function utils.KRTask` next to the YAML; the code lives in the package."""

from fortifai_bench.kr.lm_eval_tasks import KRFile, KRTask  # noqa: F401
