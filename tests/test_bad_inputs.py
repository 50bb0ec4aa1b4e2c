"""The matrix of bad inputs (issue 11): each one gets exactly one `fortifai-bench: error:` line naming what and
where, exit status 2, no traceback, and leaves the working folder as it was (nothing new, nothing changed).

Each case runs the real CLI (`fortifai_bench.cli.main`, in this process, or `python -m fortifai_bench` in a
subprocess where the process itself is under test: sys.path, sys.exit, asyncio's unretrieved-task warnings),
or a library call that every consumer goes through (`read_questions`). The working folder is a fresh temporary
folder holding the case's inputs; its files are snapshotted (path, size, content hash) before and after.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from chat_server import ChatServer, Reply
from fortifai_bench.cli import main
from fortifai_bench.errors import FortifaiError
from results_factory import write_run, write_seeds

REPO = Path(__file__).resolve().parent.parent
CE = [[1.0, 0.9, 0.7, 0.5], [1.0, 0.85, 0.65, 0.5], [0.975, 0.9, 0.75, 0.6]]
PLAN = ["collapse", "--plan"]  # validates task and losses, prints the schedule; needs no model or data


@dataclass
class Case:
    id: str
    argv: list[str] | None = None               # CLI arguments ({cwd} is replaced by the working folder)
    words: tuple[str, ...] = ()                  # all must appear in the one error line
    setup: Callable[[Path], None] | None = None  # writes the case's inputs into the working folder
    call: Callable[[Path], object] | None = None  # a library call instead of the CLI
    subprocess: bool = False                     # run `python -m fortifai_bench` in a child process
    other_stderr: tuple[str, ...] = ()           # prefixes of stderr lines allowed beside the error line
    server: Reply | None = None                  # a scripted chat server; {url} in argv is its address
    unimported: tuple[str, ...] = ()             # user modules whose failed import must leave no trace
    code: int = 2
    env: dict[str, str] | None = None            # environment variables ({cwd} is replaced by the working folder)


# ----------------------------------------------------------------------------------------------- inputs

def _write(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        path = cwd / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return setup


def _all(*setups) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        for s in setups:
            s(cwd)
    return setup


def _mkdir(rel: str) -> Callable[[Path], None]:
    return lambda cwd: (cwd / rel).mkdir(parents=True, exist_ok=True)


def _q(i: int, **kw) -> dict:
    row = {"id": f"t/p{i}/q0", "split": 0, "paragraph": i, "context": f"Person {i} was born in",
           "true": "Dravia in 1843.", "false": "Selmora in 1843.", "generator": "test", "source": "test"}
    row.update(kw)
    return row


def _questions(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD = _questions(_q(0), _q(1), _q(2))
TIE = _questions(_q(0), _q(1, false="Dravia in 1843."), _q(2))
TIE_SPACES = _questions(_q(0), _q(1), _q(2, true="Dravia  in 1843.", false="Dravia in\t1843."))
EMPTY_CONTEXT = _questions(_q(0, context="   "), _q(1))
DUPLICATE_ID = _questions(_q(0), _q(1), _q(2, id="t/p0/q0"))
DUPLICATE_QUESTION = _questions(_q(0), *[_q(1, id=f"t/copy{k}", context="Person 1  was born in") for k in range(3)])
EMPTY_CONT = _questions(_q(0), _q(1, false=""), _q(2, true=" "))
AUTHORS_TIE = json.dumps([{"context": "A", "sentence_true": "b.", "sentence_false": "c.", "location": 0},
                          {"context": "A", "sentence_true": "b.", "sentence_false": " b. ", "location": 1}])
NON_UTF8_LINE3 = (GOOD.encode() + b'{"id": "\xff\xfe"}\n')

LOSSES = '''
import sys
from fortifai_bench.losses import Loss

class Bad(Loss):
    def __init__(self, cap=1.0):
        raise ValueError("cap is not what I expected")
    def reduce(self, logp, valid):
        return -logp.sum(), valid

class Exits(Loss):
    def __init__(self):
        sys.exit(3)
    def reduce(self, logp, valid):
        return -logp.sum(), valid

class Nothing(Loss):
    """Overrides neither reduce nor forward."""

class Anything(Loss):
    def __init__(self, **kw):
        self.kw = kw
    def reduce(self, logp, valid):
        return -logp.sum(), valid
    def config(self):
        return self.kw

NOT_CALLABLE = 3
'''


def _board(cwd: Path) -> Path:
    """A valid board of one CE entry (3 seeds) at leaderboards/collapse_facts.json, from factory runs."""
    from fortifai_bench.leaderboard import publish

    (cwd / "leaderboards").mkdir(exist_ok=True)
    publish(write_seeds(cwd / "runs", CE, loss="ce"), root=cwd / "leaderboards")
    return cwd / "leaderboards" / "collapse_facts.json"


def _edited_board(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        path = _board(cwd)
        board = json.loads(path.read_text())
        edit(board)
        path.write_text(json.dumps(board, indent=1))
    return setup


def _set(path: list, value) -> Callable[[dict], None]:
    def edit(obj: dict) -> None:
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return edit


def _duplicate_entry(board: dict) -> None:
    board["entries"].append(json.loads(json.dumps(board["entries"][0])))


def _run_with_kr(kr_text: str | None, kr_name: str = "kr.jsonl") -> Callable[[Path], None]:
    """A finished factory run whose results.json records `kr_source` (None: a file that does not exist)."""
    def setup(cwd: Path) -> None:
        run = write_run(cwd / "runs", CE[0], loss="ce")
        source = cwd / kr_name
        if kr_text is not None:
            source.write_text(kr_text)
        results = json.loads((run / "results.json").read_text())
        results["kr_source"] = str(source)
        (run / "results.json").write_text(json.dumps(results))
        (cwd / "leaderboards").mkdir(exist_ok=True)
    return setup


def _results_non_utf8(cwd: Path) -> None:
    run = write_run(cwd / "runs", CE[0], loss="ce")
    (run / "results.json").write_bytes((run / "results.json").read_bytes().replace(b'"ce"', b'"c\xe9"', 1))
    (cwd / "leaderboards").mkdir(exist_ok=True)


def _register_corpus(name: str) -> None:
    """A corpus name becomes a folder (data/<name>/kr.jsonl) and part of cache file names."""
    from fortifai_bench.corpora import register_corpus

    register_corpus(name, lambda data_dir, part: None)


def _forged_run(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """A finished factory run whose results.json was edited by hand after the run."""
    def setup(cwd: Path) -> None:
        run = write_run(cwd / "runs", CE[0], loss="ce")
        results = json.loads((run / "results.json").read_text())
        edit(results)
        (run / "results.json").write_text(json.dumps(results))
        (cwd / "leaderboards").mkdir(exist_ok=True)
    return setup


def _forge_score_consistently(results: dict) -> None:
    """Stage 2's score raised to 1.0 and every number derived from the scores rewritten to match: only the
    per-question bits still tell the truth."""
    from fortifai_bench.metrics import area_under_curve, failure

    results["stages"][2]["score"] = 1.0
    scores = [st["score"] for st in results["stages"]]
    fail = failure(scores, results["failure_threshold"])
    results.update(time_to_failure=fail.time, auc=area_under_curve(scores), final_score=scores[-1])
    if "failure" in results:
        results["failure"] = fail.to_dict()


def _read_questions(rel: str) -> Callable[[Path], object]:
    from fortifai_bench.kr.schema import read_questions

    return lambda cwd: read_questions(cwd / rel)


def _infinite_kl(cwd: Path) -> None:
    run = write_run(cwd / "runs", CE[0], loss="ce")
    results = json.loads((run / "results.json").read_text())
    results["stages"][1]["kl_split0"] = float("inf")
    (run / "results.json").write_text(json.dumps(results))  # Python writes Infinity; JSON has no such number
    (cwd / "leaderboards").mkdir()


def _publish_library(cwd: Path):
    from fortifai_bench.leaderboard import publish

    return publish([cwd / "runs" / "collapse_facts-ce-0"], root=cwd / "leaderboards")


FACTS_KR = ["kr", "build", "--corpus", "facts", "--generator", "facts", "--splits", "6"]
RULES_KR = ["kr", "build", "--generator", "rules", "--splits", "1", "--out", "kr.jsonl"]
OPENAI_KR = ["kr", "build", "--corpus", "text:corpus.txt", "--generator", "openai", "--llm", "test-llm",
             "--base-url", "{url}", "--splits", "1", "--out", "kr.jsonl", "--cache", "cache.jsonl"]
CORPUS = "para0: The river Alder is 12 km long. Its source lies near Bron.\n\npara1: The bridge was built in 1812.\n"


CASES = [
    # --- losses: constructors, argument types, YAML values ----------------------------------------------
    Case("loss-ctor-raises", PLAN + ["--loss", "bi_losses1:Bad"], ("bi_losses1:Bad", "raised ValueError", "cap is not"),
         setup=_write("bi_losses1.py", LOSSES)),
    Case("loss-ctor-sys-exit", PLAN + ["--loss", "bi_losses2:Exits"], ("bi_losses2:Exits", "raised SystemExit"),
         setup=_write("bi_losses2.py", LOSSES)),
    Case("loss-arg-wrong-type", PLAN + ["--loss", "tce", "--loss-args", "gamma=abc"],
         ("'tce'", "gamma must be a number", "'abc'")),
    Case("loss-arg-bool-for-number", PLAN + ["--loss", "tce", "--loss-args", "gamma=true"], ("gamma must be a number",)),
    Case("loss-arg-not-finite", PLAN + ["--loss", "focal", "--loss-args", "gamma=.inf"], ("finite",)),
    Case("loss-arg-text-for-flag", PLAN + ["--loss", "focal", "--loss-args", "detach_weight=maybe"],
         ("detach_weight must be true or false",)),
    Case("loss-arg-yaml-syntax", PLAN + ["--loss", "tce", "--loss-args", "gamma=[1"],
         ("--loss-args gamma=", "invalid YAML")),
    Case("loss-arg-python-tag", PLAN + ["--loss", "tce", "--loss-args", "gamma=!!python/object/apply:os.getcwd []"],
         ("--loss-args gamma=", "invalid YAML")),
    Case("loss-arg-mapping", PLAN + ["--loss", "tce", "--loss-args", "gamma={a: 1}"], ("a mapping is not a loss argument",)),
    Case("loss-arg-twice", PLAN + ["--loss", "tce", "--loss-args", "gamma=0.8,gamma=0.7"], ("gamma given twice",)),
    Case("loss-arg-and-spec-value", PLAN + ["--loss", "tce:0.9", "--loss-args", "gamma=0.8"],
         ("'tce:0.9'", "gamma given twice")),
    Case("loss-arg-no-key", PLAN + ["--loss", "tce", "--loss-args", "=0.8"], ("bad --loss-args item", "key=value")),
    Case("loss-arg-unknown", PLAN + ["--loss", "tce", "--loss-args", "gamm=0.8"], ("'tce'", "bad arguments")),
    Case("loss-arg-not-json", PLAN + ["--loss", "bi_losses3:Anything", "--loss-args", "since=2020-01-01"],
         ("bi_losses3:Anything", "cannot be recorded as JSON"), setup=_write("bi_losses3.py", LOSSES)),
    Case("loss-spec-value-not-number", PLAN + ["--loss", "tce:abc"], ("'tce:abc'", "a number")),
    Case("loss-spec-negative", PLAN + ["--loss", "focal:-1"], ("'focal:-1'", "gamma must be >= 0")),
    Case("loss-spec-path", PLAN + ["--loss", "../evil:Loss"], ("'../evil:Loss'", "not a module name")),
    Case("loss-spec-missing-module", PLAN + ["--loss", "no_such_module_bi:Loss"], ("cannot import 'no_such_module_bi'",)),
    Case("loss-module-raises-on-import", PLAN + ["--loss", "bi_raises:Loss"],
         ("'bi_raises:Loss'", "cannot import", "RuntimeError: no GPU here"),
         setup=_write("bi_raises.py", "raise RuntimeError('no GPU here')\n"), unimported=("bi_raises",)),
    Case("loss-module-syntax-error", PLAN + ["--loss", "bi_syntax:Loss"], ("cannot import", "SyntaxError"),
         setup=_write("bi_syntax.py", "def broken(:\n"), unimported=("bi_syntax",)),
    Case("loss-module-sys-exit-on-import", PLAN + ["--loss", "bi_exits:Loss"], ("cannot import", "sys.exit(4)"),
         setup=_write("bi_exits.py", "import sys\nsys.exit(4)\n"), subprocess=True),
    Case("loss-overrides-nothing", PLAN + ["--loss", "bi_losses4:Nothing"], ("overrides neither reduce nor forward",),
         setup=_write("bi_losses4.py", LOSSES)),
    Case("loss-not-callable", PLAN + ["--loss", "bi_losses5:NOT_CALLABLE"], ("not callable",),
         setup=_write("bi_losses5.py", LOSSES)),
    Case("train-loss-arg-wrong-type", ["train", "--text-file", "texts.txt", "--loss", "tce", "--loss-args", "gamma=abc"],
         ("gamma must be a number",), setup=_write("texts.txt", "one text\n")),
    # --- task overrides ----------------------------------------------------------------------------------
    Case("set-yaml-syntax", PLAN + ["--set", "train.epochs=[1,"], ("override 'train.epochs=[1,'", "invalid YAML")),
    Case("set-python-tag", PLAN + ["--set", "train.epochs=!!python/object/apply:os.getcwd []"],
         ("override", "invalid YAML", "constructor")),
    Case("set-no-equals", PLAN + ["--set", "train.epochs"], ("bad override", "field.path=value")),
    # --- KR question files: every consumer reads them through read_questions ---------------------------
    Case("kr-true-equals-false", call=_read_questions("q.jsonl"), setup=_write("q.jsonl", TIE),
         words=("q.jsonl", "1 of 3 question(s) cannot be scored", "1 true equals false", "q.jsonl:2")),
    Case("kr-equal-after-whitespace", call=_read_questions("q.jsonl"), setup=_write("q.jsonl", TIE_SPACES),
         words=("q.jsonl:3", "true equals false")),
    Case("kr-empty-context", call=_read_questions("q.jsonl"), setup=_write("q.jsonl", EMPTY_CONTEXT),
         words=("q.jsonl:1", "empty context")),
    Case("kr-empty-continuation", call=_read_questions("q.jsonl"), setup=_write("q.jsonl", EMPTY_CONT),
         words=("2 of 3", "2 empty continuation", "q.jsonl:2")),
    Case("kr-duplicate-id", call=_read_questions("q.jsonl"), setup=_write("q.jsonl", DUPLICATE_ID),
         words=("q.jsonl:3", "duplicate id")),
    Case("kr-duplicate-question", call=_read_questions("q.jsonl"), setup=_write("q.jsonl", DUPLICATE_QUESTION),
         words=("2 of 4", "2 duplicate question", "q.jsonl:3")),
    Case("kr-authors-format-tie", call=_read_questions("a.json"), setup=_write("a.json", AUTHORS_TIE),
         words=("a.json: item 1", "true equals false")),
    Case("kr-non-utf8-past-first-block", ["kr", "stats", "q.jsonl"], ("q.jsonl:4", "not UTF-8"),
         setup=_write("q.jsonl", NON_UTF8_LINE3)),
    Case("kr-binary-file", ["kr", "stats", "q.jsonl"], ("q.jsonl", "not UTF-8"),
         setup=_write("q.jsonl", bytes(range(128, 256)) * 40)),
    Case("kr-file-is-folder", ["kr", "stats", "q.jsonl"], ("q.jsonl", "folder"), setup=_mkdir("q.jsonl")),
    Case("kr-deeply-nested", ["kr", "stats", "q.jsonl"], ("q.jsonl", "nested too deeply"),
         setup=_write("q.jsonl", "[" * 100000 + "]" * 100000 + "\n")),
    Case("corpus-name-escapes", call=lambda cwd: _register_corpus("../../outside"),
         words=("corpus name '../../outside'", "plain file name")),
    # --- kr build: corpora from files, --out ---------------------------------------------------------------
    Case("kr-build-out-is-folder", FACTS_KR + ["--out", "out"], ("out is a folder",), setup=_mkdir("out")),
    Case("kr-build-out-under-a-file", FACTS_KR + ["--out", "afile/kr.jsonl"], ("afile is a file",),
         setup=_write("afile", "x")),
    Case("corpus-binary-file", RULES_KR + ["--corpus", "text:data.bin"], ("data.bin:1", "not UTF-8"),
         setup=_write("data.bin", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))),
    Case("corpus-nul-bytes", RULES_KR + ["--corpus", "text:notes.txt"], ("notes.txt:3", "NUL byte"),
         setup=_write("notes.txt", "First.\n\nSecond\x00part.\n")),
    Case("corpus-folder", RULES_KR + ["--corpus", "text:docs"], ("text:docs", "is a folder"),
         setup=_all(_mkdir("docs"), _write("docs/a.bin", bytes(range(256))))),
    Case("corpus-jsonl-non-utf8", ["corpus", "show", "jsonl:rows.jsonl:text"], ("rows.jsonl:2", "not UTF-8"),
         setup=_write("rows.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n')),
    Case("corpus-jsonl-nul", ["corpus", "show", "jsonl:rows.jsonl:text"], ("rows.jsonl: row 2", "NUL byte"),
         setup=_write("rows.jsonl", '{"text": "fine"}\n{"text": "bin\\u0000ary"}\n')),
    # --- the OpenAI-compatible generator ---------------------------------------------------------------
    Case("openai-200-not-json", OPENAI_KR, ("paragraph(s) failed", "not JSON", "base URL"),
         setup=_write("corpus.txt", CORPUS), subprocess=True, other_stderr=("openai questions (",),
         server=Reply(raw=b"{this is not json", headers={"Content-Type": "application/json"})),
    Case("openai-cache-is-folder", OPENAI_KR, ("answer cache", "cache.jsonl", "is a folder"),
         setup=_all(_write("corpus.txt", CORPUS), _mkdir("cache.jsonl")), server=Reply()),
    # --- leaderboards: show, render, publish ---------------------------------------------------------------
    Case("render-html-is-folder", ["leaderboard", "render", "leaderboards/collapse_facts.json", "--html", "site"],
         ("site is a folder",), setup=_all(_board, _mkdir("site"))),
    Case("render-html-is-the-board", ["leaderboard", "render", "leaderboards/collapse_facts.json", "--html",
                                      "leaderboards/collapse_facts.json"], ("is the board itself",), setup=_board),
    Case("board-mean-edited", ["leaderboard", "show", "leaderboards/collapse_facts.json"],
         ("entry 0", "field auc", "per-seed values give"), setup=_edited_board(_set(["entries", 0, "auc", "mean"], 0.99))),
    Case("board-rank-edited", ["leaderboard", "show", "leaderboards/collapse_facts.json"],
         ("time_to_failure.rank_value",),
         setup=_edited_board(_set(["entries", 0, "time_to_failure", "rank_value"], 3.0))),
    Case("board-stage-ci-edited", ["leaderboard", "show", "leaderboards/collapse_facts.json"],
         ("stages[1].score", "ci"), setup=_edited_board(_set(["entries", 0, "stages", 1, "score", "ci"], [0.9, 1.0]))),
    Case("board-protocol-edited", ["leaderboard", "show", "leaderboards/collapse_facts.json"], ("protocol_hash",),
         setup=_edited_board(_set(["protocol", "stages"], 99))),
    Case("board-duplicate-entry", ["leaderboard", "show", "leaderboards/collapse_facts.json"],
         ("entry 1", "same task, loss, model and seeds as entry 0"), setup=_edited_board(_duplicate_entry)),
    Case("board-entry-name-path", ["leaderboard", "show", "leaderboards/collapse_facts.json"],
         ("entry 0", "field name", "does not match"), setup=_edited_board(_set(["entries", 0, "name"], "../../x"))),
    Case("board-non-utf8", ["leaderboard", "show", "board.json"], ("board.json:1", "not UTF-8"),
         setup=_write("board.json", b'{"format": "\xff"}')),
    Case("publish-onto-relabelled-entry", ["publish", "--root", "leaderboards", "new/collapse_facts-focal_2-0"],
         ("entry 0", "is not the name its task, loss, model and seeds give"),
         setup=_all(_edited_board(_set(["entries", 0, "loss", "spec"], "mine")),
                    lambda cwd: write_run(cwd / "new", CE[0], loss="focal:2"))),
    Case("publish-jobs-zero", ["publish", "--jobs", "0", "--root", "leaderboards", "new/collapse_facts-ce-0"],
         ("--jobs must be >= 1, got 0",), setup=_all(_mkdir("leaderboards"), lambda cwd: write_run(cwd / "new", CE[0]))),
    Case("publish-to-folder", ["publish", "--root", "leaderboards", "--to", "leaderboards/b.json", "new/collapse_facts-ce-0"],
         ("b.json", "folder"), setup=_all(_mkdir("leaderboards/b.json"), lambda cwd: write_run(cwd / "new", CE[0]))),
    Case("publish-outside-root", ["publish", "--root", "leaderboards", "--to", "../escaped.json", "new/collapse_facts-ce-0"],
         ("outside the leaderboards folder",), setup=_all(_mkdir("leaderboards"), lambda cwd: write_run(cwd / "new", CE[0]))),
    Case("publish-kr-true-equals-false", ["publish", "--root", "leaderboards", "runs/collapse_facts-ce-0"],
         ("scored on KR questions that are refused", "1 true equals false"), setup=_run_with_kr(TIE)),
    Case("publish-kr-source-missing", ["publish", "--root", "leaderboards", "runs/collapse_facts-ce-0"],
         ("KR question file", "not on this machine"), setup=_run_with_kr(None)),
    Case("publish-forged-time-to-failure", ["publish", "--root", "leaderboards", "runs/collapse_facts-ce-0"],
         ("results.json", "field time_to_failure", "the stage scores give"),
         setup=_forged_run(_set(["time_to_failure"], None))),
    Case("publish-forged-stage-score", ["publish", "--root", "leaderboards", "runs/collapse_facts-ce-0"],
         ("field stages[2].score", "items.split0_correct[2]"),
         setup=_forged_run(_forge_score_consistently)),
    Case("publish-forged-auc", ["publish", "--root", "leaderboards", "runs/collapse_facts-ce-0"],
         ("field auc", "the stage scores give"), setup=_forged_run(_set(["auc"], 0.99))),
    Case("publish-results-non-utf8", ["publish", "--root", "leaderboards", "runs/collapse_facts-ce-0"],
         ("results.json", "not UTF-8"), setup=_results_non_utf8),
    Case("publish-infinite-kl", call=_publish_library, setup=_infinite_kl,
         words=("kl_split0", "inf", "JSON cannot hold", "refusing to write")),
]


# ----------------------------------------------------------------------------------------------- running

def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`: (kind, size, sha256) - what must not change."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel] = ("dir",)
        else:
            data = path.read_bytes()
            out[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return out


def _run_case(case: Case, cwd: Path, capsys, url: str | None) -> tuple[int, str]:
    argv = [a.replace("{cwd}", str(cwd)).replace("{url}", url or "") for a in (case.argv or [])]
    if case.subprocess:
        env = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run([sys.executable, "-m", "fortifai_bench", *argv], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stderr
    capsys.readouterr()
    if case.call is not None:
        try:
            case.call(cwd)
            code = 0
        except FortifaiError as exc:  # what the CLI does with it
            print(f"fortifai-bench: error: {exc}", file=sys.stderr)
            code = 2
    else:
        code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value.replace("{cwd}", str(cwd)))
    if case.setup:
        case.setup(cwd)
    importlib.invalidate_caches()
    path_before = list(sys.path)
    before, outside_before = snapshot(cwd), snapshot(tmp_path)
    if case.server is not None:
        with ChatServer(default=case.server) as server:
            code, err = _run_case(case, cwd, capsys, server.url)
    else:
        code, err = _run_case(case, cwd, capsys, None)

    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("fortifai-bench: error: ")]
    assert "Traceback" not in err and "Task exception was never retrieved" not in err, err
    assert len(errors) == 1, err
    others = [line for line in lines if line not in errors and not line.startswith(case.other_stderr or ("\0",))]
    assert not others, err
    for word in case.words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    assert code == case.code
    assert snapshot(cwd) == before, "the working folder changed"
    assert snapshot(tmp_path) == outside_before, "something was written beside the working folder"
    assert sys.path == path_before, "sys.path changed"
    leaked = [m for m in case.unimported if m in sys.modules]
    assert not leaked, f"half-imported user modules left in sys.modules: {leaked}"


def test_the_matrix_is_large_and_ids_are_unique():
    assert len(CASES) >= 40 and len(COLLAPSE_CASES) >= 20
    ids = [c.id for c in CASES + COLLAPSE_CASES]
    assert len(set(ids)) == len(ids)


# ----------------------------------------------------------------------------------------------- not errors, but part of the same promise

def test_a_byte_order_mark_is_not_an_error(tmp_path):
    """Windows editors start UTF-8 files with a BOM; JSON parsers reject it, so the readers drop it."""
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.io import read_json
    from fortifai_bench.kr.schema import read_questions

    (tmp_path / "q.jsonl").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    (tmp_path / "a.json").write_bytes(b"\xef\xbb\xbf" + AUTHORS_TIE.replace('" b. "', '"d."').encode())
    (tmp_path / "notes.txt").write_bytes(b"\xef\xbb\xbfFirst paragraph.\n\nSecond.\n")
    assert [q.id for q in read_questions(tmp_path / "q.jsonl")] == ["t/p0/q0", "t/p1/q0", "t/p2/q0"]
    assert len(read_questions(tmp_path / "a.json")) == 2 and isinstance(read_json(tmp_path / "a.json"), list)
    assert get_corpus(f"text:{tmp_path / 'notes.txt'}").texts() == ["First paragraph.", "Second."]


def test_a_killed_base_build_leaves_nothing_once_the_next_call_runs(tmp_path):
    """io.remove_orphan_temps: a temporary of a dead process goes, a live process's stays (collapse/base.py
    calls it before it looks for the cached base)."""
    from fortifai_bench.io import atomic_dir, remove_orphan_temps

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache = tmp_path / "base"
    (cache / f".tiny-abc.{dead.pid}-x1y2.tmp" / "model").mkdir(parents=True)
    (cache / f".tiny-abc.{dead.pid}-x1y2.tmp" / "model" / "weights").write_bytes(b"half a model")
    live = cache / f".tiny-abc.{os.getpid()}-k9.tmp"
    live.mkdir()
    other = cache / f".tiny-zzz.{dead.pid}-q.tmp"
    other.mkdir()
    removed = remove_orphan_temps(cache, "tiny-abc")
    assert [p.name for p in removed] == [f".tiny-abc.{dead.pid}-x1y2.tmp"]
    assert live.is_dir() and other.is_dir()  # a live writer's, and another target's, are left alone
    with atomic_dir(cache / "tiny-abc") as tmp:
        assert tmp.name.startswith(f".tiny-abc.{os.getpid()}-")  # the pid that makes the test above possible
        (tmp / "ok").write_text("done")
    assert (cache / "tiny-abc" / "ok").read_text() == "done"


def test_base_model_removes_the_orphan_of_a_killed_build(tmp_path, monkeypatch):
    from fortifai_bench.collapse import base
    from fortifai_bench.collapse.config import load_task

    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    task = load_task("collapse_facts", ["model.name=tiny"])
    monkeypatch.setattr(base, "base_key", lambda task: "feedbeef")  # a cached base, without building one
    path = base.base_dir(task)
    (path / "model").mkdir(parents=True)
    (path / "model" / "config.json").write_text("{}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = path.parent / f".{path.name}.{dead.pid}-abc.tmp"
    orphan.mkdir()
    assert base.base_model(task, progress=False) == str(path / "model")
    assert not orphan.exists()


# ================================================================================================ collapse
# The lead adds the collapse cases here (they own fortifai_bench/collapse/): task name with ../,
# --resume with bad records (config.yaml without `config`, invalid YAML, metrics.json `{}`, non-UTF-8
# metrics.json), a task YAML with non-UTF-8 bytes (collapse/config.py can read it with
# fortifai_bench.io.read_yaml), eval.kr= a file of tied questions, --seeds 2-0, disk full while saving.
# Append Case(...) objects to COLLAPSE_CASES; they run through the same checks as the matrix above.

# 10 levels of 9 aliases each: 9^10 (3.5 billion) values once expanded, from a few hundred bytes
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefghi", "bcdefghij")) + "task: x\n"
BOMB_FLOW = "[&a [1, 1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(  # the same in one line (flow style)
    f"&{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefghi", "bcdefghij")) + "]"
INPLACE = '''
from fortifai_bench.losses import Loss

class InPlace(Loss):
    def forward(self, logits, labels):
        loss = (logits * logits).mean()  # the product's gradient needs the logits as they were
        logits.mul_(0.5)                 # and here they change, in place
        return loss
'''


def _run_record(config_text: str | bytes) -> Callable[[Path], None]:
    return _write("run/config.yaml", config_text)


def _micro_record(cwd: Path, **doc) -> None:
    """A run folder whose config.yaml records a real (micro) task, plus what `doc` adds or replaces."""
    import yaml

    from fortifai_bench.collapse.config import load_task

    task = load_task("collapse_facts", ["stages=2", "paragraphs_per_split=6", "eval.heldout_paragraphs=5"])
    record = {"format": "fortifai-bench/run@1", "config": task.to_dict(),
              "loss": {"spec": "ce", "target": "fortifai_bench.losses:CE", "args": {}}, "seed": 0}
    record.update(doc)
    (cwd / "run").mkdir()
    (cwd / "run" / "config.yaml").write_text(yaml.safe_dump(record))


def _linked_stage(cwd: Path) -> None:
    """A run record whose stage_0 is a symlink to a folder beside the run: a resume would write there."""
    _micro_record(cwd)
    (cwd / "outside").mkdir()
    (cwd / "outside" / "keep.txt").write_text("not the run's")
    (cwd / "run" / "stage_0").symlink_to(cwd / "outside")


COLLAPSE_CASES: list[Case] = [
    Case("collapse-seeds-backwards", PLAN + ["--seeds", "2-0"], ("--seeds", "2-0", "backwards")),
    Case("collapse-seeds-word", PLAN + ["--seeds", "0,a"], ("--seeds", "'a'")),
    Case("collapse-seeds-repeated", PLAN + ["--seeds", "0,1,1"], ("--seeds", "repeats")),
    Case("collapse-threads-zero", ["collapse", "--threads", "0", "--plan"], ("--threads", ">= 1")),
    Case("collapse-jobs-zero", PLAN + ["--jobs", "0"], ("--jobs", ">= 1")),
    # --threads 1: the CLI sets the count before the collapse command refuses, and this process stays at 1
    Case("collapse-jobs-with-threads", PLAN + ["--jobs", "2", "--threads", "1"], ("--jobs", "one thread")),
    Case("collapse-set-yaml-syntax", PLAN + ["--set", "train.epochs=[1,"], ("train.epochs", "invalid YAML")),
    Case("collapse-set-unknown-field", PLAN + ["--set", "train.epoch=3"], ("unknown field", "train.epoch")),
    Case("collapse-set-wrong-type", PLAN + ["--set", "train.epochs=many"], ("train.epochs", "integer")),
    Case("collapse-task-missing", ["collapse", "--task", "nowhere.yaml", "--plan"], ("nowhere.yaml", "not found")),
    Case("collapse-task-not-utf8", ["collapse", "--task", "bad.yaml", "--plan"], ("bad.yaml:2", "not UTF-8"),
         setup=_write("bad.yaml", b"task: x\ndescription: \xff\xfe\n")),
    Case("collapse-task-not-a-mapping", ["collapse", "--task", "list.yaml", "--plan"], ("list.yaml", "mapping"),
         setup=_write("list.yaml", "- 1\n- 2\n")),
    Case("collapse-task-python-tag", ["collapse", "--task", "tag.yaml", "--plan"], ("tag.yaml",),
         setup=_write("tag.yaml", "task: !!python/object/apply:os.system ['true']\n")),
    Case("collapse-loss-unknown", PLAN + ["--loss", "nope"], ("nope",)),
    Case("collapse-eval-kr-missing", ["collapse", "--quiet", "--set", "eval.kr=none.jsonl"],
         ("eval.kr", "none.jsonl")),
    Case("collapse-eval-kr-tied", ["collapse", "--quiet", "--set", "eval.kr=tied.jsonl"],
         ("tied.jsonl", "true"), setup=_write("tied.jsonl", TIE)),
    Case("collapse-resume-not-a-run", ["collapse", "--resume", "run"], ("run", "no config.yaml"), setup=_mkdir("run")),
    Case("collapse-resume-invalid-yaml", ["collapse", "--resume", "run"], ("config.yaml", "invalid YAML"),
         setup=_run_record("config: [1,\n")),
    Case("collapse-resume-not-utf8", ["collapse", "--resume", "run"], ("config.yaml", "UTF-8"),
         setup=_run_record(b"config: \xff\n")),
    Case("collapse-resume-no-config", ["collapse", "--resume", "run"], ("config.yaml", "field config"),
         setup=_run_record("loss: {spec: ce}\n")),
    Case("collapse-resume-no-loss-spec", ["collapse", "--resume", "run"], ("config.yaml", "loss"),
         setup=lambda cwd: _micro_record(cwd, loss={"args": {}})),
    Case("collapse-resume-with-task", ["collapse", "--resume", "run", "--task", "collapse_facts"],
         ("--resume", "--task"), setup=lambda cwd: _micro_record(cwd)),
    Case("collapse-resume-empty-metrics", ["collapse", "--quiet", "--resume", "run"],
         ("metrics.json", "not a finished stage record", "stage 0"),
         setup=lambda cwd: (_micro_record(cwd), _write("run/stage_0/metrics.json", "{}")(cwd))),
    Case("collapse-resume-metrics-not-utf8", ["collapse", "--quiet", "--resume", "run"], ("metrics.json",),
         setup=lambda cwd: (_micro_record(cwd), _write("run/stage_0/metrics.json", b'{"a": "\xff"}')(cwd))),
    Case("collapse-resume-changed-config", ["collapse", "--quiet", "--resume", "run", "--epochs", "7"],
         ("different config", "train.epochs", "-> 7"), setup=lambda cwd: _micro_record(cwd)),
    # --- issue 28: hostile files and numbers -------------------------------------------------------------
    Case("collapse-task-alias-bomb", ["collapse", "--task", "bomb.yaml", "--plan"],
         ("bomb.yaml", "more than 100,000 values once its aliases are expanded"), setup=_write("bomb.yaml", BOMB)),
    Case("collapse-task-nested-500-deep", ["collapse", "--task", "deep.yaml", "--plan"],
         ("deep.yaml", "invalid YAML", "nested"), setup=_write("deep.yaml", "task: x\nmodel: " + "[" * 500 + "]" * 500)),
    Case("collapse-resume-record-alias-bomb", ["collapse", "--resume", "run"], ("config.yaml", "alias bomb"),
         setup=_run_record(BOMB)),
    Case("collapse-set-alias-bomb", PLAN + ["--set", "eval.lm_eval_tasks=" + BOMB_FLOW], ("override", "alias bomb")),
    Case("collapse-seeds-huge-range", PLAN + ["--seeds", "0-99999999999"], ("--seeds", "at most 10,000")),
    Case("collapse-seed-too-large", PLAN + ["--seeds", "99999999999"], ("--seeds", "above 4294967295")),
    Case("collapse-nproc-negative", PLAN + ["--nproc", "-2"], ("--nproc must be >= 1", "-2")),
    Case("collapse-stages-huge", PLAN + ["--stages", "100000"], ("stages must be between 1 and 1000", "100000")),
    Case("collapse-resume-empty-path", ["collapse", "--resume", ""], ("--resume", "empty path")),
    Case("collapse-resume-stage-is-a-symlink", ["collapse", "--quiet", "--resume", "run"],
         ("run/stage_0", "is a symbolic link", "outside"), setup=lambda cwd: _linked_stage(cwd)),
    Case("collapse-loss-changes-logits-in-place", ["collapse", "--smoke", "-q", "--loss", "bi_inplace:InPlace"],
         ("'bi_inplace:InPlace'", "backward pass failed", "in place"), setup=_write("bi_inplace.py", INPLACE)),
    Case("collapse-cache-is-a-file", ["collapse", "--smoke", "-q"], ("FORTIFAI_CACHE", "is a file"),
         setup=_write("cachefile", "x"), env={"FORTIFAI_CACHE": "{cwd}/cachefile"}),
    Case("collapse-cache-cannot-be-created", ["collapse", "--smoke", "-q"], ("FORTIFAI_CACHE", "cannot create it"),
         env={"FORTIFAI_CACHE": "/proc/fortifai-bench-cache"}),
    Case("collapse-model-cannot-load", ["collapse", "--smoke", "-q", "--model", "{cwd}/nomodel", "--out", "runs"],
         ("nomodel",), setup=_mkdir("runs")),
    Case("compare-n-boot-negative", ["compare", "--n-boot", "-1", "a", "b"], ("--n-boot must be >= 1", "-1")),
    Case("leaderboard-show-dev-zero", ["leaderboard", "show", "/dev/zero"], ("/dev/zero", "not a regular file")),
]


@pytest.mark.parametrize("case", COLLAPSE_CASES, ids=[c.id for c in COLLAPSE_CASES])
def test_bad_collapse_input(case: Case, tmp_path, monkeypatch, capsys):
    test_bad_input(case, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("name", ["../../ESCAPED", "/abs/path", "a/../../b", "..", ".", "x\\..\\y", "ok_name-1.2"])
def test_no_task_or_loss_name_places_a_run_outside_out(tmp_path, name):
    """Every name that becomes a path component is sanitised: the run folder is always a child of --out."""
    import dataclasses

    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.rundir import open_run

    task = dataclasses.replace(load_task("collapse_facts"), task=name)
    out = tmp_path / "out"
    for mode in ("accumulate", "clean"):
        run = open_run(dataclasses.replace(task, mode=mode), {"spec": name, "target": "x", "args": {}}, out=out)
        assert run.parent == out and run.name not in (".", "..") and "/" not in run.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ================================================================================================ long inputs
# Texts and KR contexts longer than the model's window (issue 28 item 4): left-truncated to the window
# everywhere the model reads them, and counted where a score depends on it.

WINDOW = 32


@pytest.fixture(scope="module")
def short_window_model():
    """A tiny GPT-2 of a 32-token window (randomly initialised: these tests check positions, not knowledge)."""
    from fortifai_bench.models import TinyConfig, build_tiny

    texts = [f"Person {i} was born in Dravia in 18{i:02d} and lived by the river Alder." for i in range(40)]
    model, tokenizer = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2,
                                                    n_positions=WINDOW), seed=0)
    return model.eval(), tokenizer


def _long_questions() -> list[dict]:
    preamble = "The river Alder runs past the old mill and the bridge of 1812. " * 8  # about 130 tokens
    return [_q(0, context=preamble + "Person 0 was born in"),               # context far past the window
            _q(1),                                                           # fits
            _q(2, true="Dravia in 1843 by the mill.")]  # a longer continuation


def test_kr_context_longer_than_the_window_is_cut_on_the_left(short_window_model):
    """All three scoring paths agree on a batch that mixes a context past the window with a long continuation
    (the KV-cache path gave padded continuation slots positions past the window: IndexError), and the cut
    question scores exactly as its context's last tokens alone, which is what lm-eval feeds the model."""
    import torch

    from fortifai_bench.kr import encode
    from fortifai_bench.kr.scoring import score

    model, tokenizer = short_window_model
    questions = _long_questions()
    shared = score(model, tokenizer, questions, batch_size=3)
    naive = score(model, tokenizer, questions, batch_size=3, shared_context=False)
    assert shared.truncated == naive.truncated == [True, False, False]
    assert shared.logp_true == pytest.approx(naive.logp_true, abs=1e-4)
    assert shared.logp_false == pytest.approx(naive.logp_false, abs=1e-4)

    item = encode.encode_items(questions[:1], tokenizer, WINDOW)[0]
    assert item.cut > 0 and len(item.ctx) + max(map(len, item.conts)) == WINDOW + 1
    seq = item.ctx + item.conts[0]  # the last WINDOW + 1 tokens, one forward pass of WINDOW (lm-eval's cut)
    with torch.inference_mode():
        logp = model(input_ids=torch.tensor([seq[:-1]])).logits[0].log_softmax(-1)
    n = len(item.conts[0])
    expected = sum(logp[len(seq) - 1 - n + j, tok].item() for j, tok in enumerate(item.conts[0]))
    assert shared.logp_true[0] == pytest.approx(expected, abs=1e-4)


