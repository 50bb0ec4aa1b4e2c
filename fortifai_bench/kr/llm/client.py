"""Asking the endpoint: one paragraph with the retry policy (`ask`), all of them with bounded concurrency
(`ask_all`). Every outcome is data (`Outcome`); nothing raised inside a task is left unretrieved."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from fortifai_bench.kr.llm.prompt import PROMPT_VERSION, build_messages
from fortifai_bench.kr.llm.retry import FATAL_STATUS, RetryPolicy, retry_after_seconds, retryable


class Fatal(Exception):
    """The run cannot succeed (bad key, model or URL, or an unexpected failure): stop everything.
    The message reads after "<endpoint> " in the one-line error."""


@dataclass
class Outcome:
    content: str | None = None
    usage: dict | None = None
    error: str | None = None  # set when the paragraph failed
    attempts: int = 0
    troubles: list = field(default_factory=list)  # what each retried attempt ran into


async def ask(client, llm: str, text: str, policy: RetryPolicy, stop: asyncio.Event) -> Outcome:
    import openai

    outcome = Outcome()
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
            message = f"HTTP {status}: {short(exc)}"
            if status in FATAL_STATUS:
                raise Fatal(f"refused the request for model {llm!r}: {message}") from exc
            if not retryable(status):
                outcome.error = message  # e.g. 400: this paragraph was refused; retrying will not help
                return outcome
            kind, last, retry_after = f"HTTP {status}", message, retry_after_seconds(exc.response.headers)
        except openai.APITimeoutError:
            kind, last = "timeout", f"no answer within {policy.timeout:g} s"
        except openai.APIConnectionError as exc:
            kind, last = "connection", f"connection failed: {short(exc.__cause__ or exc)}"
        except openai.APIError as exc:  # an answer the client could not read as a completion
            kind, last = "unreadable", f"unreadable answer: {short(exc)}"
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            # HTTP 200 whose body claims to be JSON and is not (a proxy, a wrong path): the same URL
            # will answer the same way, so no retry.
            outcome.error = f"the answer is not JSON ({short(exc)}); is the base URL right?"
            return outcome
        else:
            try:
                outcome.content, outcome.usage = completion_parts(response)
            except ValueError as exc:
                # HTTP 200 that is no chat completion (a proxy's page, a wrong path): retrying the
                # same URL will not help.
                outcome.error = f"the answer is not a chat completion ({exc}); is the base URL right?"
            return outcome
        outcome.troubles.append(kind)
    outcome.error = f"gave up after {outcome.attempts} attempt(s): {last}"
    return outcome


def completion_parts(response) -> tuple[str | None, dict | None]:
    """(message content, usage) of a chat completion; ValueError when it is not one."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(f"got {short_text(response)!r}")
    message = getattr(choices[0], "message", None) if choices else None
    content = getattr(message, "content", None)
    usage = getattr(response, "usage", None)
    if usage is not None:
        usage = {k: _count(getattr(usage, k, 0)) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return (content if isinstance(content, str) else None), usage


def _count(value) -> int:
    """A token count as the server sent it; what is not a non-negative integer counts as 0."""
    try:
        n = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(n, 0)


def short_text(obj) -> str:
    return " ".join(str(obj).split())[:80]


def short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def run_coroutine(coro):
    """asyncio.run, also from inside a running loop (a notebook): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def ask_all(todo, *, llm, client_kwargs, concurrency, policy, cache, stats, allow_failures, progress):
    """Ask for every (key, paragraph id, text) in `todo`; each answer goes to the cache as soon as it
    arrives. Returns the fatal errors (empty when the run may go on)."""
    import openai
    from tqdm.auto import tqdm

    stop = asyncio.Event()
    semaphore = asyncio.Semaphore(concurrency)
    fatal: list[str] = []

    async def one(key, pid, text):
        try:
            await _one(key, pid, text)
        except Fatal as exc:
            fatal.append(str(exc))
            stop.set()
        except Exception as exc:  # noqa: BLE001 - a bug or a broken cache must stop the run with one line
            fatal.append(f"failed on paragraph {pid}: {type(exc).__name__}: {short(exc)}")
            stop.set()

    async def _one(key, pid, text):
        async with semaphore:
            if stop.is_set():
                return
            outcome = await ask(client, llm, text, policy, stop)
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
            return
        stats["answered"] += 1
        for k, v in (outcome.usage or {}).items():
            stats["usage"][k] += v
        await asyncio.to_thread(
            cache.add,
            {"key": key, "paragraph": pid, "model": llm, "prompt_version": PROMPT_VERSION,
             "content": outcome.content, "usage": outcome.usage},
        )

    async with openai.AsyncOpenAI(**client_kwargs) as client:
        tasks = [asyncio.ensure_future(one(*item)) for item in todo]
        try:
            with tqdm(total=len(tasks), desc="openai questions", unit="para", disable=not progress) as bar:
                for finished in asyncio.as_completed(tasks):
                    await finished
                    bar.update(1)
        finally:
            # Interrupted (Ctrl-C, a cancelled caller): no task may outlive the client or go unretrieved.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return fatal
