"""A result is a function of (code, config, seed) and nothing a user gives is lost (issue 20): collapse runs
use one thread whatever the load, the base M_0 is the same on every build and its sha256 is on every result
and board entry, a user's loss arguments and source are recorded, and runs publish after being moved."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from fortifai_bench.cli import main as cli_main
from fortifai_bench.collapse.base import base_model, shipped_base, ship, weights_sha256
from fortifai_bench.collapse.config import load_task
from fortifai_bench.collapse.rundir import comparable
from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard import load_board, publish
from fortifai_bench.leaderboard.render import render_text
from test_collapse import MICRO

REPO = Path(__file__).resolve().parent.parent
SHORT = MICRO + ["stages=2", "model.pretrain.seed=0"]  # two stages are enough to see every record; one base for
# every seed (collapse_facts v3 pretrains one per seed), so a board here is a one-base board


def _results(run: Path) -> dict:
    return json.loads((Path(run) / "results.json").read_text())


def _env(**extra: str) -> dict:
    """A subprocess environment without the test session's OMP_NUM_THREADS=1 (conftest), so the command's
    own default decides the thread count, as it does for a user."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FORTIFAI_BENCH_POLICY_THREADS")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


class Busy:
    """A CPU-bound process beside the command under test (the load the thread policy reacts to)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def _collapse(out: Path, *extra: str, env: dict | None = None, sets=SHORT, cwd=None) -> Path:
    """`fortifai-bench collapse` in a subprocess, as a user runs it; the one run directory it made."""
    items = [a for s in sets for a in ("--set", s)]
    cmd = [sys.executable, "-m", "fortifai_bench", "collapse", "--quiet", "--no-control", "--seeds", "0",
           "--out", str(out), *extra, *items]
    proc = subprocess.run(cmd, env=env or _env(), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = [p for p in Path(out).iterdir() if p.is_dir()]
    return run


# ---------------------------------------------------------------------------------------------- threads

@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    """The same tiny run under the default thread handling, on an idle machine and beside a busy process."""
    root = tmp_path_factory.mktemp("threads")
    idle = _collapse(root / "idle", "--loss", "ce")
    with Busy():
        busy = _collapse(root / "busy", "--loss", "ce")
    return idle, busy


def test_collapse_runs_use_one_thread_whatever_the_load(default_runs):
    idle, busy = (_results(r) for r in default_runs)
    for r in (idle, busy):
        assert r["runtime"] == {"torch_threads": 1, "world_size": 1, "device": "cpu", "dtype": "float32"}
    assert comparable(idle) == comparable(busy)  # every number, not only the scores


def test_another_thread_count_is_recorded_and_shown(default_runs, tmp_path):
    run = _collapse(tmp_path / "two", "--loss", "ce", "--threads", "2")
    results = _results(run)
    assert results["runtime"]["torch_threads"] == 2
    # why the default matters: two threads sum floats in another order, and the run's numbers change
    assert comparable(results) != comparable(_results(default_runs[0]))
    report = publish([run], root=tmp_path / "boards")
    [entry] = load_board(report.board)["entries"]
    assert entry["runtime"] == {"torch_threads": [2], "world_size": [1], "device": ["cpu"], "dtype": ["float32"]}
    assert "tiny (2 torch threads)" in render_text(load_board(report.board))
    # the one-thread run of the same config: its entry says nothing about threads
    report = publish([default_runs[0]], root=tmp_path / "boards1")
    [entry] = load_board(report.board)["entries"]
    assert entry["runtime"]["torch_threads"] == [1] and "tiny (" not in render_text(load_board(report.board))


# ---------------------------------------------------------------------------------------------- the base M_0

# MICRO's base: small, and still thread-sensitive (measured: its pretraining with 2 torch threads gives other
# weights than with 1), so the equality below holds only because the build is pinned to one thread.
SMALL_BASE = [s for s in MICRO if s.startswith("model.")]


def _build_base(cache: Path, *, busy: bool, **env: str) -> str:
    """`python -m fortifai_bench.collapse.base` in a fresh cache; the sha256 line it prints."""
    cmd = [sys.executable, "-m", "fortifai_bench.collapse.base", *(a for s in SMALL_BASE for a in ("--set", s))]
    env = _env(FORTIFAI_CACHE=str(cache), **env)
    with Busy() if busy else contextlib.nullcontext():
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder, sha = proc.stdout.strip().splitlines()[-2:]
    assert Path(folder).is_relative_to(cache) and sha.startswith("sha256 ")
    return sha.split()[1]


def test_a_base_built_twice_is_the_same_and_ships_as_built(tmp_path):
    """Two builds in fresh caches, one told to use 2 threads, one beside a busy process (where the thread
    policy would pick 1): the same weights, and `--ship` writes exactly them."""
    idle = _build_base(tmp_path / "cache-a", busy=False, OMP_NUM_THREADS="2")
    busy = _build_base(tmp_path / "cache-b", busy=True)
    assert idle == busy
    task = load_task("collapse_facts", SMALL_BASE)
    folder = ship(task, tmp_path / "bases", progress=False)
    info = json.loads((folder / "base.json").read_text())
    assert info["sha256"] == weights_sha256(folder) == idle
    assert set(info["files"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
    assert shipped_base(task, tmp_path / "bases") == folder
    # a shipped copy that does not check is not used: the base is built instead
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text() + " ")
    assert shipped_base(task, tmp_path / "bases") is None


def test_the_shipped_base_of_collapse_facts_is_used_and_checks(tmp_path, monkeypatch):
    """The package ships collapse_facts' base; a fresh cache loads it instead of pretraining for minutes."""
    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "fresh"))
    task = load_task("collapse_facts")
    spec = Path(base_model(task, progress=False))
    assert spec == shipped_base(task) and spec.parent.name == "bases" and spec.parent.parent.name == "data"
    assert not (tmp_path / "fresh" / "base").exists()  # nothing was built
    info = json.loads((spec / "base.json").read_text())
    assert info["key"] == spec.name and info["sha256"] == weights_sha256(spec)
    size = sum(f.stat().st_size for f in spec.iterdir())
    assert size < 8e6, f"the shipped base is {size / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------- a user's loss

