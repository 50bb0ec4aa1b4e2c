"""One collapse run (one task, one loss, one seed) in a resumable run directory, and runs over seeds.

    RUN/config.yaml              resolved task, loss, seed, config hash, package versions, git hash
    RUN/stage_<i>/model/         M_i as a Hugging Face directory (lm_eval --model hf works on it)
    RUN/stage_<i>/train.json     what M_i trained on (split, generation, paragraphs) and its history
    RUN/stage_<i>/data/split_<k>.jsonl   D_k rewritten by M_i: text, token ids, first generated position
    RUN/stage_<i>/data/split_<k>.work.json   how long that took, and each process's share of it
    RUN/stage_<i>/metrics.json   everything measured on M_i (written last: it marks the stage done)
    RUN/results.json             contract 5 (fortifai-bench/results@1), rewritten after every stage
    RUN/plots/*.png

Every file goes through `io.atomic_write` / `io.atomic_dir`, and every phase is seeded by
(seed, stage, phase), and each stage starts from M_{i-1} *as saved on disk*, so a run killed at any
moment and resumed computes exactly what the uninterrupted run computes. Resuming skips the phases
whose files exist: training (model + train.json), regeneration (per split), evaluation (metrics.json).

The same code runs in one process or in N under torchrun (`fortifai-bench collapse --nproc N`, or
`torchrun ... -m fortifai_bench.collapse`): see "the run" below. A run may be resumed with another number
of processes; rewrites depend on (seed, stage, split, paragraph) only, not on which process made them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import hashlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fortifai_bench.collapse.config import CollapseTask, describe_differences, task_from_dict
from fortifai_bench.collapse.plan import pool, real_share, split_share, stage_seed, subsample
from fortifai_bench.collapse.protocol import Data, load_data
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import atomic_write, read_json, read_jsonl, write_json, write_jsonl
from fortifai_bench.results import provenance

RUN_FORMAT = "fortifai-bench/run@1"


# ------------------------------------------------------------------------------------------ run directory

def slug(name: str, what: str = "loss", keep: str = ".-") -> str:
    """A name as one safe path component: letters, digits and the characters in `keep` (never `/`), with
    no leading or trailing `.` or `-` (so never `.` or `..`). Loss specs keep `.-` (`tce:0.9` -> `tce-0.9`,
    `my_module:MyLoss` -> `my-module-MyLoss`); task names also keep `_`."""
    out = "".join(c if c.isalnum() or (c in keep and c != "/") else "-" for c in name).strip("-.")
    return out or what


loss_slug = slug

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
        for done in sorted(run.glob("stage_*/metrics.json")):  # a bad record stops here, before anything is written
            _finished_stage(done, int(done.parent.name.split("_")[1]))
        _remove_orphans(run)
        return run
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = slug(task.task, "task", keep="._-") + ("-control" if task.mode == "clean" else "")
    base = Path(out or "runs") / f"{name}-{slug(loss_desc['spec'])}-s{task.seed}-{stamp}"
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{base.name}-{n}")
    doc = {"format": RUN_FORMAT, **_record(task, loss_desc), "seed": task.seed, "config_hash": task.config_hash(),
           "provenance": provenance(command)}
    with atomic_write(run / "config.yaml") as f:
        yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True)
    return run


def _remove_orphans(run: Path) -> None:
    """What a killed run left half-written (temporaries of atomic writes) goes before resuming."""
    from fortifai_bench.io import remove_orphan_temps

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
    from fortifai_bench.io import read_yaml

    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise FortifaiError(f"{path}: a run record must be a YAML mapping, got {type(doc).__name__}")
    return doc


# ------------------------------------------------------------------------------------------ the run
#
# Under torchrun every process runs this same code (a plain process is the world of one). Rank 0 alone
# reads and writes the run directory (`dist.on_main`: every process gets its result or its error) and
# decides which phases a resumed run has done; training is DDP (`train.train`); regeneration, KR scoring
# and the stage's forward passes are cut into strided shares (`dist.shard`) and put back in order on every
# process (`dist.unshard`), so every process holds the same rows and metrics and only rank 0 writes them.
# Model directories are the one thing every process reads from disk: on several nodes the run folder
# (--out) must be on a filesystem all of them see.

@dataclasses.dataclass
class _State:
    task: CollapseTask
    run: Path
    data: Data
    loss: Any
    base_spec: str
    progress: bool
    dist: Any                       # fortifai_bench.distributed.Dist
    command: str | None = None
    chance: dict | None = None
    regenerated: dict = dataclasses.field(default_factory=dict)  # (stage that wrote it, split) -> rows


def run_collapse(task: CollapseTask, loss: str = "ce", loss_args: dict | None = None, *, seed: int | None = None,
                 out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
                 progress: bool = True, command: str | None = None) -> dict:
    """Run Algorithm 1 for one seed; return the results dict (also written to RUN/results.json). Under
    torchrun, every process calls this and gets the same results (see the comment above)."""
    from fortifai_bench.distributed import Dist

    dist = Dist.start(task.train.device)  # the process group, set up once, serves every run of this process
    return _run(task, loss, loss_args, seed, out, resume, progress and dist.main, command, dist)


def _run(task, loss, loss_args, seed, out, resume, progress, command, dist) -> dict:
    from tqdm.auto import tqdm

    from fortifai_bench.losses import load_loss
    from fortifai_bench.models import check_options

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars at every stage drown the protocol's own
    if seed is not None:
        task = dataclasses.replace(task, seed=int(seed))
    checked = load_loss(loss, **(loss_args or {}))
    check_options(task.model.dtype, task.model.attn_implementation)
    data = load_data(task)  # before creating anything: bad corpus or KR input fails first
    run = Path(dist.on_main(lambda: str(open_run(task, checked.describe(), out=out, resume=resume, command=command))))
    state = _State(task, run, data, checked, dist.on_main(_build_base, task, progress), progress, dist, command)
    if progress:
        print(f"collapse run: {run}" + (f" ({dist.world} processes)" if dist.world > 1 else ""), flush=True)
    state.chance = _chance(state)
    stages: list[dict] = []
    bar = tqdm(range(task.stages), desc=f"{task.task} {checked.spec} seed {task.seed}", unit="stage",
               disable=not progress)
    for i in bar:
        done = run / f"stage_{i}" / "metrics.json"
        finished = dist.on_main(lambda: _finished_stage(done, i) if done.is_file() else None)
        if finished is not None:
            stages.append(finished)
            continue
        try:
            try:
                stages.append(_run_stage(state, i))
            except OSError as exc:  # e.g. a full disk inside save_pretrained: say it in one line
                if exc.errno != errno.ENOSPC:
                    raise
                raise FortifaiError(f"disk full while writing {run / f'stage_{i}'}") from exc
        except FortifaiError as exc:
            # No collective here: the error may be this process's alone, and the others may be waiting in one.
            # Rank 0 records it; an error every process shares is recorded before torchrun stops the group.
            if dist.main:
                stopped = {"stage": i, "error": str(exc)}
                write_json(run / "results.json", build_results(state, stages, stopped=stopped))
            kept = f"stages 0..{i - 1} are kept" if i else "no stage finished"
            raise FortifaiError(f"stage {i} stopped: {exc}; {kept} in {run}") from exc
        dist.on_main(write_json, run / "results.json", build_results(state, stages))
    bar.close()
    return dist.on_main(_finish, run, build_results(state, stages))


def _build_base(task: CollapseTask, progress: bool) -> str:
    """M_0's spec; rank 0 alone builds and caches a tiny base (once) while the others wait."""
    from fortifai_bench.collapse.base import base_model
    from fortifai_bench.distributed import solo

    with solo():
        return base_model(task, progress=progress)