def test_token_probs_scores_every_token_of_a_sequence_longer_than_the_window(short_window_model):
    import torch

    from fortifai_bench.collapse.probs import token_probs

    model, _ = short_window_model
    g = torch.Generator().manual_seed(0)
    long = torch.randint(1, 300, (3 * WINDOW + 5,), generator=g).tolist()
    short = long[:20]
    probs_long, probs_short = token_probs(model, [long, short], batch_size=2)
    assert len(probs_long) == len(long) - 1 and len(probs_short) == len(short) - 1

    def direct(ids, t):  # p(ids[t]) from the window that scores it: windows of 32 every 16 tokens
        stride = WINDOW // 2
        first = WINDOW + (t - WINDOW) // stride * stride if t >= WINDOW else 0
        start = max(0, min(first + stride, len(ids)) - WINDOW) if t >= WINDOW else 0
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids[start:t + 1]])).logits[0, -2]
        return logits.log_softmax(-1)[ids[t]].exp().item()

    for t in (1, 19, WINDOW - 1, WINDOW, WINDOW + 7, 2 * WINDOW + 3, len(long) - 1):
        assert probs_long[t - 1] == pytest.approx(direct(long, t), rel=1e-4), t
    assert probs_short == pytest.approx(probs_long[:19], rel=1e-5)  # the first window: the same context


