"""KR questions written by an LLM behind any OpenAI-compatible chat-completions endpoint.

The paper (Appendix B) asked an LLM, for each paragraph of the training text, for up to five
questions: a short context taken from the paragraph, its true continuation, and a false
continuation almost identical to the true one except in a key fact, answered in JSON.

What this module adds around that one call, because a corpus has thousands of paragraphs and
each answer costs money:

- bounded concurrency (an asyncio semaphore around each paragraph, retries included);
- our own retry policy (the client's retries are off, so the policy is explicit and testable):
  exponential backoff with full jitter on 408/409/429/5xx, timeouts and connection errors,
  honouring `Retry-After`; a whole-request deadline, so a server that never answers cannot hang us;
- a persistent cache: one JSON line per answered paragraph, keyed by sha256(prompt version,
  model, paragraph text), appended and fsynced as each answer arrives. The RAW answer is stored
  and parsed on every read, so a rerun or a crash never pays twice, and a better parser never
  needs to pay again either. A torn last line (a crash mid-write) is dropped and repaired;
- malformed answers and questions skipped and counted by reason;
- token usage summed over the answers paid for in this run.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fortifai_bench.errors import FortifaiError

PROMPT_VERSION = 1
MAX_QUESTIONS = 5  # the paper's number per paragraph

SYSTEM_PROMPT = (
    "You write test questions that check whether a language model remembers the facts of a text "
    "it was trained on. You answer with JSON only."
)

# The paper's instruction (Appendix B), restated. Changing it changes what the cache means:
# bump PROMPT_VERSION with it, so old answers are not reused for a new prompt.
USER_PROMPT = """Read the paragraph below and write up to 5 questions about facts it states.
Each question has three parts:
- "context": a short passage copied from the paragraph (a few words up to one sentence) that leads up to a fact;
- "true": the words that follow the context in the paragraph and complete the fact correctly;
- "false": the true continuation with only its key fact changed (a name, number, date, place or relation), otherwise word for word the same, and still fluent and plausible.
The context, a space and the true continuation must read as the paragraph does. Ask only about facts the paragraph states.
Answer with a JSON object and nothing else, in this form:
{{"questions": [{{"context": "...", "true": "...", "false": "..."}}]}}

