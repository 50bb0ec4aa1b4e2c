"""Is a run's results.json what its saved models score? `verify_run` re-scores every stage's model.

A results.json can be edited, and a loss module runs inside the process it trains in: it could replace the
KR scorer (`kr.scoring.decide`) on import and every stage would read 1.0. `verify_run` loads each stage's
saved model (RUN/stage_i/model, safetensors) and scores the run's KR set again with the package's own
scorer, in a process that never imports the run's loss module (`fortifai-bench verify RUN`, which `publish`
runs as a child process: `verify_in_subprocess`), and compares each stage's KR-split-0 (or the score of
`eval.score_tag`), KR per split, KR-total and split-0 per-question bits with results.json.

Exact where it can be: the same questions in the same batches as the run (each process's strided share
when it ran in several, `Dist.map_sharded`), the same torch thread count, on the same kind of CPU
(`results.cpu_kind` of `results.cpu()`, recorded in the run's provenance): then every number must be equal.
Elsewhere (another CPU, or a run that did not record its CPU) float kernels round differently, and a question whose
two continuations score within `TIE_TOLERANCE` nats of each other may flip; such flips, and only those, are
accepted, and KR is compared through the recorded bits (which `results.check_run_numbers` ties to the
scores).

`rerun` (`fortifai-bench verify RUN --rerun`) runs the protocol again from the recorded config, loss and
seed, and compares every recorded number (`rundir.comparable`): the maintainer's check of a submitted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from fortifai_bench.collapse.config import task_from_dict
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.rundir import check_no_symlinks, comparable, score_name
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.sets import find_kr_file
from fortifai_bench.models import load_model
from fortifai_bench.results import cpu, cpu_kind, ids_sha256, load_results
from fortifai_bench.stats import format_number

# torch, deferred: the modules that score and run models (collapse.evaluate, kr.scoring, collapse.run) import it
# at their top, and `publish` imports this module for `verify_in_subprocess`, which needs none; the functions
# that re-score import them.

# How far apart (in the method's margin, `kr.methods.margin`: nats) two continuations may score for a
# re-scored decision to differ from the recorded one on another CPU kind. Measured on a smoke run's three
# models x 2,382 questions: torch's AVX2 and DEFAULT kernels move a margin by at most 9.6e-6 from AVX-512's
# (and other batchings by 8.2e-6), so 1e-3 is about 100 times that (CONTRIBUTING, "Verifying a run").
TIE_TOLERANCE = 1e-3


@dataclass
class StageCheck:
    stage: int
    recorded: float | None
    rescored: float | None
    differ: list[int] = field(default_factory=list)   # split-0 positions whose bit differs
    near_ties: int = 0                                 # of those, within TIE_TOLERANCE
    fields: list[str] = field(default_factory=list)   # other fields that differ, "name: recorded -> re-scored"

    def problem(self, exact: bool) -> str | None:
        if exact and (self.differ or self.fields or not _same(self.recorded, self.rescored)):
            what = [f"{len(self.differ)} split-0 item(s) differ"] if self.differ else []
            return (f"stage {self.stage}: KR-split-0 recorded {_fmt(self.recorded)}, re-scored {_fmt(self.rescored)}"
                    f" ({'; '.join(what + self.fields[:1])})")
        if not exact and len(self.differ) > self.near_ties:
            return (f"stage {self.stage}: KR-split-0 recorded {_fmt(self.recorded)}, re-scored {_fmt(self.rescored)} "
                    f"({len(self.differ) - self.near_ties} split-0 item(s) differ beyond the {TIE_TOLERANCE:g}-nat "
                    "tie tolerance)")
        return None


@dataclass
class Verification:
    run: str
    exact: bool
    why_not_exact: str | None
    stages: list[StageCheck]

    @property
    def problems(self) -> list[str]:
        return [p for p in (s.problem(self.exact) for s in self.stages) if p]

    def lines(self) -> list[str]:
        mode = "exact" if self.exact else f"within the {TIE_TOLERANCE:g}-nat tie tolerance ({self.why_not_exact})"
        out = [f"{self.run}: re-scored {len(self.stages)} stage(s), compared {mode}"]
        for s in self.stages:
            flips = f", {s.near_ties} near-tie flip(s)" if s.near_ties else ""
            out.append(f"  stage {s.stage}: KR-split-0 recorded {_fmt(s.recorded)}, re-scored {_fmt(s.rescored)}{flips}")
        out += self.problems or ["matches"]
        return out

    def to_dict(self) -> dict:
        return {"run": self.run, "exact": self.exact, "why_not_exact": self.why_not_exact,
                "problems": self.problems, "stages": [vars(s) for s in self.stages]}


def _same(a, b) -> bool:
    return a == b or (a is None and b is None)


def _fmt(x) -> str:
    return format_number(x, 4)  # four decimals: a one-question change in a set of a few hundred shows


# ------------------------------------------------------------------------------------------ re-scoring

def verify_run(run: str | os.PathLike, *, progress: bool = False) -> Verification:
    """Re-score every stage's saved model of `run` (see module doc); a run that cannot be checked (no saved
    model, another KR set on this machine, a toy run) is a one-line FortifaiError."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per stage
    results = load_results(run)
    where = results["_path"]
    folder = Path(where).parent
    if results["kind"] != "text":
        raise FortifaiError(f"{where}: a {results['kind']} run saves no models to re-score; "
                            "`fortifai-bench verify --rerun` runs it again")
    check_no_symlinks(folder)
    items = results.get("items") or {}
    if not isinstance(items.get("split0_correct"), list) or "split0_ids_sha256" not in items:
        raise FortifaiError(f"{where}: no per-question record (items.split0_correct); a run without it cannot be "
                            "verified")
    for i in range(len(results["stages"])):  # every model there before anything is loaded
        path = folder / f"stage_{i}" / "model"
        if not (path / "config.json").is_file():
            raise FortifaiError(f"{path}: stage {i}'s saved model is missing; its scores cannot be verified")
    data, task = _run_data(results)
    if results["score_name"] != score_name(task):  # the score is what the recorded config says it is
        raise FortifaiError(f"{where}: field score_name is {results['score_name']!r}, but the run's config scores "
                            f"{score_name(task)!r}")
    runtime = results.get("runtime") or {}
    exact, why = _exact(results)
    torch.set_num_threads(int(runtime.get("torch_threads") or 1))
    shards = _Shards(int(runtime.get("world_size") or 1))
    ctx = SimpleNamespace(task=task, data=data, dist=shards, progress=progress)
    checks = []
    for i, recorded in enumerate(results["stages"]):
        model, tokenizer = _stage_model(folder / f"stage_{i}" / "model", task)
        checks.append(_compare(i, recorded, items["split0_correct"][i], ctx, model, tokenizer, exact))
    _check_loss_not_imported(results)
    return Verification(str(folder), exact, why, checks)


