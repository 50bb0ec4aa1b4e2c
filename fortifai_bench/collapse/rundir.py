"""A collapse run's directory (`RunDir`): its format, what a resumed run finds done, every read and write of it.

    RUN/config.yaml              resolved task, loss, seed, config hash, package versions, git hash
    RUN/chance.json              what KR-split-0 reads without knowledge (length bias, the base model's KR)
    RUN/stage_<i>/model/         M_i as a Hugging Face directory (lm_eval --model hf works on it)
    RUN/stage_<i>/train.json     what M_i trained on (split, generation, paragraphs) and its history
    RUN/stage_<i>/data/split_<k>.jsonl   D_k rewritten by M_i: text, token ids, first generated position
    RUN/stage_<i>/data/split_<k>.work.json   how long that took, and each process's share of it
    RUN/stage_<i>/metrics.json   everything measured on M_i (written last: it marks the stage done)
    RUN/results.json             contract 5 (fortifai-bench/results@1), rewritten after every stage
    RUN/copied.json              what an experiment copied here from a run that computed it identically
                                 (chance.json; the clean control's stage 0), and from which run
    RUN/plots/*.png

Every file goes through `io.atomic_write` / `io.atomic_dir`, so a run killed at any moment leaves each
file whole or absent; resuming skips the phases whose files exist: training (model + train.json),
regeneration (per split), evaluation (metrics.json). Under torchrun, rank 0 alone reads and writes here
(`Dist.on_main`: every process gets its result, or the same one-line error); `RunDir`'s methods do that
themselves, so their callers hold no rank logic. `Context` is the run as its phases see it: the task, its
plan, the data, the loss, M_0 and this directory.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from fortifai_bench.collapse.config import CollapseTask, describe_differences, task_from_dict
from fortifai_bench.collapse.plan import StagePlan
from fortifai_bench.collapse.plots import plot_run
from fortifai_bench.collapse.protocol import Data
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import (atomic_dir, atomic_write, is_temporary, read_json, read_jsonl, read_yaml,
                               remove_orphan_temps, write_json, write_jsonl)
from fortifai_bench.models import load_model, save_model
from fortifai_bench.results import provenance

RUN_FORMAT = "fortifai-bench/run@1"
COPIED = "copied.json"  # RUN/copied.json: what an experiment copied here from another run, and from which


class RunDir:
    """One run's directory, as every process of the run sees it: rank 0 reads and writes (`dist.on_main`),
    every process gets the result. Also keeps the rewrites read or written, for the rest of the run."""

    def __init__(self, path: Path, dist):
        self.path, self.dist = Path(path), dist  # dist: fortifai_bench.distributed.Dist
        self.rewrites: dict[tuple[int, int], list[dict]] = {}  # (stage that wrote it, split) -> rows

    @classmethod
    def open(cls, task: CollapseTask, loss_desc: dict, dist, *, out=None, resume=None,
             command: str | None = None) -> RunDir:
        """`open_run` by rank 0: a new directory under `out`, or `resume` checked."""
        return cls(Path(dist.on_main(lambda: str(open_run(task, loss_desc, out=out, resume=resume,
                                                          command=command)))), dist)

    def discard(self) -> None:
        """`discard_unstarted`, by rank 0: a new run that failed before its first stage leaves nothing."""
        self.dist.on_main(discard_unstarted, self.path)

    # ---------------------------------------------------------------------- what a resumed run finds done

    def finished(self, p: StagePlan) -> dict | None:
        """The stage's metrics.json when a previous run finished it, else None."""
        done = self.path / p.folder / "metrics.json"
        return self.dist.on_main(lambda: finished_stage(done, p.stage) if done.is_file() else None)

    def trained(self, p: StagePlan) -> bool:
        """Whether M_i's model and train.json exist (train.json is written after the model)."""
        return self.dist.on_main((self.path / p.folder / "train.json").is_file)

    def regenerated(self, p: StagePlan, k: int) -> bool:
        return self.dist.on_main((self.path / split_file(p.stage, k)).is_file)

    def copied_from(self, what: str) -> str | None:
        """The run `what` (a stage folder, chance.json) was copied from, or None."""
        path = self.path / COPIED
        return self.dist.on_main(lambda: (read_json(path) if path.is_file() else {}).get(what))

    # ---------------------------------------------------------------------- a stage's files

    def model_dir(self, p: StagePlan) -> Path:
        """M_i's Hugging Face directory."""
        return self.path / p.folder / "model"

    def save_training(self, p: StagePlan, model, tokenizer, info: dict) -> None:
        """M_i's directory, then train.json (which marks training done)."""
        self.dist.on_main(save_stage, model, tokenizer, self.path / p.folder, info)

    def read_training(self, p: StagePlan) -> dict:
        return self.dist.on_main(read_json, self.path / p.folder / "train.json")

    def written(self, stage: int, k: int) -> list[dict]:
        """Split k as stage `stage` rewrote it (read by rank 0, sent to every process, kept for the run)."""
        key = (stage, k)
        if key not in self.rewrites:
            path = self.path / split_file(stage, k)
            self.rewrites[key] = self.dist.on_main(read_jsonl, path, required=("id", "text", "ids", "first"))
        return self.rewrites[key]

    def write_split(self, p: StagePlan, k: int, rows: list[dict], work: dict) -> None:
        """The work done on a rewrite, then its rows (which mark the split done)."""
        folder = self.path / p.folder / "data"

        def write():
            write_json(folder / f"split_{k}.work.json", work)
            write_jsonl(folder / f"split_{k}.jsonl", rows)

        self.dist.on_main(write)
        self.rewrites[(p.stage, k)] = rows

    def read_work(self, p: StagePlan) -> dict:
        """Each regenerated split's work record, by split (as a string)."""
        folder = self.path / p.folder / "data"
        return self.dist.on_main(lambda: {str(k): read_json(folder / f"split_{k}.work.json") for k in p.regenerate})

    def save_metrics(self, p: StagePlan, metrics: dict) -> None:
        self.dist.on_main(write_json, self.path / p.folder / "metrics.json", metrics)

    def once(self, name: str, compute: Callable[[], dict]) -> dict:
        """RUN/<name>: computed (by every process: `compute` may be sharded) and written by rank 0 the first
        time, read back from then on (so a resumed run gets exactly what it wrote)."""
        path = self.path / name
        if not self.dist.on_main(path.is_file):
            value = compute()
            self.dist.on_main(write_json, path, value)
        return self.dist.on_main(read_json, path)

    # ---------------------------------------------------------------------- results

    def write_results(self, results: dict) -> None:
        """results.json as it stands after a stage."""
        self.dist.on_main(write_json, self.path / "results.json", results)

    def write_stopped(self, results: Callable[[], dict]) -> None:
        """results.json of a run that stopped, built and written by rank 0 alone and with no collective: the
        error may be this process's alone, and the others may be waiting in one."""
        if self.dist.main:
            write_json(self.path / "results.json", results())

    def finish(self, results: dict) -> dict:
        """The final results.json and plots (rank 0); the results as a reader of the file gets them, everywhere."""
        return self.dist.on_main(finish_run, self.path, results)


