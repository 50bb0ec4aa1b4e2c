"""CONTRIBUTING.md, followed start to finish on a tiny sample.

The files (code blocks whose first line is `# file: NAME`) and commands (`$ ...` lines of console blocks) are
read out of the guide itself, so a guide that drifts from the code fails here. Section 1 runs as a pip user
would: the package installed from its wheel (not editable, `test_packaging.installed`), the user's project
installed beside it with `pip install`, every command the installed `fortifai-bench`. One liberty, stated:
collapse commands get extra overrides that shrink the model and the protocol to seconds (TINY below).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fortifai_bench.cli import main
from test_packaging import installed  # noqa: F401  (fixture: the package's wheel in a fresh venv)

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "CONTRIBUTING.md"
TINY = ["--stages", "2", "--epochs", "1", "--quiet",
        "--set", "model.tiny.vocab_size=400", "--set", "model.tiny.n_layer=1", "--set", "model.tiny.n_embd=32",
        "--set", "model.tiny.n_head=2", "--set", "model.pretrain.paragraphs=60",
        "--set", "model.pretrain.train.epochs=2", "--set", "model.pretrain.train.block_size=64",
        "--set", "train.block_size=64", "--set", "paragraphs_per_split=6", "--set", "regenerate.block=16",
        "--set", "regenerate.prompt=16", "--set", "regenerate.context=64", "--set", "eval.heldout_paragraphs=4"]


def sections() -> dict[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    parts = re.split(r"^## (\d)\. .*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def files(section: str) -> dict[str, str]:
    out = {}
    for body in re.findall(r"```(?:python|yaml|toml)\n(.*?)```", section, flags=re.S):
        first, _, rest = body.partition("\n")
        m = re.match(r"# file: (\S+)$", first)
        if m:
            out[m.group(1)] = rest
    return out


def commands(section: str) -> list[str]:
    return [line[2:].strip() for block in re.findall(r"```console\n(.*?)```", section, flags=re.S)
            for line in block.splitlines() if line.startswith("$ ")]


def write_files(section: str, where: Path) -> dict[str, str]:
    found = files(section)
    for name, body in found.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(body, encoding="utf-8")
    return found


def run(cmd: str, cwd: Path, capsys) -> str:
    """One guide command: fortifai-bench in process (globs expanded as a shell would), others in a subprocess."""
    if cmd.startswith("fortifai-bench "):
        args = []
        for a in shlex.split(cmd)[1:]:
            matches = sorted(glob.glob(a, root_dir=cwd)) if "*" in a else [a]
            assert matches, f"{cmd}: {a} matches nothing in {sorted(os.listdir(cwd))}"
            args += matches
        if args[0] == "collapse" and "--plan" not in args:
            args += TINY
        capsys.readouterr()
        rc = main(args)
        out = capsys.readouterr()
        assert rc == 0, f"`{cmd}` exited {rc}: {out.err[-2000:]}"
        return out.out
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          executable="/bin/bash")
    assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"
    return proc.stdout


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_losses", raising=False)
    yield tmp_path
    sys.modules.pop("my_losses", None)


def test_guide_has_the_four_paths():
    s = sections()
    assert sorted(s) == ["1", "2", "3", "4"]
    assert set(files(s["1"])) == {"my-notes/my_notes/__init__.py", "my-notes/pyproject.toml",
                                  "my-notes/my_notes/collapse_my_notes.yaml"}
    assert set(files(s["2"])) == {"my_losses.py", "test_my_losses.py"}


def run_installed(cmd: str, cwd: Path, env_dir: Path, env: dict) -> str:
    """One guide command in a shell, as a pip user types it: `fortifai-bench` is the installed script of
    `env_dir`, `pip install` installs into `env_dir` (no index: the package's dependencies are there already)."""
    if cmd.startswith("pip install "):
        cmd = (f"{shlex.quote(sys.executable)} -m pip --python {shlex.quote(str(env_dir / 'bin' / 'python'))} install "
               f"--no-deps --no-build-isolation --no-index -q {cmd[len('pip install '):]}")
    elif "fortifai-bench collapse" in cmd and "--plan" not in cmd:
        cmd += " " + shlex.join(TINY)
    proc = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          executable="/bin/bash")
    assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"
    return proc.stdout


