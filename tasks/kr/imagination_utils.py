"""lm-eval resolves `!function imagination_utils.kr_dataset` next to the YAML; the code lives in the package."""

from fortifai_bench.corpora.imagination import kr_imagination_dataset as kr_dataset  # noqa: F401
