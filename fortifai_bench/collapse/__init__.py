"""fortifai_bench.collapse (being written)."""
