"""fortifai_bench.toys (being written)."""
