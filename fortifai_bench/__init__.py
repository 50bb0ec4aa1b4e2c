"""fortifai-bench: a benchmark suite for model collapse (ForTIFAI, Shabgahi et al. 2025)."""

__version__ = "0.1.0"

from fortifai_bench.errors import FortifaiError  # noqa: E402,F401