def _run_data(results: dict):
    """The run's task and data as the run loaded them, with its KR file found on this machine (its
    split-0 questions checked against the recorded ids)."""
    where = results["_path"]
    task = task_from_dict(results["config"], source=where)
    kr_file = find_kr_file(results)
    if kr_file is None:
        raise FortifaiError(f"{where}: the run has no KR questions to re-score")
    if task.eval.kr != "auto":  # a file given by path: the one found (the run may have moved)
        task = dataclasses.replace(task, eval=dataclasses.replace(task.eval, kr=str(kr_file)))
    data = load_data(task)
    ids = [q.id for q in data.questions if q.split == 0]
    if ids_sha256(ids) != results["items"]["split0_ids_sha256"]:
        raise FortifaiError(f"{where}: the KR set loaded here ({kr_file}) does not hold the split-0 questions the "
                            "run scored (items.split0_ids_sha256 differs)")
    return data, task


def _exact(results: dict) -> tuple[bool, str | None]:
    """Whether every number must be equal: the run recorded its CPU and it is this one, on CPU in float32."""
    runtime = results.get("runtime") or {}
    if runtime.get("device", "cpu") != "cpu":
        return False, f"the run ran on {runtime.get('device')}"
    recorded = (results.get("provenance") or {}).get("cpu")
    here = cpu()
    if recorded is None or here is None:
        return False, "the run did not record its CPU"
    if cpu_kind(recorded) != cpu_kind(here):
        return False, f"the run's CPU kind was {cpu_kind(recorded)}, this one is {cpu_kind(here)}"
    return True, None


class _Shards:
    """`Dist.map_sharded` as a run of `world` processes computed it, in this one process: each process's
    strided share scored on its own (so batches are the run's), the results put back in order."""

    def __init__(self, world: int):
        self.world = world

    def map_sharded(self, fn, items):
        out: list = [None] * len(items)
        for rank in range(self.world):
            mine = list(range(rank, len(items), self.world))
            if mine:
                for j, result in zip(mine, fn([items[j] for j in mine])):
                    out[j] = result
        return out


def _stage_model(path: Path, task):
    return load_model(path, dtype=task.model.dtype, attn_implementation=task.model.attn_implementation)