@dataclasses.dataclass
class Context:
    """One run as its phases see it: the task and its plan, the data, the loss, M_0's spec, the run
    directory and the processes (`distributed.Dist`; a plain process is the world of one)."""

    task: CollapseTask
    plans: list[StagePlan]
    run: RunDir
    data: Data
    loss: Any                       # losses.Loss
    base_spec: str
    dist: Any                       # fortifai_bench.distributed.Dist
    progress: bool = False
    command: str | None = None
    chance: dict | None = None
    report: Callable[[dict], None] | None = None              # where progress events go (collapse.progress)

    def say(self, **event) -> None:
        """A progress event (`collapse.progress`), when someone listens."""
        if self.report is not None:
            self.report(event)

    def load_model(self, spec: str | os.PathLike):
        """A model of the run (the base or a stage's directory) with the task's loading options, on this
        process's device."""
        m = self.task.model
        model, tokenizer = load_model(spec, dtype=m.dtype, attn_implementation=m.attn_implementation,
                                      revision=m.revision if str(spec) == m.name else None)
        return model.to(self.dist.device), tokenizer

    def rows(self, k: int, g: int) -> list[dict]:
        """D_k^(g): the real split for g = 0, else the file stage k+g-1 wrote (modes that train on rewrites)."""
        if g == 0:
            return [{"id": p.id, "text": p.text} for p in self.data.splits[k]]
        return self.run.written(k + g - 1, k)


