"""Asking the endpoint: one paragraph (`ask`), all of them with bounded concurrency (`ask_all`). Every
outcome is data (`Outcome`); nothing raised inside a task is left unretrieved.

Retries are the openai SDK's own (`max_retries`): 408/409/429/5xx, timeouts and connection errors, with its
exponential backoff and jitter (0.5 s doubling to 8 s) and the server's `Retry-After` / `retry-after-ms`
honoured up to two minutes. What this module adds is beneath the SDK, in the httpx client it is given
(`AttemptClient`): a deadline on each whole attempt, and a record of what each attempt ran into, for the
run's statistics.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
from dataclasses import dataclass, field

from fortifai_bench.kr.llm.prompt import PROMPT_VERSION, build_messages

# The HTTP attempts of the paragraph being asked, in order: "ok", "HTTP 429", "timeout", "connection".
# A context variable, because the SDK sends every attempt from inside the caller's task.
_ATTEMPTS: contextvars.ContextVar[list] = contextvars.ContextVar("fortifai_attempts")
_STOP: contextvars.ContextVar = contextvars.ContextVar("fortifai_stop")  # set: the run is stopping, retry nothing
FATAL_STATUS = frozenset({401, 403, 404})  # the whole run is misconfigured: key, permission, model or URL


class Abandoned(Exception):
    """A retry not sent because the run is stopping. Not an httpx or openai error, so the SDK passes it on at once
    instead of retrying it."""


class Fatal(Exception):
    """The run cannot succeed (bad key, model or URL, or an unexpected failure): stop everything.
    The message reads after "<endpoint> " in the one-line error."""


@dataclass
class Outcome:
    content: str | None = None
    usage: dict | None = None
    error: str | None = None  # set when the paragraph failed
    attempts: int = 0
    troubles: list = field(default_factory=list)  # what each failed attempt ran into


def attempt_client(timeout: float):
    """The httpx client the SDK sends through: the SDK's own defaults (`openai.DefaultAsyncHttpxClient`), plus a
    deadline on each attempt as a whole (httpx's timeout bounds each read, so a server trickling bytes could
    last forever) that the SDK sees as a timeout and retries, and each attempt recorded in `_ATTEMPTS`."""
    import openai

    base = openai.DefaultAsyncHttpxClient
    # httpx (openai 1.x) or httpx2 (newer): the exceptions of whichever the SDK's client is built on
    httpx = importlib.import_module(next(c for c in base.__mro__ if c.__name__ == "AsyncClient").__module__.split(".")[0])

    class AttemptClient(base):
        async def send(self, request, **kwargs):
            attempts = _ATTEMPTS.get([])  # outside `ask` (no paragraph): recorded nowhere
            stop = _STOP.get(None)
            if attempts and stop is not None and stop.is_set():  # a retry, and the run will fail anyway
                raise Abandoned(attempts[-1])
            try:
                response = await asyncio.wait_for(super().send(request, **kwargs), timeout + 1.0)
            except asyncio.TimeoutError:
                attempts.append("timeout")
                raise httpx.ReadTimeout(f"no whole answer within {timeout:g} s", request=request) from None
            except httpx.TimeoutException:
                attempts.append("timeout")
                raise
            except Exception:
                attempts.append("connection")
                raise
            attempts.append(f"HTTP {response.status_code}" if response.status_code >= 400 else "ok")
            return response

    return AttemptClient(timeout=timeout)


async def ask(client, llm: str, text: str, timeout: float, stop: asyncio.Event | None = None) -> Outcome:
    """One paragraph, the SDK retrying what is worth retrying (no retry once `stop` is set); its attempts are
    counted into the outcome."""
    import openai

    outcome = Outcome()
    attempts = []
    _ATTEMPTS.set(attempts)  # this task's own context: concurrent paragraphs do not mix
    _STOP.set(stop)
    try:
        response = await client.chat.completions.create(model=llm, messages=build_messages(text))
    except Abandoned as exc:
        outcome.error = f"abandoned after {len(attempts)} attempt(s): {exc}"
    except openai.APIStatusError as exc:
        message = f"HTTP {exc.status_code}: {short(exc)}"
        if exc.status_code in FATAL_STATUS:
            raise Fatal(f"refused the request for model {llm!r}: {message}") from exc
        # e.g. 400: this paragraph was refused; or a 429/5xx still there after the SDK's last retry
        outcome.error = message if len(attempts) <= 1 else f"gave up after {len(attempts)} attempt(s): {message}"
    except openai.APITimeoutError:
        outcome.error = f"gave up after {len(attempts)} attempt(s): no answer within {timeout:g} s"
    except openai.APIConnectionError as exc:
        outcome.error = f"gave up after {len(attempts)} attempt(s): connection failed: {short(exc.__cause__ or exc)}"
    except openai.APIError as exc:  # an answer the client could not read as a completion
        outcome.error = f"unreadable answer: {short(exc)}"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # HTTP 200 whose body claims to be JSON and is not (a proxy, a wrong path): the same URL
        # will answer the same way, so no retry.
        outcome.error = f"the answer is not JSON ({short(exc)}); is the base URL right?"
    else:
        try:
            outcome.content, outcome.usage = completion_parts(response)
        except ValueError as exc:
            # HTTP 200 that is no chat completion (a proxy's page, a wrong path): retrying the
            # same URL will not help.
            outcome.error = f"the answer is not a chat completion ({exc}); is the base URL right?"
    outcome.attempts = len(attempts)
    outcome.troubles = [a for a in attempts if a != "ok"]
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


async def ask_all(todo, *, llm, client_kwargs, concurrency, cache, stats, allow_failures, progress):
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
            outcome = await ask(client, llm, text, client_kwargs["timeout"], stop)
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

    async with openai.AsyncOpenAI(**client_kwargs, http_client=attempt_client(client_kwargs["timeout"])) as client:
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
