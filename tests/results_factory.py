"""Writes run folders whose results.json follows the results contract (fortifai_bench/results.py), for
leaderboard and compare tests.

Scores are derived from per-question bitstrings, exactly as a collapse run derives them, so time to failure,
AUC and the McNemar inputs all agree with each other.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import yaml

from fortifai_bench.metrics import area_under_curve, failure

DEFAULT_CONFIG = {
    "task": "collapse_facts", "version": 1, "corpus": "facts", "stages": 4, "mode": "accumulate", "model": "tiny",
    "train": {"epochs": 3, "lr": 3e-4, "batch_size": 16, "block_size": 64},
    "eval": {"kr": True, "failure_threshold": 0.75, "lm_eval_tasks": []},
}


def bits_for(accuracies: list[float], n_items: int, seed: int) -> list[str]:
    """One bitstring per stage with exactly round(acc * n) ones, at random positions."""
    rng = np.random.default_rng(seed)
    out = []
    for acc in accuracies:
        k = int(round(acc * n_items))
        row = np.zeros(n_items, dtype=int)
        row[rng.choice(n_items, size=k, replace=False)] = 1
        out.append("".join(map(str, row)))
    return out


def make_results(accuracies: list[float], *, loss: str = "ce", loss_args: dict | None = None, seed: int = 0,
                 model: str = "tiny", task: str = "collapse_facts", version: int = 1, n_items: int = 40,
                 config: dict | None = None, kind: str = "text", bits: list[str] | None = None,
                 ids: str = "facts-split0", command: str | None = None, control: bool = False) -> dict:
    bits = bits if bits is not None else bits_for(accuracies, n_items, seed=zlib.crc32(f"{loss}/{seed}".encode()))
    scores = [sum(map(int, b)) / len(b) for b in bits]
    cfg = json.loads(json.dumps(config or DEFAULT_CONFIG))
    cfg.update({"task": task, "version": version, "loss": loss, "seed": seed, "out": f"runs/{loss}-{seed}"})
    if control:
        cfg["mode"] = "clean"
    hashed = {k: v for k, v in cfg.items() if k not in ("seed", "out")}
    args = loss_args if loss_args is not None else ({"gamma": float(loss.split(":")[1])} if ":" in loss else {})
    return {
        "format": "fortifai-bench/results@1", "kind": kind, "task": {"name": task, "version": version},
        "loss": {"spec": loss, "target": "fortifai_bench.losses:" + loss.split(":")[0].upper(), "args": args},
        "model": model, "seed": seed, "config": cfg, "control": control,
        "config_hash": hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest(),
        "score_name": "kr_split0", "failure_threshold": 0.75,
        "stages": [{"stage": i, "score": s, "kr_total": max(0.0, s - 0.02), "kl": 0.01 * i}
                   for i, s in enumerate(scores)],
        "time_to_failure": failure(scores, 0.75).time, "failure": failure(scores, 0.75).to_dict(),
        "auc": area_under_curve(scores), "final_score": scores[-1],
        "items": {"split0_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(), "split0_correct": bits},
        "provenance": {"versions": {"fortifai-bench": "0.1.0", "torch": "2.13.0"}, "git": "abc123",
                       "command": command or f"fortifai-bench collapse --loss {loss} --seed {seed}",
                       "date": f"2025-01-0{1 + seed % 9}T00:00:00+00:00"},
    }


def write_run(root: Path, accuracies: list[float], **kw) -> Path:
    return write_results(root, make_results(accuracies, **kw))


def write_task_run(root: Path, task, accuracies: list[float], *, loss: str = "ce", control: bool = False,
                   complete: bool = True, **kw) -> Path:
    """A run of a real collapse task (a CollapseTask, e.g. a sweep regime's) under root, as the sweep finds
    one: the config.yaml a run starts with, and a results.json carrying the task's config and config hash."""
    from fortifai_bench.losses import load_loss

    results = make_results(accuracies, loss=loss, control=control, task=task.task, version=task.version, **kw)
    results.update(config=task.to_dict(), config_hash=task.config_hash(load_loss(loss).describe()),
                   complete=complete)
    run = write_results(root, results)
    write_run_config(run, task, loss, results["seed"])
    return run


def write_run_config(run: Path, task, loss: str, seed: int) -> None:
    """RUN/config.yaml as `rundir.open_run` writes it (`rundir.config_doc`) for `task` at `seed`."""
    import dataclasses

    from fortifai_bench.collapse.rundir import config_doc
    from fortifai_bench.losses import load_loss

    run.mkdir(parents=True, exist_ok=True)
    doc = config_doc(dataclasses.replace(task, seed=seed), load_loss(loss).describe())
    (run / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def write_results(root: Path, results: dict) -> Path:
    name = results['task']['name'] + ("-control" if results["control"] else "")
    run = Path(root) / f"{name}-{results['loss']['spec'].replace(':', '_')}-{results['seed']}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(json.dumps(results, indent=1))
    return run


def write_seeds(root: Path, curves: list[list[float]], **kw) -> list[Path]:
    """One run per seed (seed = index), e.g. three noisy copies of one collapse curve."""
    return [write_run(root, curve, seed=i, **kw) for i, curve in enumerate(curves)]