# ------------------------------------------------------------------------------------------ opening

def slug(name: str, what: str = "loss", keep: str = ".-") -> str:
    """A name as one safe path component: letters, digits and the characters in `keep` (never `/`), with
    no leading or trailing `.` or `-` (so never `.` or `..`). Loss specs keep `.-` (`tce:0.9` -> `tce-0.9`,
    `my_module:MyLoss` -> `my-module-MyLoss`); task names also keep `_`."""
    out = "".join(c if c.isalnum() or (c in keep and c != "/") else "-" for c in name).strip("-.")
    return out or what


def _record(task: CollapseTask, loss_desc: dict) -> dict:
    return {"config": task.to_dict(), "loss": loss_desc}


def open_run(task: CollapseTask, loss_desc: dict, *, out: str | os.PathLike | None = None,
             resume: str | os.PathLike | None = None, command: str | None = None) -> Path:
    """A new run directory under `out`, or `resume` after checking it holds the same config."""
    if resume is not None:
        run = Path(resume)
        path = run / "config.yaml"
        if not path.is_file():
            raise FortifaiError(f"--resume {run}: not a collapse run directory (no config.yaml)")
        recorded = _read_record(path)
        diffs = describe_differences({"config": recorded.get("config", {}), "loss": recorded.get("loss", {})},
                                     _record(task, loss_desc))
        if diffs:
            raise FortifaiError(f"--resume {run} was run with a different config; refusing to mix them: "
                                + "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""))
        check_no_symlinks(run)  # a linked stage folder would take the resumed run's writes (and cleanup) elsewhere
        for done in sorted(run.glob("stage_*/metrics.json")):  # a bad record stops here, before anything is written
            finished_stage(done, int(done.parent.name.split("_")[1]))
        _remove_orphans(run)
        return run
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = slug(task.task, "task", keep="._-") + ("-control" if task.mode == "clean" else "")
    base = Path(out or "runs") / f"{name}-{slug(loss_desc['spec'])}-s{task.seed}-{stamp}"
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{base.name}-{n}")
    with atomic_write(run / "config.yaml") as f:
        yaml.safe_dump(config_doc(task, loss_desc, command), f, sort_keys=False, allow_unicode=True)
    return run


def config_doc(task: CollapseTask, loss_desc: dict, command: str | None = None) -> dict:
    """RUN/config.yaml: the task and loss as run, the seed, their hash (what `resume` and the sweep match a run
    by) and the provenance."""
    return {"format": RUN_FORMAT, **_record(task, loss_desc), "seed": task.seed,
            "config_hash": task.config_hash(loss_desc), "provenance": provenance(command)}


def check_no_symlinks(run: Path) -> None:
    """A run folder holds only files and folders it wrote: a symlink in it (a stage folder pointing at another
    folder, a model linked from elsewhere) would make a resume write, or a cleanup delete, outside the run,
    and a verification score a model that is not the run's. Refused, naming the link."""
    for folder, dirs, files in os.walk(run):  # os.walk does not descend into linked folders
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise FortifaiError(f"{path} is a symbolic link (to {os.readlink(path)}); a run folder may hold "
                                    "only what the run wrote: replace the link with a copy, or remove it")


def discard_unstarted(run: Path) -> None:
    """Remove a run folder that failed before its first stage: only what `open_run` and `once` write there
    (config.yaml, chance.json, their temporaries) is deleted, file by file, and the folder only if that
    left it empty; nothing is followed through a link, nothing outside the folder is touched."""
    if run.is_symlink() or not run.is_dir():
        return
    for entry in run.iterdir():
        if not entry.is_symlink() and entry.is_file() and (entry.name in ("config.yaml", "chance.json")
                                                             or is_temporary(entry.name)):
            entry.unlink()
    try:
        run.rmdir()
    except OSError:
        pass  # something else is in it: left as it is


def _remove_orphans(run: Path) -> None:
    """What a killed run left half-written (temporaries of atomic writes) goes before resuming."""
    for folder in [run, run / "plots", *run.glob("stage_*"), *run.glob("stage_*/data")]:
        remove_orphan_temps(folder)


def read_run_config(run: str | os.PathLike) -> tuple[CollapseTask, dict]:
    """The task and loss description a run directory was started with (for `--resume RUN` alone)."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise FortifaiError(f"{run}: not a collapse run directory (no config.yaml)")
    doc = _read_record(path)
    for key, kind in (("config", dict), ("loss", dict)):
        if not isinstance(doc.get(key), kind):
            raise FortifaiError(f"{path}: field {key} is missing or not a mapping; this is not a run record "
                                "fortifai-bench wrote")
    if not isinstance(doc["loss"].get("spec"), str):
        raise FortifaiError(f"{path}: field loss.spec is missing or not a string")
    return task_from_dict(doc["config"], source=str(path)), doc["loss"]


def _read_record(path: Path) -> dict:
    """A run's config.yaml as a mapping, or one line saying what is wrong with it."""
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise FortifaiError(f"{path}: a run record must be a YAML mapping, got {type(doc).__name__}")
    return doc


# ------------------------------------------------------------------------------------------ a stage's files

def split_file(stage: int, k: int) -> str:
    """D_k as stage `stage` rewrote it, relative to the run directory."""
    return f"stage_{stage}/data/split_{k}.jsonl"


def finished_stage(path: Path, i: int) -> dict:
    """A stage's metrics.json read back on resume; anything but a record this code wrote is one line."""
    metrics = read_json(path)
    missing = [k for k in ("stage", "score", "kr_total", "items") if not isinstance(metrics, dict) or k not in metrics]
    if missing or metrics["stage"] != i:
        what = f"missing field {missing[0]}" if missing else f"stage {metrics['stage']!r}, expected {i}"
        raise FortifaiError(f"{path}: not a finished stage record ({what}); delete it to recompute stage {i}")
    return metrics


def save_stage(model, tokenizer, stage_dir: Path, info: dict) -> None:
    """M_i's model directory, then train.json."""
    try:
        save_model(model, tokenizer, stage_dir / "model")
    except Exception as exc:  # safetensors reports a full disk as its own error type, not OSError
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
            raise FortifaiError(f"disk full while saving {stage_dir / 'model'}") from exc
        raise
    write_json(stage_dir / "train.json", info)


def finish_run(run: Path, results: dict) -> dict:
    """The final results.json and the run's plots; the results as a reader of the file gets them."""
    write_json(run / "results.json", results)
    try:
        plot_run(results, run / "plots")
    except ImportError as exc:  # matplotlib is an extra; results stand without plots
        print(f"plots skipped: {exc}", file=sys.stderr)
    return read_json(run / "results.json")  # exactly what a reader of the file gets (str keys, lists)


# ------------------------------------------------------------------------------------------ copied work

def copy_chance(source: Path, run: Path) -> None:
    """RUN/chance.json from a run of the same base model and KR set, which computed it (an experiment's runs
    share one; `experiment.chance_key` says when two runs would compute the same)."""
    write_json(run / "chance.json", read_json(source / "chance.json"))
    _note_copy(run, "chance.json", source)


def copy_stage(source: Path, run: Path, folder: str) -> None:
    """A finished stage's folder from a run that computed exactly this stage (the clean control's stage 0
    is its baseline's; `experiment.same_stage0` says when), as one atomic folder. Its metrics keep every
    number; their seconds are zero, as no time was spent on the stage here."""
    with atomic_dir(run / folder) as tmp:
        shutil.copytree(source / folder, tmp, dirs_exist_ok=True)
        metrics = read_json(tmp / "metrics.json")
        metrics["seconds"] = {phase: 0.0 for phase in metrics["seconds"]}
        write_json(tmp / "metrics.json", metrics)
    _note_copy(run, folder, source)


def _note_copy(run: Path, what: str, source: Path) -> None:
    path = run / COPIED
    notes = read_json(path) if path.is_file() else {}
    write_json(path, {**notes, what: str(source)})


# ------------------------------------------------------------------------------------------ results

def score_name(task) -> str:
    """kr_split0, or kr_split0_<tag> when the headline score is one tag's questions (eval.score_tag)."""
    return "kr_split0" if task.eval.score_tag is None else f"kr_split0_{task.eval.score_tag}"


def comparable(results: dict) -> dict:
    """results.json without what legitimately differs between two identical runs (timings, paths, dates)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("seconds", "provenance", "run_dir")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(results)