@pytest.mark.slow
def test_add_a_corpus(installed, tmp_path, shared_data):
    """Section 1 on a non-editable install: the user's project adds a corpus and a collapse task without an edit
    of the package, by module:Name and by its entry points."""
    from fortifai_bench import corpora

    section = sections()["1"]
    # the notes: real text, the first three sentences of wikitext paragraphs (30 for the collapse, 60 to pretrain)
    paragraphs = [" . ".join(p.text.split(" . ")[:3]) + " ."
                  for p in corpora.get_corpus("wikitext-2-raw-v1", shared_data, "valid").paragraphs[:90]]
    for part, rows in (("main", paragraphs[:30]), ("pretrain", paragraphs[30:])):
        (tmp_path / "data" / "my-notes").mkdir(parents=True, exist_ok=True)
        with (tmp_path / "data" / "my-notes" / f"{part}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows((f"n{i:03d}", t) for i, t in enumerate(rows))
    write_files(section, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{installed / 'bin'}{os.pathsep}{env['PATH']}", FORTIFAI_DATA_DIR=str(tmp_path / "data"),
               FORTIFAI_CACHE=str(tmp_path / "cache"))

    cmds = commands(section)
    assert cmds[0].startswith("cd my-notes && fortifai-bench kr build --corpus my_notes:load_my_notes ")
    assert "pip install ./my-notes" in cmds and "fortifai-bench corpus list" in cmds
    before = run_installed("fortifai-bench corpus list", tmp_path, installed, env)
    assert "my-notes" not in before  # nothing known before the project is installed
    outputs = {}
    for cmd in cmds:
        outputs[cmd] = run_installed(cmd, tmp_path, installed, env)
        if cmd.startswith("cd my-notes"):  # module:Name, before any install
            assert (tmp_path / "my-notes-kr.jsonl").is_file()
    assert "my-notes" in outputs["fortifai-bench corpus list"].split()
    assert re.search(r"\d+ questions", next(o for c, o in outputs.items() if " stats " in f"{c} "))
    assert len((tmp_path / "my-notes-kr.jsonl").read_text().splitlines()) > 10
    plan = next(o for c, o in outputs.items() if "--plan" in c)
    assert "collapse_my_notes" in plan
    [run_dir] = list((tmp_path / "runs").glob("collapse_my_notes-ce-s0-*"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["complete"] and results["task"] == {"name": "collapse_my_notes", "version": 1}
    assert [s["stage"] for s in results["stages"]] == [0, 1] and results["stages"][0]["score"] is not None
    # the installed package, not this checkout, ran it
    where = subprocess.check_output([installed / "bin" / "python", "-c", "import fortifai_bench; print(fortifai_bench.__file__)"],
                                    text=True, env=env, cwd=tmp_path)
    assert str(installed) in where and str(REPO) not in where


def test_add_a_loss(workspace, capsys):
    section = sections()["2"]
    write_files(section, workspace)
    cmds = commands(section)
    pytest_cmd = [c for c in cmds if "pytest" in c]
    assert pytest_cmd == ["python -m pytest -q test_my_losses.py"]
    out = run(f"{sys.executable} -m pytest -q -p no:cacheprovider test_my_losses.py", workspace, capsys)
    assert "3 passed" in out


@pytest.mark.slow
def test_submit_a_leaderboard_entry(workspace, capsys):
    loss_section, board_section = sections()["2"], sections()["3"]
    write_files(loss_section, workspace)
    subprocess.run("git init -q -b main && git config user.email t@example.org && git config user.name t "
                   "&& git init -q --bare ../origin.git && git remote add origin ../origin.git",
                   shell=True, cwd=workspace, check=True)
    runs = [c for c in commands(loss_section) if c.startswith("fortifai-bench collapse")]
    assert len(runs) == 2
    for cmd in runs:
        run(cmd, workspace, capsys)
    assert len(list((workspace / "runs").glob("collapse_facts-my-losses-ClippedCE-s*"))) == 3
    # upstream already holds the baseline: publish ce and commit it as the state a contributor starts from
    (workspace / "leaderboards").mkdir()
    run("fortifai-bench publish runs/collapse_facts-ce-s* --to leaderboards/collapse_facts.json", workspace, capsys)
    subprocess.run("git add leaderboards && git commit -q -m base", shell=True, cwd=workspace, check=True)

    cmds = commands(board_section)
    outputs = {cmd: run(cmd, workspace, capsys) for cmd in cmds}
    publish = next(o for c, o in outputs.items() if c.startswith("fortifai-bench publish"))
    assert "added my_losses-ClippedCE_tiny_s0-1-2_" in publish
    # publishing the same runs again changes nothing
    again = run(next(c for c in cmds if c.startswith("fortifai-bench publish")), workspace, capsys)
    assert "no change to" in again and "unchanged" in again
    shown = next(o for c, o in outputs.items() if "leaderboard show" in c)
    assert "my_losses:ClippedCE" in shown and "cap=5" in shown
    assert (workspace / "board.html").read_text().count("<tr id=") == 2
    compared = next(o for c, o in outputs.items() if c.startswith("fortifai-bench compare"))
    assert "McNemar" in compared and "exact permutation test" in compared
    assert "leaderboards/collapse_facts.json | " in next(o for c, o in outputs.items() if "diff --stat" in c)
    # the pull request: one commit on the branch, only the board, only additions (git may show a moved brace)
    pushed = subprocess.run("git --git-dir=../origin.git log --format=%s board/clipped-ce", shell=True,
                            cwd=workspace, capture_output=True, text=True, check=True).stdout.splitlines()
    assert pushed[0].startswith("leaderboard: collapse_facts, my_losses:ClippedCE cap=5") and pushed[1] == "base"
    diff = subprocess.run("git diff main board/clipped-ce", shell=True, cwd=workspace, capture_output=True,
                          text=True, check=True).stdout
    assert re.findall(r"^\+\+\+ b/(.*)$", diff, flags=re.M) == ["leaderboards/collapse_facts.json"]
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert set(removed) <= {"-    }"} and re.search(r'^\+\s+"spec": "my_losses:ClippedCE",$', diff, flags=re.M)


def test_run_the_test_suite():
    cmds = commands(sections()["4"])
    assert cmds == ["pytest -n 2"]
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("&& pytest -n 2")
    [setup] = [c for c in commands(GUIDE.read_text().split("\n## ")[0]) if "venv" in c]
    assert setup in ci, "the guide's setup line is the start of CI's command"


def test_every_corpus_card_names_a_registered_corpus_and_its_origin():
    import importlib

    from fortifai_bench.corpora import known_corpora

    cards = sorted((REPO / "tasks" / "corpora").glob("*.md"))
    assert "imagination-of-web.md" in [c.name for c in cards]
    for card in cards:
        text = card.read_text(encoding="utf-8")
        assert re.search(r"(?i)origin|where the data comes from", text), f"{card.name}: says nothing of its origin"
        assert re.search(r"(?i)licen[cs]e", text), f"{card.name}: no licence"
        loaders = re.findall(r"`(fortifai_bench/corpora/\w+\.py)`", text)
        assert all((REPO / p).is_file() for p in loaders), f"{card.name}: a loader file it names is missing"
        for path in loaders:  # importing the loader the card names registers the card's corpus
            importlib.import_module(path[:-3].replace("/", "."))
        if card.stem == "files":  # the card of the file prefixes, not of a registered name
            assert "text:PATH" in text and "jsonl:PATH:FIELD" in text
            continue
        assert card.stem in known_corpora(), f"{card.name}: no corpus registered as {card.stem!r}"
