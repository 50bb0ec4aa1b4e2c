"""lm-eval resolves `!function utils.kr_dataset` next to the YAML; the code lives in the package."""

from fortifai_bench.kr.lm_eval_tasks import kr_dataset  # noqa: F401