def _finish(run: Path, results: dict) -> dict:
    write_json(run / "results.json", results)
    try:
        from fortifai_bench.collapse.plots import plot_run

        plot_run(results, run / "plots")
    except ImportError as exc:  # matplotlib is an extra; results stand without plots
        print(f"plots skipped: {exc}", file=sys.stderr)
    return read_json(run / "results.json")  # exactly what a reader of the file gets (str keys, lists)


def load_stage_model(state: _State, spec: str | os.PathLike):
    """A model of the run (the base or a stage's directory) with the task's loading options, on this
    process's device."""
    from fortifai_bench.models import load_model

    m = state.task.model
    model, tokenizer = load_model(spec, dtype=m.dtype, attn_implementation=m.attn_implementation,
                                  revision=m.revision if str(spec) == m.name else None)
    return model.to(state.dist.device), tokenizer


def _chance(state: _State) -> dict | None:
    """What KR-split-0 reads without knowledge: how often true is the longer continuation (characters and
    the model's tokens), the best length-only guesser, and the base model M_{-1}'s own KR before any
    stage trained it. Computed once per run (RUN/chance.json)."""
    from fortifai_bench.collapse.evaluate import kr_scores
    from fortifai_bench.kr.quality import length_bias

    path = state.run / "chance.json"
    questions = state.data.questions
    if not questions:
        return None
    if not state.dist.on_main(path.is_file):
        model, tokenizer = load_stage_model(state, state.base_spec)
        split0 = [q for q in questions if q.split == 0]
        base = kr_scores(state, model, tokenizer)
        state.dist.on_main(lambda: write_json(path, {
            "length_bias_split0": length_bias(split0, tokenizer),
            "base_model": {"kr_split0": base["score"], "kr_total": base["kr_total"],
                           # a tagged set: the base's prior per tag (facts-longtail: above 0.5 on mode, below on tail)
                           **({"kr_split0_by_tag": base["score_by_tag"]} if "score_by_tag" in base else {})}}))
    return state.dist.on_main(read_json, path)


