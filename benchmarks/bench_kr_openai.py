"""Throughput of the openai question generator against a local chat server with a fixed latency.

    python benchmarks/bench_kr_openai.py [--paragraphs 64] [--latency 0.1]

What it shows: how bounded concurrency hides the endpoint's latency (paragraphs/s at concurrency
1, 4, 16, in one run), and what a rerun served from the answer cache costs (no request at all).
The server is tests/chat_server.py (a real HTTP server on 127.0.0.1) that sleeps `--latency`
seconds per answer, standing in for an LLM's response time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chat_server import ChatServer, Reply  # noqa: E402

from fortifai_bench.corpora import Paragraph  # noqa: E402
from fortifai_bench.kr.openai_gen import generate_openai  # noqa: E402


def paragraphs(n: int) -> list[Paragraph]:
    return [Paragraph(id=f"bench/p{i:04d}", text=f"para{i}: The river Alder{i} is {10 + i} km long. "
                      f"Its first bridge was built in 18{i % 100:02d}.", meta={}) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paragraphs", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    args = ap.parse_args()
    paras = paragraphs(args.paragraphs)
    common = dict(llm="bench", api_key="sk-bench", progress=False, timeout=30.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ChatServer(default=Reply(delay=args.latency)) as server:
        for concurrency in (1, 4, 16):
            cache = Path(tmp) / f"c{concurrency}.jsonl"
            t = time.perf_counter()
            questions, stats = generate_openai(paras, base_url=server.url, cache_path=cache,
                                               concurrency=concurrency, **common)
            seconds = time.perf_counter() - t
            assert stats["answered"] == len(paras), stats["errors"]
            if stats["retries"]:
                print(f"concurrency {concurrency}: retried {stats['retried_on']}", file=sys.stderr)
            rows.append((f"fresh, concurrency {concurrency}", seconds, server.max_in_flight))
        before = server.count()
        t = time.perf_counter()
        _, stats = generate_openai(paras, base_url=server.url, cache_path=Path(tmp) / "c16.jsonl",
                                   concurrency=16, **common)
        seconds = time.perf_counter() - t
        assert server.count() == before and stats["cached"] == len(paras)
        rows.append(("rerun from the cache", seconds, 0))

    base = rows[0][1]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
          f"{args.paragraphs} paragraphs, server latency {args.latency:g} s per answer")
    print("| run | seconds | paragraphs/s | speed-up vs concurrency 1 |")
    print("|---|---|---|---|")
    for name, seconds, _ in rows:
        print(f"| {name} | {seconds:.3f} | {len(paras) / seconds:.1f} | {base / seconds:.1f}x |")


if __name__ == "__main__":
    main()