Paragraph:
<<<
{text}
>>>"""

RETRY_AFTER_CAP = 300.0  # seconds; a longer Retry-After is an outage, not a rate limit
# Status codes worth another try: timeout, conflict, rate limit, server errors.
_RETRY_STATUS = {408, 409, 429}
# Status codes that mean the whole run is misconfigured (key, permission, model or URL).
_FATAL_STATUS = {401, 403, 404}


def generator_name(llm: str) -> str:
    return f"openai:{llm}@{PROMPT_VERSION}"


def cache_key(llm: str, text: str) -> str:
    payload = json.dumps([PROMPT_VERSION, llm, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def build_messages(text: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(text=text)},
    ]


# ----------------------------------------------------------------------------------------------
# Parsing an answer
# ----------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.S)
_ALIASES = {"true": ("true", "sentence_true"), "false": ("false", "sentence_false")}


@dataclass
class Parsed:
    """The valid (context, true, false) triples of one answer, and what was skipped and why."""

    items: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def _loads_lenient(content: str) -> Any:
    """JSON, tolerating the markdown fence and the chatter around it that chat models add."""
    text = content.strip()
    match = _FENCE.match(text)
    if match:
        text = match.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            return json.loads(text[start : end + 1])
        raise


def _field(obj: dict, name: str) -> Any:
    for key in _ALIASES.get(name, (name,)):
        if key in obj:
            return obj[key]
    return None


def parse_answer(content: str | None) -> Parsed:
    """Valid triples from an answer; malformed parts are counted under `skipped`, never raised."""
    out = Parsed()
    if content is None or not content.strip():
        out.skip("empty_answer")
        return out
    try:
        data = _loads_lenient(content)
    except json.JSONDecodeError:
        out.skip("not_json")
        return out
    # {"questions": [...]} as asked; a bare list (the authors' file format) is accepted too.
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        out.skip("wrong_shape")
        return out
    seen = set()
    for item in items:
        if not isinstance(item, dict):
            out.skip("wrong_shape")
            continue
        values = [_field(item, k) for k in ("context", "true", "false")]
        if not all(isinstance(v, str) for v in values):
            out.skip("wrong_shape")
            continue
        # Stored without a leading space: scoring inserts the delimiter (contract 2).
        context, true, false = (" ".join(v.split()) for v in values)
        if not (context and true and false):
            out.skip("empty_field")
        elif true == false:
            out.skip("true_equals_false")
        elif (context, true, false) in seen:
            out.skip("duplicate")
        elif len(out.items) >= MAX_QUESTIONS:
            out.skip("beyond_max")
        else:
            seen.add((context, true, false))
            out.items.append((context, true, false))
    return out


# ----------------------------------------------------------------------------------------------
# The cache: an append-only JSON Lines log of raw answers
# ----------------------------------------------------------------------------------------------


class AnswerCache:
    """Raw answers by key. One writer at a time (this process); the first record of a key wins."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.bad_lines = 0
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise FortifaiError(f"cannot read the openai answer cache {self.path}: {exc.strerror or exc}") from exc
        complete, _, tail = data.rpartition(b"\n")
        for line in complete.split(b"\n") if complete else []:
            self._take(line)
        if tail and not self._take(tail):
            # A crash in the middle of an append: drop the torn record (it gets asked again), and
            # cut it off so that the next append starts on a line of its own.
            with open(self.path, "r+b") as f:
                f.truncate(len(complete) + 1 if complete else 0)
                os.fsync(f.fileno())
        elif tail:
            self._append_bytes(b"\n")  # a whole record that lost only its newline

    def _take(self, line: bytes) -> bool:
        if not line.strip():
            return True
        try:
            record = json.loads(line)
            key = record["key"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            self.bad_lines += 1
            return False
        self.records.setdefault(key, record)
        return True

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:  # add() runs on worker threads, so that fsync does not stall the event loop
            if record["key"] in self.records:
                return
            self._append_bytes(line.encode("utf-8"))
            self.records[record["key"]] = record

    def _append_bytes(self, data: bytes) -> None:
        # One write() on an O_APPEND descriptor, then fsync: a crash leaves at most one torn line,
        # which _load repairs. (A log, so atomic_write's whole-file replace does not fit here.)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def default_cache_path() -> Path:
    from fortifai_bench.resources import cache_dir

    return cache_dir() / "kr-openai-answers.jsonl"


# ----------------------------------------------------------------------------------------------
# Asking, with our retry policy
# ----------------------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 60.0

    def __post_init__(self):
        if self.max_retries < 0:
            raise FortifaiError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise FortifaiError("base_delay and max_delay must be >= 0")
        if not self.timeout > 0:
            raise FortifaiError(f"timeout must be > 0 seconds, got {self.timeout}")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `attempt` (1-based): the server's word (up to 5 minutes),
        else exponential backoff with full jitter, capped at `max_delay`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), RETRY_AFTER_CAP)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def retry_after_seconds(headers) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return email.utils.mktime_tz(parsed) - time.time()
    return None


class _Fatal(Exception):
    """The run cannot succeed (bad key, model or URL): stop everything."""


@dataclass
class _Outcome:
    content: str | None = None
    usage: dict | None = None
    error: str | None = None  # set when the paragraph failed
    attempts: int = 0
    troubles: list = field(default_factory=list)  # what each retried attempt ran into


async def _ask(client, llm: str, text: str, policy: RetryPolicy, stop: asyncio.Event) -> _Outcome:
    import openai

    outcome = _Outcome()
    retry_after, last = None, ""  # what the previous attempt ran into
    for attempt in range(policy.max_retries + 1):
        if attempt:
            await asyncio.sleep(policy.delay(attempt, retry_after))
            if stop.is_set():
                outcome.error = f"abandoned after {outcome.attempts} attempt(s): {last}"
                return outcome
        retry_after = None
        outcome.attempts += 1
        try:
            # The client's own timeout bounds each read; wait_for bounds the whole request, so a
            # server that trickles bytes forever cannot hang the run either.
            response = await asyncio.wait_for(
                client.chat.completions.create(model=llm, messages=build_messages(text)),
                timeout=policy.timeout + 1.0,
            )
        except asyncio.TimeoutError:
            kind, last = "timeout", f"no answer within {policy.timeout:g} s"
        except openai.APIStatusError as exc:
            status = exc.status_code
            message = f"HTTP {status}: {_short(exc)}"
            if status in _FATAL_STATUS:
                raise _Fatal(message) from exc
            if status not in _RETRY_STATUS and status < 500:
                outcome.error = message  # e.g. 400: this paragraph was refused; retrying will not help
                return outcome
            kind, last, retry_after = f"HTTP {status}", message, retry_after_seconds(exc.response.headers)
        except openai.APITimeoutError:
            kind, last = "timeout", f"no answer within {policy.timeout:g} s"
        except openai.APIConnectionError as exc:
            kind, last = "connection", f"connection failed: {_short(exc.__cause__ or exc)}"
        except openai.APIError as exc:  # an answer the client could not read as a completion
            kind, last = "unreadable", f"unreadable answer: {_short(exc)}"
        else:
            try:
                outcome.content, outcome.usage = _completion_parts(response)
            except ValueError as exc:
                # HTTP 200 that is no chat completion (a proxy's page, a wrong path): retrying the
                # same URL will not help.
                outcome.error = f"the answer is not a chat completion ({exc}); is the base URL right?"
            return outcome
        outcome.troubles.append(kind)
    outcome.error = f"gave up after {outcome.attempts} attempt(s): {last}"
    return outcome