README_LOSS = '''
from fortifai_bench.losses import Loss

class MyLoss(Loss):
    def __init__(self, gamma=0.9):
        self.gamma = gamma
    def reduce(self, logp, valid):
        keep = valid & (logp.detach().exp() <= self.gamma)
        return -(logp * keep).sum() / valid.sum().clamp_min(1), keep
'''


@pytest.fixture(scope="module")
def readme_loss_runs(tmp_path_factory):
    """The README's own example, `--loss my_module:MyLoss --loss-args gamma=...`, for gamma 0.8 and 0.5."""
    root = tmp_path_factory.mktemp("readme")
    (root / "my_module.py").write_text(textwrap.dedent(README_LOSS))
    runs = {g: _collapse(root / f"g{g}", "--loss", "my_module:MyLoss", "--loss-args", f"gamma={g}", cwd=root)
            for g in (0.8, 0.5)}
    return root, runs


def test_a_user_loss_records_its_arguments_and_its_source(readme_loss_runs, tmp_path):
    from fortifai_bench.results import config_hash

    root, runs = readme_loss_runs
    source = hashlib.sha256((root / "my_module.py").read_bytes()).hexdigest()
    for gamma, run in runs.items():
        results = _results(run)
        assert results["loss"]["args"] == {"gamma": gamma}
        assert results["loss"]["source_sha256"] == source
        recorded = yaml.safe_load((run / "config.yaml").read_text())["loss"]
        assert recorded["args"] == {"gamma": gamma} and recorded["source_sha256"] == source
        # the module's source is part of the config hash: the same config with a built-in loss hashes without it
        assert results["config_hash"] == config_hash(results["config"], loss=results["loss"])
        assert results["config_hash"] != config_hash(results["config"])
    report = publish(list(runs.values()), root=tmp_path / "boards")
    entries = load_board(report.board)["entries"]
    assert sorted(e["loss"]["args"]["gamma"] for e in entries) == [0.5, 0.8]
    assert len({e["name"] for e in entries}) == 2  # gamma=0.5 is another entry, with another id


def test_an_edited_loss_module_is_another_config(tmp_path, monkeypatch):
    from fortifai_bench.losses import load_loss
    from fortifai_bench.results import config_hash

    name = f"edited_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(README_LOSS))
    monkeypatch.chdir(tmp_path)
    before = load_loss(f"{name}:MyLoss", gamma=0.8).describe()
    del sys.modules[name]
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(README_LOSS).replace("<=", "<"))
    after = load_loss(f"{name}:MyLoss", gamma=0.8).describe()
    assert before["args"] == after["args"] and before["source_sha256"] != after["source_sha256"]
    assert config_hash({"a": 1}, loss=before) != config_hash({"a": 1}, loss=after)
    assert "source_sha256" not in load_loss("tce:0.9").describe()  # ours: pinned by the git commit