def _finished_stage(path: Path, i: int) -> dict:
    """A stage's metrics.json read back on resume; anything but a record this code wrote is one line."""
    metrics = read_json(path)
    missing = [k for k in ("stage", "score", "kr_total", "items") if not isinstance(metrics, dict) or k not in metrics]
    if missing or metrics["stage"] != i:
        what = f"missing field {missing[0]}" if missing else f"stage {metrics['stage']!r}, expected {i}"
        raise FortifaiError(f"{path}: not a finished stage record ({what}); delete it to recompute stage {i}")
    return metrics


def _texts(state: _State, k: int, g: int) -> list[str]:
    return [r["text"] for r in _rows(state, k, g)]


def _rows(state: _State, k: int, g: int) -> list[dict]:
    """D_k^(g): the real split for g = 0, else the file stage k+g-1 wrote (modes that train on rewrites)."""
    if g == 0:
        return [{"id": p.id, "text": p.text} for p in state.data.splits[k]]
    return _written(state, k + g - 1, k)


def _written(state: _State, stage: int, k: int) -> list[dict]:
    """Split k as stage `stage` rewrote it (read by rank 0, sent to every process)."""
    key = (stage, k)
    if key not in state.regenerated:
        path = state.run / f"stage_{stage}" / "data" / f"split_{k}.jsonl"
        state.regenerated[key] = state.dist.on_main(read_jsonl, path, required=("id", "text", "ids", "first"))
    return state.regenerated[key]


def _training_texts(state: _State, i: int) -> tuple[list[str], list[dict]]:
    task = state.task
    train_on = pool(i, task.mode)
    chosen = {k: list(range(len(state.data.splits[k]))) for k, _ in train_on}
    if task.mode == "accumulate-subsample":
        size = task.subsample or len(state.data.splits[0])
        chosen = subsample({k: len(v) for k, v in chosen.items()}, size, stage_seed(task.seed, i, "subsample"))
    texts, record = [], []
    for k, g in train_on:
        rows = _texts(state, k, g)
        texts += [rows[j] for j in chosen[k]]
        record.append({"split": k, "generation": g, "paragraphs": len(chosen[k])})
    return texts, record


def _stage_status(stage_dir: Path, splits: list[int]) -> dict:
    """Which phases of a stage a killed run finished (rank 0 looks; every process follows)."""
    return {"trained": (stage_dir / "train.json").is_file(),
            "regenerated": [k for k in splits if (stage_dir / "data" / f"split_{k}.jsonl").is_file()]}