def _completion_parts(response) -> tuple[str | None, dict | None]:
    """(message content, usage) of a chat completion; ValueError when it is not one."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(f"got {_short_text(response)!r}")
    message = getattr(choices[0], "message", None) if choices else None
    content = getattr(message, "content", None)
    usage = getattr(response, "usage", None)
    if usage is not None:
        usage = {k: int(getattr(usage, k, 0) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return (content if isinstance(content, str) else None), usage


def _short_text(obj) -> str:
    return " ".join(str(obj).split())[:80]


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------


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


def _run_coroutine(coro):
    """asyncio.run, also from inside a running loop (a notebook): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _ask_all(todo, *, llm, client_kwargs, concurrency, policy, cache, stats, allow_failures, progress):
    """Ask for every (key, text) in `todo`; each answer goes to the cache as soon as it arrives."""
    import openai
    from tqdm.auto import tqdm

    stop = asyncio.Event()
    semaphore = asyncio.Semaphore(concurrency)
    fatal: list[str] = []

    async def one(key, pid, text):
        async with semaphore:
            if stop.is_set():
                return None
            try:
                outcome = await _ask(client, llm, text, policy, stop)
            except _Fatal as exc:
                fatal.append(str(exc))
                stop.set()
                return None
        stats["requests"] += outcome.attempts
        stats["retries"] += max(outcome.attempts - 1, 0)
        for kind in outcome.troubles:
            stats["retried_on"][kind] = stats["retried_on"].get(kind, 0) + 1
        if outcome.error is not None:
            stats["failed"] += 1
            if len(stats["errors"]) < 10:
                stats["errors"].append(f"paragraph {pid}: {outcome.error}")
            if not allow_failures:
                stop.set()  # the run will fail anyway: finish what is in flight, start nothing new
            return None
        stats["answered"] += 1
        for k, v in (outcome.usage or {}).items():
            stats["usage"][k] += v
        await asyncio.to_thread(
            cache.add,
            {"key": key, "paragraph": pid, "model": llm, "prompt_version": PROMPT_VERSION,
             "content": outcome.content, "usage": outcome.usage},
        )
        return None

    async with openai.AsyncOpenAI(**client_kwargs) as client:
        tasks = [asyncio.ensure_future(one(*item)) for item in todo]
        with tqdm(total=len(tasks), desc="openai questions", unit="para", disable=not progress) as bar:
            for finished in asyncio.as_completed(tasks):
                await finished
                bar.update(1)
    return fatal


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
    base_delay: float = 1.0,
    max_delay: float = 60.0,
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
    from fortifai_bench.kr.schema import Question

    if not llm:
        raise FortifaiError("openai generator: no model given (--llm)")
    if concurrency < 1:
        raise FortifaiError(f"openai generator: concurrency must be >= 1, got {concurrency}")
    policy = RetryPolicy(max_retries=max_retries, base_delay=base_delay, max_delay=max_delay, timeout=timeout)
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
        client_kwargs = {"api_key": api_key, "base_url": base_url, "max_retries": 0, "timeout": timeout}
        fatal = _run_coroutine(
            _ask_all(todo, llm=llm, client_kwargs=client_kwargs, concurrency=concurrency, policy=policy,
                     cache=cache, stats=stats, allow_failures=allow_failures, progress=progress)
        )
        where = base_url or os.environ.get("OPENAI_BASE_URL") or "the default OpenAI endpoint"
        failed = stats["failed"] and (not allow_failures or stats["answered"] + stats["cached"] == 0)
        if fatal or failed:
            stats["seconds"] = round(time.monotonic() - started, 3)
            print(_summary_line(stats), file=sys.stderr)  # what was paid for, even when the run fails
        if fatal:
            raise FortifaiError(f"openai generator: {where} refused the request for model {llm!r}: {fatal[0]}")
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
