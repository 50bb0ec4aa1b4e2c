"""The layers of the OpenAI-compatible KR question generator (`fortifai_bench.kr.openai_gen`).

- `prompt`: what is asked (the paper's Appendix B instruction) and the cache key of an answer;
- `parse`:  an answer's text -> valid (context, true, false) triples, malformed parts counted;
- `cache`:  the append-only log of raw answers (a rerun or a crash never pays twice);
- `client`: the asyncio requests, bounded concurrency, the SDK's retries counted per paragraph.

`openai_gen.generate_openai` composes them; its names stay importable from `openai_gen`.
"""