def test_regeneration_rewrites_a_paragraph_longer_than_the_window(short_window_model):
    from fortifai_bench.collapse.config import RegenerateSettings
    from fortifai_bench.collapse.regenerate import regenerate

    model, tokenizer = short_window_model
    texts = ["The river Alder runs past the old mill and the bridge of 1812. " * 6, "Person 3 was born in Dravia."]
    for mode in ("sequential", "original"):
        settings = RegenerateSettings(mode=mode, block=8, context=512, prompt=4, batch_size=2)
        out = regenerate(model, tokenizer, texts, settings, seed=0)
        assert [len(ids) for ids in out.ids] == [len(tokenizer(t)["input_ids"]) for t in texts]
        assert len(out.ids[0]) > 3 * WINDOW


def test_training_rows_longer_than_the_window_are_one_line(short_window_model):
    from fortifai_bench.train import TrainConfig, train

    model, tokenizer = short_window_model
    with pytest.raises(FortifaiError, match=r"train.block_size=64 is longer than the model's 32-token window"):
        train(model, tokenizer, ["a text"] * 4, "ce", TrainConfig(block_size=64, epochs=1), progress=False)


def test_a_collapse_run_counts_the_kr_questions_cut_to_the_window(tmp_path, monkeypatch):
    """A KR set with one context longer than the smoke model's 512-token window: the run ends, and every
    stage records that one question was cut (`kr_truncated`; a set that fits records nothing)."""
    rows = [json.loads(line) for line in (REPO / "data" / "facts" / "kr.jsonl").read_text().splitlines()]
    rows[0]["context"] = "Long preamble about rivers and bridges. " * 80 + rows[0]["context"]
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    assert main(["collapse", "--smoke", "-q", "--stages", "2", "--epochs", "2", "--out", "runs",
                 "--set", f"eval.kr={tmp_path / 'long.jsonl'}"]) == 0
    (results,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/results.json")]
    assert results["complete"] and [s["kr_truncated"] for s in results["stages"]] == [1, 1]


# ================================================================================================ verified boards
# publish re-scores every stage's saved model in a fresh process (fortifai_bench/verify.py, issue 28 item 1):
# real smoke runs, forged afterwards as a cheater would.

SMOKE = ["collapse", "--smoke", "-q", "--stages", "2", "--epochs", "2"]
CHEAT = '''
import fortifai_bench.kr.scoring as scoring
scoring.decide = lambda *a: True  # every KR question "remembered"; training is untouched
from fortifai_bench.losses import CE as Cheat  # noqa: E402
'''


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict[str, Path]:
    """Two real 2-stage smoke runs: plain ce, and a loss module that patches the KR scorer on import."""
    root = tmp_path_factory.mktemp("smoke")
    (root / "cheat_losses.py").write_text(CHEAT)
    here = os.getcwd()
    os.chdir(root)
    sys.path.insert(0, str(root))
    try:
        assert main(SMOKE + ["--out", "runs"]) == 0
        assert main(SMOKE + ["--out", "cheat", "--loss", "cheat_losses:Cheat"]) == 0
    finally:
        os.chdir(here)
        sys.path.remove(str(root))
        sys.modules.pop("cheat_losses", None)
        import fortifai_bench.kr.scoring as scoring  # undo the cheat in this test process
        from fortifai_bench.kr.methods import decide
        scoring.decide = decide
    (run,) = (root / "runs").iterdir()
    (cheat,) = (root / "cheat").iterdir()
    return {"ce": run, "cheat": cheat}


def _copy_run(name: str, edit: Callable[[dict], None] | None = None, link: str | None = None,
              remove: str | None = None):
    """A copy of smoke run `name` at ./run, its results.json edited; `link`: that folder of it moved out of
    the run (to ./elsewhere) and a symlink to it left in its place; `remove`: that folder deleted."""
    import shutil

    def setup(cwd: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs[name], cwd / "run")
        (cwd / "leaderboards").mkdir()
        if edit is not None:
            results = json.loads((cwd / "run" / "results.json").read_text())
            edit(results)
            (cwd / "run" / "results.json").write_text(json.dumps(results))
        if link is not None:
            shutil.move(cwd / "run" / link, cwd / "elsewhere")
            (cwd / "run" / link).symlink_to(cwd / "elsewhere")
        if remove is not None:
            shutil.rmtree(cwd / "run" / remove)
    return setup


def _all_bits_one(results: dict) -> None:
    """Every split-0 bit set to 1 and every number derived from them rewritten with the package's own functions."""
    from fortifai_bench.metrics import area_under_curve, failure

    results["items"]["split0_correct"] = ["1" * len(b) for b in results["items"]["split0_correct"]]
    for stage in results["stages"]:
        stage["score"] = 1.0
    scores = [1.0] * len(results["stages"])
    fail = failure(scores, results["failure_threshold"])
    results.update(time_to_failure=fail.time, auc=area_under_curve(scores), final_score=1.0, failure=fail.to_dict())


def _tail_score_name(results: dict) -> None:
    _all_bits_one(results)
    results["score_name"] = "kr_split0_tail"  # the per-item self-consistency check reads kr_split0 only


def _no_items(results: dict) -> None:
    _all_bits_one(results)
    del results["items"]


PUBLISH_RUN = ["publish", "--root", "leaderboards", "run"]
VERIFY_CASES = [
    Case("publish-all-bits-one", PUBLISH_RUN, ("run: results.json is not what its saved models score",
                                               "stage 0: KR-split-0 recorded 1.0000, re-scored 0.")),
    Case("publish-score-name-changed", PUBLISH_RUN, ("field score_name", "kr_split0_tail", "'kr_split0'")),
    Case("publish-items-deleted", PUBLISH_RUN, ("no per-question record",)),
    Case("publish-loss-patched-the-scorer", PUBLISH_RUN, ("stage 0: KR-split-0 recorded 1.0000, re-scored",)),
    Case("verify-stage-folder-is-a-symlink", ["verify", "run"], ("stage_1", "is a symbolic link", "elsewhere")),
    Case("verify-model-missing", ["verify", "run"], ("stage_1/model", "missing")),
]
VERIFY_SETUPS = {"publish-all-bits-one": _copy_run("ce", _all_bits_one),
                 "publish-score-name-changed": _copy_run("ce", _tail_score_name),
                 "publish-items-deleted": _copy_run("ce", _no_items),
                 "publish-loss-patched-the-scorer": _copy_run("cheat"),
                 "verify-stage-folder-is-a-symlink": _copy_run("ce", link="stage_1"),
                 "verify-model-missing": _copy_run("ce", remove="stage_1/model")}


@pytest.mark.parametrize("case", VERIFY_CASES, ids=[c.id for c in VERIFY_CASES])
def test_forged_runs_are_refused(case: Case, smoke_runs, tmp_path, monkeypatch, capsys):
    import dataclasses

    setup = VERIFY_SETUPS[case.id]
    test_bad_input(dataclasses.replace(case, setup=lambda cwd: setup(cwd, smoke_runs)), tmp_path, monkeypatch, capsys)
    assert not list((tmp_path / "work" / "leaderboards").iterdir())  # no board, no lock, no temporary


def test_a_genuine_run_verifies_publishes_and_reruns_exactly(smoke_runs, tmp_path, monkeypatch, capsys):
    import shutil

    run = shutil.copytree(smoke_runs["ce"], tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "run"]) == 0
    out = capsys.readouterr().out
    assert "compared exact" in out and out.rstrip().endswith("matches")
    (tmp_path / "leaderboards").mkdir()
    assert main(["publish", "--root", "leaderboards", "run"]) == 0
    assert "added ce_tiny_s0_" in capsys.readouterr().out
    assert main(["verify", "--rerun", "-q", "run"]) == 0  # the protocol again from config and seed: equal
    assert "rerun reproduces every recorded number" in capsys.readouterr().out
    assert (run / "results.json").read_bytes() == (smoke_runs["ce"] / "results.json").read_bytes()