def _compare(i: int, recorded: dict, recorded_bits: str, ctx, model, tokenizer, exact: bool) -> StageCheck:
    from fortifai_bench.collapse.evaluate import kr_scores  # torch, deferred (see the imports)

    got = kr_scores(ctx, model, tokenizer)
    bits = got["items"]["split0_correct"]
    check = StageCheck(i, recorded.get("score"), got["score"])
    if len(bits) != len(recorded_bits):
        check.fields.append(f"{len(recorded_bits)} split-0 bits recorded, {len(bits)} questions")
        check.differ = list(range(max(len(bits), len(recorded_bits))))
        return check
    check.differ = [j for j, (a, b) in enumerate(zip(recorded_bits, bits)) if a != b]
    if recorded.get("kr_total") != got["kr_total"]:
        check.fields.append(f"KR-total {_fmt(recorded.get('kr_total'))} -> {_fmt(got['kr_total'])}")
    for split, value in sorted(got["kr"].items()):
        if (recorded.get("kr") or {}).get(split) != value:
            check.fields.append(f"KR-split-{split} {_fmt((recorded.get('kr') or {}).get(split))} -> {_fmt(value)}")
    if check.differ and not exact:
        check.near_ties = _near_ties(ctx, model, tokenizer, check.differ)
    return check


def _near_ties(ctx, model, tokenizer, positions: list[int]) -> int:
    """How many of the split-0 questions at `positions` score their two continuations within the tolerance."""
    from fortifai_bench.kr.scoring import score  # torch, deferred (see the imports)

    split0 = [q for q in ctx.data.questions if q.split == 0]
    res = score(model, tokenizer, [split0[j] for j in positions], batch_size=ctx.task.eval.batch_size,
                method=ctx.task.eval.kr_method)
    return sum(abs(m) <= TIE_TOLERANCE for m in res.margins)


def _check_loss_not_imported(results: dict) -> None:
    """The point of re-scoring in a fresh process: the run's own loss module must not have been loaded."""
    module = str(results["loss"].get("target", "")).partition(":")[0]
    if module and not module.startswith("fortifai_bench") and module in sys.modules:
        raise FortifaiError(f"verify imported the run's loss module {module!r}; its re-scoring cannot be trusted")


# ------------------------------------------------------------------------------------------ a fresh process

def verify_in_subprocess(run: str | os.PathLike) -> Verification:
    """`verify_run` in a child Python process (isolated: no PYTHONPATH, no current folder on sys.path), so
    that nothing the calling process imported (a loss module that patched the scorer) touches it."""
    cmd = [sys.executable, "-I", "-m", "fortifai_bench", "verify", str(run), "--json", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # verify sets the run's count
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("fortifai-bench: error: ")]
        raise FortifaiError(errors[-1].removeprefix("fortifai-bench: error: ") if errors else
                            f"verify {run} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    doc = json.loads(proc.stdout)
    stages = [StageCheck(**s) for s in doc["stages"]]
    return Verification(doc["run"], doc["exact"], doc["why_not_exact"], stages)


# ------------------------------------------------------------------------------------------ rerun

def rerun(run: str | os.PathLike, *, out: str | os.PathLike | None = None, progress: bool = False) -> list[str]:
    """Run the protocol again from `run`'s recorded config, loss and seed (in `out`, else a temporary folder
    removed afterwards); the fields of results.json that differ (`rundir.comparable`), [] when none."""
    results = load_results(run)
    if results["kind"] != "text":
        raise FortifaiError(f"{results['_path']}: --rerun reruns collapse runs; a {results['kind']} run is rerun "
                            "with its toy command and seed")
    import torch

    from fortifai_bench.collapse.run import run_collapse  # torch, deferred (see the imports)

    task = task_from_dict(results["config"], source=results["_path"])
    loss = results["loss"]
    torch.set_num_threads(int((results.get("runtime") or {}).get("torch_threads") or 1))  # the run's rounding
    with tempfile.TemporaryDirectory(prefix="fortifai-rerun-") as tmp:
        again = run_collapse(task, loss["spec"], loss.get("args") or {}, seed=results["seed"],
                             out=out or tmp, progress=progress)
        return _differences(comparable(_strip(results)), comparable(_strip(again)))


def _strip(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def _differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for j, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{j}]")]
    return [] if a == b else [f"{path}: {_short(a)} -> {_short(b)}"]


def _short(x) -> str:
    text = json.dumps(x)
    return text if len(text) <= 60 else text[:57] + "..."
