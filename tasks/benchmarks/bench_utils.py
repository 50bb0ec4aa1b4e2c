"""lm-eval resolves `!function bench_utils.<name>` next to the YAML; the readers live in the package."""

from fortifai_bench.local_benchmarks import blimp_dataset, gsm8k_dataset, hellaswag_dataset  # noqa: F401