def _run_stage(state: _State, i: int) -> dict:
    task, run, dist = state.task, state.run, state.dist
    stage_dir = run / f"stage_{i}"
    prev = state.base_spec if i == 0 else str(run / f"stage_{i - 1}" / "model")
    splits = [k for k, _ in pool(i, task.mode)]
    status = dist.on_main(_stage_status, stage_dir, splits)

    # -- train M_i (skipped when its model and train.json exist)
    if not status["trained"]:
        _train(state, i, prev, stage_dir)
    info = dist.on_main(read_json, stage_dir / "train.json")
    # Always continue from the saved model, so a resumed run and an uninterrupted one agree exactly.
    model, tokenizer = load_stage_model(state, stage_dir / "model")

    # -- regenerate every split of the stage's pool
    new_rows: dict[int, list[dict]] = {}
    for k, g in pool(i, task.mode):
        if k not in status["regenerated"]:
            _regenerate_split(state, model, tokenizer, i, k, g, stage_dir / "data")
        new_rows[k] = _written(state, i, k)
    work = dist.on_main(lambda: {str(k): read_json(stage_dir / "data" / f"split_{k}.work.json") for k in splits})

    # -- evaluate M_i
    t0 = time.perf_counter()
    from fortifai_bench.collapse.evaluate import evaluate_stage

    metrics = evaluate_stage(state, model, tokenizer, i, new_rows)
    metrics["training_data"] = info["training_data"]
    metrics["real_share"] = real_share([(d["split"], d["generation"]) for d in info["training_data"]])
    metrics["train"] = info["summary"]
    metrics["gradient"] = info.get("gradient")  # corrupted vs faithful tokens and the loss's mask on them
    metrics["seconds"] = {"train": info["seconds"], "regenerate": sum(w["seconds"] for w in work.values()),
                          "evaluate": time.perf_counter() - t0}
    metrics["processes"]["regenerate"] = {k: w["per_process"] for k, w in work.items()}
    dist.on_main(write_json, stage_dir / "metrics.json", metrics)
    if state.progress:
        s = metrics["seconds"]
        print(f"stage {i}: KR-split-0 {_fmt(metrics['score'])}{_tag_columns(metrics)}  "
              f"KR-total {_fmt(metrics['kr_total'])}  "
              f"KL {_fmt(metrics['kl'])}  train {s['train']:.1f}s  regenerate {s['regenerate']:.1f}s  "
              f"evaluate {s['evaluate']:.1f}s", flush=True)
    return metrics


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _tag_columns(metrics: dict) -> str:
    """KR-split-0 per tag ("  mode 0.958  tail 0.885") for a tagged KR set; nothing for an untagged one."""
    return "".join(f"  {tag} {_fmt(score)}" for tag, score in (metrics.get("score_by_tag") or {}).items())


def _train(state: _State, i: int, prev: str, stage_dir: Path) -> None:
    from fortifai_bench.collapse.corruption import gradient_split
    from fortifai_bench.train import train

    task, dist = state.task, state.dist
    texts, record = _training_texts(state, i)
    model, tokenizer = load_stage_model(state, prev)
    config = task.stage_train(seed=stage_seed(task.seed, i, "train"),
                              share=split_share(task, i, [len(split) for split in state.data.splits]))
    if state.progress:
        parts = ", ".join(f"D_{d['split']}^({d['generation']})" for d in record)
        print(f"stage {i}: training on [{parts}] ({len(texts)} paragraphs, {config.epochs} epochs)", flush=True)
    pairs = _rewrite_pairs(state, i)
    # corrupted vs faithful tokens, as M_{i-1} and then M_i see them: one forward pass, on rank 0
    # and the fresh real split D_i as a pair with itself (every token faithful): the kept rate TCE gives
    # real text, against the rates it gives the regenerated text's corrupted and faithful tokens (issue 19)
    fresh = [(p.text, p.text) for p in state.data.splits[i]] if pairs else []
    before = dist.on_main(gradient_split, model, tokenizer, state.loss, pairs, task.eval.batch_size, fresh)
    result = train(model, tokenizer, texts, state.loss, config, progress=state.progress)
    after = dist.on_main(gradient_split, result.model, tokenizer, state.loss, pairs, task.eval.batch_size, fresh)
    last = result.history[-1] if result.history else {}
    dist.on_main(_save_stage, result.model, tokenizer, stage_dir, {
        "training_data": record, "paragraphs": len(texts), "seconds": result.seconds, "processes": dist.world,
        "summary": {"best_epoch": result.best_epoch, "train_loss": last.get("train_loss"),
                    "val_loss": last.get("val_loss"), "masked_fraction": last.get("masked_fraction"),
                    "mean_p_correct": last.get("mean_p_correct")},
        "history": result.history,
        "gradient": {"start": before, "end": after} if pairs else None,
    })