def test_runs_verified_side_by_side_refuse_the_forged_one(smoke_runs, tmp_path, monkeypatch, capsys):
    """`publish --jobs 2` verifies two runs at once, each in its own process: the genuine one passes, the one
    whose loss patched the scorer is refused by name, in one line, and nothing is written; alone, the genuine
    one publishes."""
    import shutil

    shutil.copytree(smoke_runs["ce"], tmp_path / "genuine")
    shutil.copytree(smoke_runs["cheat"], tmp_path / "forged")
    (tmp_path / "leaderboards").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--root", "leaderboards", "--jobs", "2", "-q", "genuine", "forged"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "forged: results.json is not what its saved models score" in err
    assert not list((tmp_path / "leaderboards").iterdir())
    assert main(["publish", "--root", "leaderboards", "--jobs", "2", "-q", "genuine"]) == 0
    assert "added ce_tiny_s0_" in capsys.readouterr().out


# ================================================================================================ nothing escapes

def test_a_task_named_like_a_path_keeps_every_file_in_out(tmp_path, monkeypatch):
    """`task: ../../ESCAPE` names run folders and the experiment summary (.json, .png, .svg): all stay in --out."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "t.yaml").write_text('include: collapse_smoke\ntask: "../../ESCAPE"\n')
    monkeypatch.chdir(work)
    assert main(["collapse", "--task", "t.yaml", "-q", "--loss", "ce", "--loss", "tce:0.9", "--stages", "1",
                 "--epochs", "1", "--out", "runs"]) == 0
    assert sorted(p.name for p in tmp_path.rglob("*") if p.parent in (tmp_path, tmp_path / "a")) == ["a", "b"]
    summaries = sorted(p.name for p in (work / "runs").glob("summary-*"))
    assert len(summaries) >= 2 and all(n.startswith("summary-ESCAPE-") for n in summaries)


def test_a_killed_publish_leaves_no_temporary_in_the_boards_folder(tmp_path):
    """The temporary a publish killed mid-write left beside the board goes at the next publish (and git ignores
    `.*.tmp` meanwhile)."""
    from fortifai_bench.leaderboard import publish

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    boards = tmp_path / "leaderboards"
    boards.mkdir()
    stale = boards / f".collapse_facts.json.{dead.pid}-k1ll3d.tmp"
    stale.write_text('{"half": ')
    publish(write_seeds(tmp_path / "runs", CE, loss="ce"), root=boards)
    assert sorted(p.name for p in boards.iterdir()) == ["collapse_facts.json"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", f"leaderboards/{stale.name}"], cwd=REPO)
    assert ignored.returncode == 0


def test_compare_prints_no_control_characters_from_a_run(tmp_path, capsys):
    """A loss spec is a user's string: escape codes, CR/LF and bidi marks in it reach `compare`'s report escaped."""
    evil = "ce\x1b[2J\r\nfake line\u202eevil"
    a = write_seeds(tmp_path / "a", CE, loss=evil)
    b = write_seeds(tmp_path / "b", CE, loss="tce:0.9")
    assert main(["compare", ",".join(map(str, a)), ",".join(map(str, b)), "--n-boot", "10"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in ("\x1b", "\r", "\u202e")) and "\nfake line" not in out
    assert "\\x1b[2J" in out


def test_verify_rescores_in_a_fresh_process_even_from_a_patched_one(smoke_runs, monkeypatch, capsys):
    """This process's scorer says every answer is right; `verify` re-scores in a child, which it cannot reach."""
    import fortifai_bench.kr.scoring as scoring

    monkeypatch.setattr(scoring, "decide", lambda *a: True)
    assert main(["verify", str(smoke_runs["cheat"])]) == 2
    err = capsys.readouterr().err
    assert err.count("fortifai-bench: error: verify: stage 0: KR-split-0 recorded 1.0000, re-scored 0.") == 1