# ---------------------------------------------------------------------------------------------- portability

def _rewrite(run: Path, change) -> None:
    path = run / "results.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_moved_run_publishes_and_its_base_is_on_the_entry(default_runs, tmp_path):
    run = Path(shutil.copytree(default_runs[0], tmp_path / "moved" / default_runs[0].name))
    results = _results(run)
    assert results["kr"]["name"] == "facts/kr.jsonl" and results["kr"]["source"] == "shipped"
    assert results["base"]["sha256"] == weights_sha256(base_model(load_task("collapse_facts", SHORT)))
    # the package "reinstalled" elsewhere: the recorded absolute path no longer exists
    gone = "/nonexistent/site-packages/fortifai_bench/data/facts/kr.jsonl"

    def elsewhere(data):
        data["kr_source"] = data["kr"]["file"] = gone
        data["run_dir"] = "/nonexistent/runs/" + run.name

    _rewrite(run, elsewhere)
    report = publish([run], root=tmp_path / "boards")
    [entry] = load_board(report.board)["entries"]
    assert entry["base_sha256"] == results["base"]["sha256"]
    # another version of the KR set under the same name is refused, in one line
    _rewrite(run, lambda d: d["kr"].update(sha256="0" * 64))
    with pytest.raises(FortifaiError, match=r"scored on facts/kr\.jsonl with sha256 000000000000\.\.\., but .* has"):
        publish([run], root=tmp_path / "boards2")


def test_a_board_refuses_runs_from_another_base(default_runs, tmp_path, capsys):
    first = default_runs[0]
    publish([first], root=tmp_path / "boards")
    other = Path(shutil.copytree(default_runs[1], tmp_path / "other" / "run"))
    theirs = "ab" * 32  # the base a machine whose build differed (a thread count, a library) would have made
    _rewrite(other, lambda d: d["base"].update(sha256=theirs))
    _rewrite(other, lambda d: d["loss"].update(args={"note": 1}))  # another entry, so only the base can clash
    board = tmp_path / "boards" / "collapse_facts.json"
    before = board.read_bytes()
    assert cli_main(["publish", str(other), "--to", str(board), "--root", str(tmp_path / "boards")]) == 2
    err = capsys.readouterr().err.strip()
    mine = _results(first)["base"]["sha256"]
    assert len(err.splitlines()) == 1 and theirs[:16] in err and mine[:16] in err and "one base" in err
    assert board.read_bytes() == before
    # compare refuses them too
    assert cli_main(["compare", str(first), str(other)]) == 2
    assert "different base models" in capsys.readouterr().err


def test_a_base_per_seed_when_its_seed_follows_the_run(tmp_path, monkeypatch):
    """model.pretrain.seed: run (issue 26 item 3): each seed pretrains its own base, recorded by sha256 in
    results.json; seed 0's is the fixed seed-0 base (the shipped one for collapse_facts); the config hash,
    which boards group runs by, is the same for every seed; any other text is one error naming the field."""
    import dataclasses

    from fortifai_bench.collapse.base import base_key, with_base_seed
    from fortifai_bench.collapse.run import run_collapse

    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    fixed = load_task("collapse_facts", ["model.pretrain.seed=0"])
    per_run = load_task("collapse_facts")  # v3: a base per seed
    assert per_run.model.pretrain.seed == "run"
    assert base_key(per_run) == base_key(fixed) == shipped_base(fixed).name  # seed 0
    assert base_key(with_base_seed(dataclasses.replace(per_run, seed=3))) != base_key(fixed)
    with pytest.raises(FortifaiError, match="model.pretrain.seed must be an integer or 'run'"):
        load_task("collapse_facts", ["model.pretrain.seed=runs"])
    task = load_task("collapse_facts", SHORT + ["stages=1", "model.pretrain.seed=run"])
    runs = [run_collapse(task, "ce", seed=s, out=tmp_path / "runs", progress=False) for s in (0, 1, 1)]
    shas = [r["base"]["sha256"] for r in runs]
    assert shas[0] != shas[1] == shas[2] and all(len(s) == 64 for s in shas)  # seed 1 built once, reused
    assert runs[0]["config_hash"] == runs[1]["config_hash"]
    assert runs[0]["config"]["model"]["pretrain"]["seed"] == "run"
    built = json.loads((Path(base_model(dataclasses.replace(task, seed=1))).parent / "base.json").read_text())
    assert built["pretrain"]["seed"] == 1
