"""KR questions written by an LLM behind any OpenAI-compatible chat-completions endpoint.

The paper (Appendix B) asked an LLM, for each paragraph of the training text, for up to five
questions: a short context taken from the paragraph, its true continuation, and a false
continuation almost identical to the true one except in a key fact, answered in JSON.

What this module adds around that one call, because a corpus has thousands of paragraphs and
each answer costs money (each in a layer of its own under `fortifai_bench.kr.llm`):

- bounded concurrency (an asyncio semaphore around each paragraph, retries included; `llm.client`);
- the openai SDK's own retries (`max_retries`: 408/409/429/5xx, timeouts and connection errors, its
  backoff with jitter, `Retry-After` honoured), each attempt counted by kind and bounded by a deadline
  on the whole attempt, so a server that never answers cannot hang us (`llm.client`);
- a persistent cache (`llm.cache`): one JSON line per answered paragraph, keyed by sha256(prompt
  version, model, paragraph text), appended and fsynced as each answer arrives. The RAW answer is
  stored and parsed on every read (`llm.parse`), so a rerun or a crash never pays twice, and a
  better parser never needs to pay again either. A torn last line (a crash mid-write) is dropped
  and repaired;
- malformed answers and questions skipped and counted by reason;
- token usage summed over the answers paid for in this run.

This module is the generator itself; the layers' public names stay importable from here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Sequence

from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.llm.cache import AnswerCache, default_cache_path
from fortifai_bench.kr.llm.client import Outcome, ask, ask_all, completion_parts, run_coroutine
from fortifai_bench.kr.llm.parse import Parsed, parse_answer
from fortifai_bench.kr.llm.prompt import (MAX_QUESTIONS, PROMPT_VERSION, SYSTEM_PROMPT, USER_PROMPT, build_messages,
                                          cache_key, generator_name)
from fortifai_bench.kr.schema import Question

__all__ = [
    "generate_openai", "parse_answer", "Parsed", "AnswerCache", "default_cache_path", "PROMPT_VERSION", "MAX_QUESTIONS", "SYSTEM_PROMPT", "USER_PROMPT",
    "build_messages", "cache_key", "generator_name", "ask", "ask_all", "Outcome", "completion_parts",
]


def _new_stats(llm: str, cache_path: Path) -> dict:
    return {
        "generator": generator_name(llm),
        "cache": str(cache_path),
        "paragraphs": 0,
        "duplicate_paragraphs": 0,  # same text as an earlier paragraph: asked once, questioned once
        "cached": 0,  # answered from the cache, no request
        "answered": 0,  # answered by the endpoint in this run
        "failed": 0,
        "requests": 0,  # HTTP attempts, retries included
        "retries": 0,
        "retried_on": {},  # attempts that failed and were retried (or given up on), by kind: "HTTP 429", "timeout", ...
        "questions": 0,
        "malformed": 0,
        "malformed_by_reason": {},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},  # paid in this run
        "usage_from_cache": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},  # not paid again
        "cache_lines_ignored": 0,  # unreadable lines of the cache (a torn last line after a crash)
        "errors": [],  # one line per failed paragraph (the first 10)
        "seconds": 0.0,
    }


def _summary_line(stats: dict) -> str:
    u = stats["usage"]
    return (
        f"openai questions ({stats['generator']}): {stats['questions']} questions from "
        f"{stats['paragraphs']} paragraphs ({stats['cached']} cached, {stats['answered']} answered, "
        f"{stats['failed']} failed); {stats['requests']} requests, {stats['retries']} retries; "
        f"{stats['malformed']} malformed skipped; tokens: {u['prompt_tokens']} prompt + "
        f"{u['completion_tokens']} completion = {u['total_tokens']} total"
    )


def generate_openai(
    paragraphs: Sequence,
    *,
    llm: str,
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int = 4,
    cache_path: str | os.PathLike | None = None,
    max_retries: int = 6,
    timeout: float = 60.0,
    progress: bool = True,
    source: str = "",
    allow_failures: bool = False,
) -> tuple[list, dict]:
    """Up to five KR questions per paragraph from an OpenAI-compatible chat endpoint.

    `paragraphs`: objects with `.id` and `.text` (corpora's `Paragraph`); a question's `paragraph`
    is its paragraph's position in this sequence, so pass the whole corpus. Questions get ids
    `<paragraph id>/q<k>` and split -1 (the caller assigns splits). `api_key` defaults to
    $OPENAI_API_KEY; `base_url` to the client's default ($OPENAI_BASE_URL or api.openai.com).
    `cache_path` defaults to a file in the user's cache. A paragraph that still fails after
    `max_retries` is an error (FortifaiError, after the answers in flight are cached) unless
    `allow_failures`, when it is counted and left out. `progress` shows a bar; one summary line
    (counts, malformed, tokens) goes to stderr in any case. Returns (questions, stats).
    """
    if not llm:
        raise FortifaiError("openai generator: no model given (--llm)")
    if concurrency < 1:
        raise FortifaiError(f"openai generator: concurrency must be >= 1, got {concurrency}")
    if max_retries < 0:
        raise FortifaiError(f"openai generator: max_retries must be >= 0, got {max_retries}")
    if not timeout > 0:
        raise FortifaiError(f"openai generator: timeout must be > 0 seconds, got {timeout}")
    paragraphs = list(paragraphs)  # walked twice
    api_key = api_key or os.environ.get("OPENAI_API_KEY")
    cache_path = Path(cache_path) if cache_path is not None else default_cache_path()
    cache = AnswerCache(cache_path)
    stats = _new_stats(llm, cache_path)
    stats["cache_lines_ignored"] = cache.bad_lines
    started = time.monotonic()

    # Which paragraphs need asking: one request per distinct text not in the cache yet.
    keys, todo, first_of_key = [], [], {}
    for index, paragraph in enumerate(paragraphs):
        key = cache_key(llm, paragraph.text)
        keys.append(key)
        if key in first_of_key:
            stats["duplicate_paragraphs"] += 1
            continue
        first_of_key[key] = index
        if cache.get(key) is None:
            todo.append((key, paragraph.id, paragraph.text))
    stats["paragraphs"] = len(keys)
    cached_before = set(first_of_key) - {key for key, _, _ in todo}
    stats["cached"] = len(first_of_key) - len(todo)

    if todo:
        if not api_key:
            raise FortifaiError(
                f"openai generator: no API key for {len(todo)} uncached paragraph(s): set OPENAI_API_KEY "
                "(any non-empty value for a local server that checks none)"
            )
        client_kwargs = {"api_key": api_key, "base_url": base_url, "max_retries": max_retries, "timeout": timeout}
        fatal = run_coroutine(
            ask_all(todo, llm=llm, client_kwargs=client_kwargs, concurrency=concurrency,
                     cache=cache, stats=stats, allow_failures=allow_failures, progress=progress)
        )
        where = base_url or os.environ.get("OPENAI_BASE_URL") or "the default OpenAI endpoint"
        failed = stats["failed"] and (not allow_failures or stats["answered"] + stats["cached"] == 0)
        if fatal or failed:
            stats["seconds"] = round(time.monotonic() - started, 3)
            print(_summary_line(stats), file=sys.stderr)  # what was paid for, even when the run fails
        if fatal:
            raise FortifaiError(f"openai generator: {where} {fatal[0]}")
        if failed:
            raise FortifaiError(
                f"openai generator: {stats['failed']} paragraph(s) failed at {where} "
                f"({stats['errors'][0]}); {stats['answered']} answer(s) this run are kept in {cache_path}, "
                "so a rerun asks only for the rest"
            )

    questions = []
    for index, paragraph in enumerate(paragraphs):
        if first_of_key[keys[index]] != index:
            continue
        record = cache.get(keys[index])
        if record is None:  # failed, and allow_failures
            continue
        if keys[index] in cached_before:
            for k, v in (record.get("usage") or {}).items():
                if k in stats["usage_from_cache"]:
                    stats["usage_from_cache"][k] += int(v or 0)
        parsed = parse_answer(record.get("content"))
        for reason, n in parsed.skipped.items():
            stats["malformed_by_reason"][reason] = stats["malformed_by_reason"].get(reason, 0) + n
            stats["malformed"] += n
        for k, (context, true, false) in enumerate(parsed.items):
            questions.append(
                Question(id=f"{paragraph.id}/q{k}", split=-1, paragraph=index, context=context, true=true,
                         false=false, generator=stats["generator"], source=source)
            )
    stats["questions"] = len(questions)
    stats["seconds"] = round(time.monotonic() - started, 3)
    # Always, progress bar or not: this line is what the run cost.
    print(_summary_line(stats), file=sys.stderr)
    return questions, stats
