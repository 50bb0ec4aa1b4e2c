"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, for tests.

It plays a deterministic "LLM": from the paragraph in the prompt it writes questions that
`fake_questions` can recompute, and reports token usage as word counts. Tests script it per
paragraph: replies are matched to a request by a marker string the request's prompt contains,
and consumed in order (the last one repeats), so a test can say "for para3: 429, then 500, then
answer". The server records every request (arrival time, label = the paragraph's first word,
status sent) and the most requests it ever held at once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def paragraph_of(prompt: str) -> str:
    """The paragraph inside the prompt (between <<< and >>>), or the whole prompt."""
    start, end = prompt.find("<<<\n"), prompt.rfind("\n>>>")
    return prompt[start + 4 : end] if 0 <= start < end else prompt


def fake_questions(paragraph: str) -> list[dict]:
    """What the fake LLM answers: per sentence of 4+ words, context = all but the last two words,
    true = the last two, false = the same with the last word altered. At most 5."""
    out = []
    for sentence in paragraph.replace("\n", " ").split("."):
        words = sentence.split()
        if len(words) >= 4:
            true = " ".join(words[-2:]) + "."
            false = " ".join(words[-2:-1] + ["not" + words[-1]]) + "."
            out.append({"context": " ".join(words[:-2]), "true": true, "false": false})
    return out[:5]


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when many clients connect at once; the
    # client then waits ~1 s for a SYN retry. Real endpoints have a deep backlog.
    request_queue_size = 128


@dataclass
class Reply:
    """One scripted reply. `content=None` means the fake LLM's proper answer."""

    status: int = 200
    content: str | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None  # a body that is no chat completion at all (a proxy's HTML page)


@dataclass
class Logged:
    time: float
    label: str  # the first word of the paragraph asked about
    status: int


class ChatServer:
    """`with ChatServer(script) as server:` ... `generate_openai(..., base_url=server.url)`."""

    def __init__(self, script: dict[str, list[Reply]] | None = None, default: Reply | None = None,
                 api_key: str | None = None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.default = default or Reply()
        self.api_key = api_key  # when set, other keys get 401
        self.log: list[Logged] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.usage_sent = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a slow reply the client gave up on must not hold up close
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, label: str | None = None) -> int:
        """Requests received (about the paragraph starting with `label`)."""
        with self._lock:
            return sum(1 for r in self.log if label is None or r.label == label)

    def labels(self) -> list[str]:
        with self._lock:
            return [r.label for r in self.log]

    def times(self, label: str) -> list[float]:
        with self._lock:
            return [r.time for r in self.log if r.label == label]

    # -- serving ---------------------------------------------------------------------------------

    def _next_reply(self, prompt: str) -> Reply:
        with self._lock:
            for marker, replies in self.script.items():
                if marker in prompt:
                    return replies.pop(0) if len(replies) > 1 else replies[0]
        return self.default

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))))
        prompt = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
        reply = self._next_reply(prompt)
        label = (paragraph_of(prompt).split() or [""])[0]
        with self._lock:
            self.log.append(Logged(time.monotonic(), label, reply.status))
        if self.api_key is not None and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            with self._lock:
                self.log[-1].status = 401
            return _send(handler, 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw is not None:
            return _send(handler, reply.status, reply.raw, {"Content-Type": "text/html", **reply.headers})
        if reply.status != 200:
            return _send(handler, reply.status, {"error": {"message": f"scripted {reply.status}", "type": "server_error"}}, reply.headers)
        content = reply.content
        if content is None:
            content = json.dumps({"questions": fake_questions(paragraph_of(prompt))})
        prompt_words = sum(len(m["content"].split()) for m in body["messages"])
        usage = {"prompt_tokens": prompt_words, "completion_tokens": len(content.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        answer = {
            "id": f"chatcmpl-{len(self.log)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        }
        if _send(handler, 200, answer, reply.headers):
            with self._lock:
                for k, v in usage.items():
                    self.usage_sent[k] += v

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body, written apart, meet delayed ACKs (~40 ms each)

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    _send(self, 404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server._answer(self)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def log_message(self, *args):  # keep test output clean
                pass

        return Handler


def _send(handler: BaseHTTPRequestHandler, status: int, obj: dict | bytes, headers: dict | None = None) -> bool:
    """Send a JSON reply (or raw bytes); False when the client already hung up (it timed out)."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False
