"""The openai question generator against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chat_server import ChatServer, Reply, fake_questions
from fortifai_bench.corpora import Paragraph
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr import openai_gen
from fortifai_bench.kr.openai_gen import generate_openai, parse_answer

LLM = "test-llm"
FAST = dict(llm=LLM, api_key="sk-test", timeout=5.0, progress=False)
BACKOFF_MIN = 0.5 * 0.75  # the openai SDK's first wait without Retry-After: 0.5 s less up to 25% jitter

SENTENCES = [
    "The river {n} is {k} km long.",
    "Its source lies near the town of Bron{n}.",
    "The first bridge over it was built in 18{k}.",
    "A company named {n} Works ran mills along its banks.",
]


def paragraphs(n: int, start: int = 0) -> list[Paragraph]:
    """Paragraphs that each carry a unique marker `para<i>:` the server is scripted by."""
    out = []
    for i in range(start, start + n):
        text = f"para{i}: " + " ".join(s.format(n=f"Alder{i}", k=10 + i) for s in SENTENCES)
        out.append(Paragraph(id=f"test/p{i:04d}", text=text, meta={}))
    return out


def expected(paras, source="src") -> list[dict]:
    rows = []
    for index, p in enumerate(paras):
        for k, q in enumerate(fake_questions(p.text)):
            rows.append({"id": f"{p.id}/q{k}", "split": -1, "paragraph": index, "context": q["context"],
                         "true": q["true"], "false": q["false"], "generator": f"openai:{LLM}@1", "source": source})
    return rows


def as_rows(questions) -> list[dict]:
    return [{f: getattr(q, f) for f in ("id", "split", "paragraph", "context", "true", "false", "generator", "source")}
            for q in questions]


def cache_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_questions_ids_fields_and_usage(tmp_path):
    paras = paragraphs(3)
    with ChatServer() as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                           source="src", **FAST)
    assert as_rows(questions) == expected(paras)
    assert len(questions) == 12  # four facts per paragraph
    assert server.count() == 3 and stats["requests"] == 3 and stats["retries"] == 0
    assert stats["answered"] == 3 and stats["cached"] == 0 and stats["malformed"] == 0
    assert stats["usage"] == server.usage_sent and stats["usage"]["total_tokens"] > 0


def test_retries_on_429_500_honour_retry_after(tmp_path):
    paras = paragraphs(3)
    script = {
        "para0:": [Reply(429, headers={"Retry-After": "0.4"}), Reply()],
        "para1:": [Reply(429), Reply(500), Reply()],
        "para2:": [Reply(503), Reply(502), Reply(500), Reply()],
    }
    with ChatServer(script) as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                           source="src", **FAST)
    assert as_rows(questions) == expected(paras)
    assert [server.count(f"para{i}:") for i in range(3)] == [2, 3, 4]
    assert stats["requests"] == 9 and stats["retries"] == 6
    assert stats["retried_on"] == {"HTTP 429": 2, "HTTP 500": 2, "HTTP 502": 1, "HTTP 503": 1}
    # The SDK's own policy: the server's Retry-After (0.4 s) is waited out, else its backoff (0.5 s, doubling,
    # less up to 25% jitter). Lower bounds, which no slowness of the machine can break.
    first, second = server.times("para0:")
    assert second - first >= 0.4
    waits = [b - a for a, b in zip(server.times("para2:"), server.times("para2:")[1:])]
    assert [w >= BACKOFF_MIN * 2 ** k for k, w in enumerate(waits)] == [True, True, True]
    assert stats["usage"] == server.usage_sent  # only answers are paid for


def test_slow_answer_times_out_and_is_retried(tmp_path):
    paras = paragraphs(2)
    script = {"para1:": [Reply(delay=3.0), Reply()]}
    with ChatServer(script) as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                           source="src", **{**FAST, "timeout": 0.3})
    assert as_rows(questions) == expected(paras)
    assert server.count("para1:") == 2 and server.count("para0:") == 1
    assert stats["retries"] == 1 and stats["retried_on"] == {"timeout": 1}


def test_endpoint_that_never_answers_is_a_clear_error(tmp_path):
    cache = tmp_path / "c.jsonl"
    with ChatServer(default=Reply(delay=5.0)) as server:
        with pytest.raises(FortifaiError, match=r"failed at .*127\.0\.0\.1.*no answer within 0\.2 s"):
            generate_openai(paragraphs(2), base_url=server.url, cache_path=cache,
                            **{**FAST, "timeout": 0.2, "max_retries": 1, "concurrency": 1})
        # Fail fast: the first paragraph's two attempts, then nothing new is started.
        assert server.count() == 2
    assert not cache.exists()  # no partial output


def test_nothing_listening_is_a_clear_error(tmp_path):
    with ChatServer() as server:
        url = server.url  # a port that was free a moment ago and is closed now
    with pytest.raises(FortifaiError, match="connection failed"):
        generate_openai(paragraphs(1), base_url=url, cache_path=tmp_path / "c.jsonl", **{**FAST, "max_retries": 2})


def test_bad_key_stops_at_once_without_retries(tmp_path):
    with ChatServer(api_key="right") as server:
        with pytest.raises(FortifaiError, match="HTTP 401"):
            generate_openai(paragraphs(6), base_url=server.url, cache_path=tmp_path / "c.jsonl",
                            **{**FAST, "api_key": "wrong", "concurrency": 2})
        assert server.count() <= 2  # the requests in flight when it was refused, none retried


def test_no_key_is_an_error_unless_everything_is_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache = tmp_path / "c.jsonl"
    no_key = {**FAST, "api_key": None}
    with pytest.raises(FortifaiError, match="OPENAI_API_KEY"):
        generate_openai(paragraphs(2), base_url="http://127.0.0.1:9/v1", cache_path=cache, **no_key)
    with ChatServer() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "from-env")
        first, _ = generate_openai(paragraphs(2), base_url=server.url, cache_path=cache, **no_key)
        monkeypatch.delenv("OPENAI_API_KEY")
        again, stats = generate_openai(paragraphs(2), base_url=server.url, cache_path=cache, **no_key)
        assert server.count() == 2
    assert again == first and stats["cached"] == 2


def test_malformed_answers_are_skipped_and_counted(tmp_path):
    paras = paragraphs(4)
    mixed = "```json\n" + json.dumps({"questions": [
        {"context": "The river", "true": "is long.", "false": "is short."},  # kept
        {"context": "The river", "true": "is long.", "false": "is long."},  # true == false
        {"context": "", "true": "a.", "false": "b."},  # empty field
        {"context": "The river", "true": "is long."},  # no false: wrong shape
        "just a string",  # wrong shape
        {"context": "The river", "true": "is long.", "false": "is short."},  # duplicate
    ]}) + "\n```"
    script = {
        "para0:": [Reply(content="Sure! Here are your questions: context, true, false.")],  # not JSON
        "para1:": [Reply(content=json.dumps({"answers": []}))],  # JSON, wrong shape
        "para2:": [Reply(content=mixed)],
    }
    cache = tmp_path / "c.jsonl"
    with ChatServer(script) as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=cache, source="src", **FAST)
        assert server.count() == 4  # a malformed answer is an answer: not retried
        again, stats2 = generate_openai(paras, base_url=server.url, cache_path=cache, source="src", **FAST)
        assert server.count() == 4  # ... and cached: never paid for twice
    assert [(q.id, q.context, q.true, q.false) for q in questions[:1]] == [
        ("test/p0002/q0", "The river", "is long.", "is short.")]
    assert as_rows(questions[1:]) == [r for r in expected(paras) if r["paragraph"] == 3]
    assert stats["malformed_by_reason"] == {
        "not_json": 1, "wrong_shape": 3, "true_equals_false": 1, "empty_field": 1, "duplicate": 1}
    assert stats["malformed"] == 7
    assert again == questions and stats2["malformed_by_reason"] == stats["malformed_by_reason"]


def test_second_run_sends_zero_requests_and_new_paragraphs_only_cost_themselves(tmp_path):
    cache = tmp_path / "c.jsonl"
    with ChatServer() as server:
        first, _ = generate_openai(paragraphs(5), base_url=server.url, cache_path=cache, source="src", **FAST)
        assert server.count() == 5
        second, stats = generate_openai(paragraphs(5), base_url=server.url, cache_path=cache, source="src", **FAST)
        assert server.count() == 5 and stats["requests"] == 0 and stats["cached"] == 5
        assert stats["usage"]["total_tokens"] == 0
        assert stats["usage_from_cache"] == server.usage_sent  # what the cache saved
        third, _ = generate_openai(paragraphs(6), base_url=server.url, cache_path=cache, source="src", **FAST)
        assert server.labels()[5:] == ["para5:"]  # only the new paragraph was asked
    assert second == first
    assert as_rows(third) == expected(paragraphs(6))
    ids = [q.id for q in third]
    assert len(ids) == len(set(ids))
    assert len(cache_lines(cache)) == 6  # one record per paragraph, none twice


def test_failure_mid_run_keeps_answers_and_rerun_pays_only_for_the_rest(tmp_path, capsys):
    paras = paragraphs(8)
    cache = tmp_path / "c.jsonl"
    with ChatServer({"para3:": [Reply(500)]}) as broken:  # para3 fails forever
        with pytest.raises(FortifaiError, match=r"1 paragraph\(s\) failed.*test/p0003.*HTTP 500.*rerun"):
            generate_openai(paras, base_url=broken.url, cache_path=cache, **{**FAST, "max_retries": 2, "concurrency": 2})
        assert broken.count("para3:") == 3
        paid = broken.usage_sent["total_tokens"]
    assert f"= {paid} total" in capsys.readouterr().err  # the cost of a failed run is still reported
    kept = {r["paragraph"] for r in cache_lines(cache)}
    assert {"test/p0000", "test/p0001", "test/p0002"} <= kept and "test/p0003" not in kept
    assert len(kept) < 8  # fail fast: paragraphs after the failure were not all started
    with ChatServer() as healthy:
        questions, stats = generate_openai(paras, base_url=healthy.url, cache_path=cache, source="src", **FAST)
        asked = healthy.labels()
    assert sorted(asked) == sorted(f"para{i}:" for i in range(8) if f"test/p{i:04d}" not in kept)
    assert stats["cached"] == len(kept) and stats["answered"] == 8 - len(kept)
    assert as_rows(questions) == expected(paras)
    assert len(cache_lines(cache)) == 8


def test_a_failing_run_retries_nothing_more(tmp_path):
    """Once the run will fail (para0 refused, 400), a paragraph the SDK is retrying (para1, 503) sends no further
    attempt: abandoned, where the SDK alone would try 6 more times over ~20 s."""
    script = {"para0:": [Reply(400)], "para1:": [Reply(503)]}
    with ChatServer(script) as server:
        with pytest.raises(FortifaiError, match=r"failed at .*HTTP 400"):
            generate_openai(paragraphs(2), base_url=server.url, cache_path=tmp_path / "c.jsonl",
                            **{**FAST, "concurrency": 2})
        assert server.count("para0:") == 1 and server.count("para1:") == 1


def test_allow_failures_leaves_the_failed_paragraphs_out(tmp_path):
    paras = paragraphs(4)
    script = {"para1:": [Reply(500)], "para2:": [Reply(400)]}  # 400: this paragraph refused, not retried
    with ChatServer(script) as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                           source="src", allow_failures=True, **{**FAST, "max_retries": 1})
        assert server.count("para1:") == 2 and server.count("para2:") == 1
    assert as_rows(questions) == [r for r in expected(paras) if r["paragraph"] in (0, 3)]
    assert stats["failed"] == 2 and stats["answered"] == 2
    assert sorted(e.split(":")[0] for e in stats["errors"]) == ["paragraph test/p0001", "paragraph test/p0002"]
    assert any("HTTP 400" in e for e in stats["errors"]) and any("HTTP 500" in e for e in stats["errors"])


def test_an_answer_that_is_no_chat_completion_is_a_clear_error(tmp_path):
    cache = tmp_path / "c.jsonl"
    with ChatServer(default=Reply(raw=b"<html><body>Welcome to the proxy</body></html>")) as server:
        with pytest.raises(FortifaiError, match="not a chat completion.*Welcome to the proxy.*base URL"):
            generate_openai(paragraphs(3), base_url=server.url, cache_path=cache, **{**FAST, "concurrency": 1})
        assert server.count() == 1  # not retried, nothing further started
    assert not cache.exists()


def test_killed_process_loses_nothing_it_paid_for(tmp_path):
    """SIGKILL in the middle of a run: a rerun asks only for the paragraphs not yet answered."""
    cache = tmp_path / "c.jsonl"
    paras = paragraphs(6)
    script = textwrap.dedent(f"""
        import sys
        from fortifai_bench.corpora import Paragraph
        from fortifai_bench.kr.openai_gen import generate_openai
        paras = [Paragraph(id=i, text=t, meta={{}}) for i, t in {[(p.id, p.text) for p in paras]!r}]
        generate_openai(paras, base_url=sys.argv[1], cache_path=sys.argv[2],
                        **{ {**FAST, "concurrency": 1, "timeout": 60.0}!r})
    """)
    with ChatServer({"para3:": [Reply(delay=30.0)]}) as hanging:
        proc = subprocess.Popen([sys.executable, "-c", script, hanging.url, str(cache)])
        try:
            deadline = time.monotonic() + 60
            while hanging.count("para3:") == 0 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert hanging.count("para3:") == 1, "the child never reached para3"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert [r["paragraph"] for r in cache_lines(cache)] == ["test/p0000", "test/p0001", "test/p0002"]
    with ChatServer() as healthy:
        questions, stats = generate_openai(paras, base_url=healthy.url, cache_path=cache, source="src", **FAST)
        assert sorted(healthy.labels()) == ["para3:", "para4:", "para5:"]
    assert as_rows(questions) == expected(paras) and stats["cached"] == 3


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    cache = tmp_path / "c.jsonl"
    paras = paragraphs(3)
    with ChatServer() as server:
        generate_openai(paras, base_url=server.url, cache_path=cache, **FAST)
    lines = cache.read_text().splitlines(keepends=True)
    torn = json.loads(lines[2])["paragraph"]  # answers are logged in the order they arrived
    cache.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # a crash mid-append
    with ChatServer() as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=cache, source="src", **FAST)
        assert server.labels() == [f"para{int(torn[-4:])}:"]
    assert as_rows(questions) == expected(paras) and stats["cache_lines_ignored"] == 1
    assert sorted(r["paragraph"] for r in cache_lines(cache)) == ["test/p0000", "test/p0001", "test/p0002"]


def test_concurrency_bound_is_respected(tmp_path):
    with ChatServer(default=Reply(delay=0.2)) as server:
        questions, stats = generate_openai(paragraphs(10), base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                           **{**FAST, "concurrency": 3})
    assert server.count() == 10 and len(questions) == 40
    assert 2 <= server.max_in_flight <= 3  # bounded, and actually concurrent


def test_duplicate_paragraph_text_is_asked_and_questioned_once(tmp_path):
    one = paragraphs(1)[0]
    paras = [one, Paragraph(id="test/copy", text=one.text, meta={})]
    with ChatServer() as server:
        questions, stats = generate_openai(paras, base_url=server.url, cache_path=tmp_path / "c.jsonl", **FAST)
    assert server.count() == 1 and stats["duplicate_paragraphs"] == 1
    assert {q.id.rsplit("/", 1)[0] for q in questions} == {"test/p0000"}


@pytest.mark.parametrize("progress", [True, False])
def test_summary_line_is_printed_once(tmp_path, capsys, progress):
    with ChatServer() as server:
        _, stats = generate_openai(paragraphs(2), base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                   **{**FAST, "progress": progress})
    err = capsys.readouterr().err
    summary = [line for line in err.splitlines() if line.startswith("openai questions (")]
    assert len(summary) == 1
    assert "8 questions from 2 paragraphs" in summary[0]
    assert f"= {stats['usage']['total_tokens']} total" in summary[0] and stats["usage"]["total_tokens"] > 0


def test_works_when_called_from_inside_an_event_loop(tmp_path):
    """A notebook runs an event loop already; asyncio.run would refuse to start a second one."""
    import asyncio

    async def caller():
        with ChatServer() as server:
            return generate_openai(paragraphs(2), base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                   source="src", **FAST)

    questions, _ = asyncio.run(caller())
    assert as_rows(questions) == expected(paragraphs(2))


def test_cli_kr_build_with_the_openai_generator(tmp_path, monkeypatch):
    """`fortifai-bench kr build --generator openai`: questions with splits; a rerun costs nothing."""
    from fortifai_bench.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(p.text for p in paragraphs(4)) + "\n")
    cache, out = tmp_path / "c.jsonl", tmp_path / "kr.jsonl"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ChatServer() as server:
        argv = ["kr", "build", "--corpus", f"text:{corpus}", "--generator", "openai", "--llm", LLM,
                "--base-url", server.url, "--splits", "2", "--out", str(out), "--cache", str(cache)]
        assert main(argv) == 0
        assert server.count() == 4
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert main(argv) == 0 and server.count() == 4  # the rerun was served from the cache
    assert [r["split"] for r in rows] == [0] * 8 + [1] * 8  # two paragraphs per split, four facts each
    assert {r["generator"] for r in rows} == {f"openai:{LLM}@1"}


def test_bad_arguments():
    with pytest.raises(FortifaiError, match="concurrency"):
        generate_openai(paragraphs(1), **{**FAST, "concurrency": 0})
    with pytest.raises(FortifaiError, match="timeout"):
        generate_openai(paragraphs(1), **{**FAST, "timeout": 0})
    with pytest.raises(FortifaiError, match="max_retries"):
        generate_openai(paragraphs(1), **{**FAST, "max_retries": -1})
    with pytest.raises(FortifaiError, match="model"):
        generate_openai(paragraphs(1), **{**FAST, "llm": ""})


def test_parse_answer_shapes():
    item = {"context": " A  b ", "sentence_true": "c.", "sentence_false": "d."}
    assert parse_answer(json.dumps([item])).items == [("A b", "c.", "d.")]  # bare list, authors' names
    assert parse_answer("Here you go:\n" + json.dumps({"questions": [item]}) + "\nEnjoy").items == [("A b", "c.", "d.")]
    many = {"questions": [{"context": f"c{i}", "true": "t.", "false": "f."} for i in range(7)]}
    parsed = parse_answer(json.dumps(many))
    assert len(parsed.items) == 5 and parsed.skipped == {"beyond_max": 2}
    assert parse_answer(None).skipped == {"empty_answer": 1}
    assert parse_answer('{"questions": "none"}').skipped == {"wrong_shape": 1}


def test_retry_after_forms_from_the_server(tmp_path):
    """retry-after-ms and an HTTP date are honoured; an unreadable one (nan) falls back to the SDK's backoff; one
    beyond two minutes is an outage, not a rate limit: not retried, the paragraph fails at once."""
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    script = {
        "para0:": [Reply(429, headers={"retry-after-ms": "600"}), Reply()],
        "para1:": [Reply(429, headers={"Retry-After": "nan"}), Reply()],
        "para2:": [Reply(503, headers={"Retry-After": soon}), Reply()],
        "para3:": [Reply(429, headers={"Retry-After": "100000"}), Reply()],
    }
    with ChatServer(script) as server:
        questions, stats = generate_openai(paragraphs(4), base_url=server.url, cache_path=tmp_path / "c.jsonl",
                                           source="src", allow_failures=True, **FAST)
        waits = {i: (lambda t: t[1] - t[0] if len(t) == 2 else None)(server.times(f"para{i}:")) for i in range(4)}
    assert waits[0] >= 0.6 and waits[1] >= BACKOFF_MIN and waits[2] >= 0.5 and waits[3] is None
    assert server.count("para3:") == 1 and stats["failed"] == 1 and "HTTP 429" in stats["errors"][0]
    assert as_rows(questions) == [r for r in expected(paragraphs(4)) if r["paragraph"] != 3]
    assert stats["retried_on"] == {"HTTP 429": 3, "HTTP 503": 1}


def test_a_200_answer_whose_body_is_not_json_is_one_error_and_no_task_is_left_unretrieved(tmp_path):
    """A proxy answering 200 with a broken JSON body: one FortifaiError, no retry of the same URL, and (run in a
    child process, where asyncio reports them at exit) no "Task exception was never retrieved"."""
    cache = tmp_path / "c.jsonl"
    script = textwrap.dedent(f"""
        import sys
        from fortifai_bench.corpora import Paragraph
        from fortifai_bench.errors import FortifaiError
        from fortifai_bench.kr.openai_gen import generate_openai
        paras = [Paragraph(id=i, text=t, meta={{}}) for i, t in {[(p.id, p.text) for p in paragraphs(6)]!r}]
        try:
            generate_openai(paras, base_url=sys.argv[1], cache_path=sys.argv[2], **{ {**FAST, "concurrency": 3}!r})
        except FortifaiError as exc:
            print("ERROR", exc)
    """)
    broken = Reply(raw=b'{"id": "chatcmpl-1", "choices": [', headers={"Content-Type": "application/json"})
    with ChatServer(default=broken) as server:
        proc = subprocess.run([sys.executable, "-c", script, server.url, str(cache)], capture_output=True, text=True,
                              timeout=120)
        assert server.count() <= 3  # the requests in flight when the first failed; none retried
    errors = [line for line in proc.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "the answer is not JSON" in errors[0] and "base URL" in errors[0]
    assert "Traceback" not in proc.stderr and "never retrieved" not in proc.stderr, proc.stderr
    assert not cache.exists()


def test_layers_are_importable_from_the_old_path():
    from fortifai_bench.kr.llm import cache, client, parse, prompt

    assert openai_gen.AnswerCache is cache.AnswerCache and openai_gen.parse_answer is parse.parse_answer
    assert openai_gen.cache_key is prompt.cache_key
    assert openai_gen.ask_all is client.ask_all and openai_gen.PROMPT_VERSION == prompt.PROMPT_VERSION


def test_a_cache_path_that_is_a_folder_is_one_error(tmp_path):
    (tmp_path / "c.jsonl").mkdir()
    with pytest.raises(FortifaiError, match="answer cache .*c.jsonl is a folder"):
        generate_openai(paragraphs(1), base_url="http://127.0.0.1:9/v1", cache_path=tmp_path / "c.jsonl", **FAST)