def _save_stage(model, tokenizer, stage_dir: Path, info: dict) -> None:
    """M_i's directory, then train.json (which marks training done)."""
    from fortifai_bench.models import save_model

    try:
        save_model(model, tokenizer, stage_dir / "model")
    except Exception as exc:  # safetensors reports a full disk as its own error type, not OSError
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
            raise FortifaiError(f"disk full while saving {stage_dir / 'model'}") from exc
        raise
    write_json(stage_dir / "train.json", info)


def _rewrite_pairs(state: _State, i: int) -> list[tuple[str, str]]:
    """(original, rewritten) texts of every regenerated split stage i trains on."""
    pairs = []
    for k, g in pool(i, state.task.mode):
        if g > 0:
            pairs += [(p.text, r["text"]) for p, r in zip(state.data.splits[k], _rows(state, k, g))]
    return pairs


def _regenerate_split(state: _State, model, tokenizer, i: int, k: int, g: int, folder: Path) -> None:
    """D_k rewritten by M_i, each process rewriting a share of its paragraphs (their sampling seeds are
    per paragraph, so the share does not change a rewrite). Rank 0 writes the work done (wall seconds;
    paragraphs, new tokens and seconds per process) to split_<k>.work.json, then the rows to
    split_<k>.jsonl, which marks the split done."""
    from fortifai_bench.collapse.regenerate import regenerate

    dist = state.dist
    start = time.perf_counter()
    rows = _rows(state, k, g)
    # longest with longest across processes, so every process gets a similar number of tokens
    order = sorted(range(len(rows)), key=lambda j: len(rows[j]["text"]))
    mine = dist.shard(order)
    res = regenerate(model, tokenizer, [rows[j]["text"] for j in mine], state.task.regenerate,
                     seed=stage_seed(state.task.seed, i, "regenerate", k), keys=[rows[j]["id"] for j in mine],
                     progress=state.progress, desc=f"stage {i} regenerate D_{k}")
    done = [(text, ids, gen.index(True) if True in gen else len(ids))
            for text, ids, gen in zip(res.texts, res.ids, res.generated)]
    by_position = dict(zip(order, dist.unshard(done)))
    out = [{"id": r["id"], "split": k, "generation": g + 1, "text": by_position[j][0], "ids": by_position[j][1],
            "first": by_position[j][2]} for j, r in enumerate(rows)]
    work = dist.gather([len(mine), res.new_tokens, res.seconds])
    record = {"seconds": time.perf_counter() - start, "per_process": {
        "paragraphs": [w[0] for w in work], "new_tokens": [w[1] for w in work], "seconds": [w[2] for w in work]}}

    def write():
        write_json(folder / f"split_{k}.work.json", record)
        write_jsonl(folder / f"split_{k}.jsonl", out)

    dist.on_main(write)
    state.regenerated[(i, k)] = out


# ------------------------------------------------------------------------------------------ results

def score_name(task) -> str:
    """kr_split0, or kr_split0_<tag> when the headline score is one tag's questions (eval.score_tag)."""
    return "kr_split0" if task.eval.score_tag is None else f"kr_split0_{task.eval.score_tag}"


def build_results(state: _State, stages: list[dict], stopped: dict | None = None) -> dict:
    from fortifai_bench.collapse.base import base_record
    from fortifai_bench.kr.sets import kr_record
    from fortifai_bench.results import make_results, runtime

    task = state.task
    ids = [q.id for q in state.data.questions if q.split == 0]
    return make_results(
        kind="text", task={"name": task.task, "version": task.version}, loss=state.loss.describe(),
        model=task.model.name, seed=task.seed, config=task.to_dict(), control=task.mode == "clean",
        score_name=score_name(task), failure_threshold=task.eval.failure_threshold,
        stages=[_stage_entry(s) for s in stages],
        items={"split0_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
               "split0_ids_order": "KR file order",
               "split0_correct": [s["items"]["split0_correct"] for s in stages]},
        complete=stopped is None and len(stages) == task.stages, stopped=stopped,
        kr_source=state.data.kr_source, kr=kr_record(state.data.kr_source), base=base_record(task, state.base_spec),
        runtime=runtime(world_size=state.dist.world, device=state.dist.device.type, dtype=task.model.dtype),
        chance=state.chance, run_dir=str(state.run), command=state.command)


def _stage_entry(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "items"}


def comparable(results: dict) -> dict:
    """results.json without what legitimately differs between two identical runs (timings, paths, dates)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("seconds", "provenance", "run_dir")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(results)
