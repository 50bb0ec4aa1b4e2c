"""fortifai_bench.corpora (being written)."""
