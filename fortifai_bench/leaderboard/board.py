"""Leaderboard entries and boards: merge the seeds of one configuration, validate, publish.

A board is one JSON file per collapse task (`leaderboards/<task>.json`). It records the *protocol* (the runs'
resolved config minus what may differ between entries: loss, seed, output folder) and refuses runs made under
another protocol or task version, so every entry on a board is comparable with every other. Loading a board
parses JSON and checks it against `leaderboards/schema.json`; nothing in it is ever executed.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_json, write_json
from fortifai_bench.leaderboard.runs import json_path, load_run, read_json_file, schema_error
from fortifai_bench.metrics import mean_ci

BOARD_FORMAT = "fortifai-bench/leaderboard@1"

# Config keys that legitimately differ between the runs on one board (the entry records them itself),
# or that only say where/how a run was executed. Everything else in the config is the protocol.
RUN_ONLY_KEYS = frozenset({"seed", "loss", "loss_args", "out", "out_dir", "output", "run_dir", "resume",
                           "progress", "device", "command"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# ----------------------------------------------------------------------------------------------- schema


def leaderboards_dir() -> Path:
    """The shipped `leaderboards/` folder (schema and seeded boards), in a checkout or an installed wheel."""
    try:
        path = Path(str(importlib.resources.files("fortifai_bench.leaderboards")))
        if (path / "schema.json").is_file():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "leaderboards"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = read_json(leaderboards_dir() / "schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_board(board: Any, where: str = "leaderboard") -> None:
    """Raise a FortifaiError naming the entry and the field if `board` breaks the schema."""
    err = schema_error(_validator(), board)
    if err is None:
        return
    path = list(err.absolute_path)
    if len(path) >= 2 and path[0] == "entries" and isinstance(path[1], int):
        entry = board["entries"][path[1]]
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"entry {path[1]}" + (f" ({name!r})" if isinstance(name, str) else "")
        field_path = json_path(path[2:]) if len(path) > 2 else "(the entry itself)"
        raise FortifaiError(f"{where}: {label}: field {field_path}: {err.message}")
    raise FortifaiError(f"{where}: field {json_path(path)}: {err.message}")


def load_board(path: str | os.PathLike) -> dict:
    """Read and validate a board. JSON only: a board can carry data, never code."""
    board = read_json_file(path)
    validate_board(board, str(path))
    return board


# ----------------------------------------------------------------------------------------------- entries


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def protocol_of(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RUN_ONLY_KEYS}


def protocol_hash(protocol: dict) -> str:
    return hashlib.sha256(canonical(protocol).encode()).hexdigest()


def entry_key(entry_or_run: dict) -> tuple:
    """What identifies an entry: task, loss spec and arguments, model, seed set."""
    seeds = entry_or_run["seeds"] if "seeds" in entry_or_run else [entry_or_run["seed"]]
    loss = entry_or_run["loss"]
    return (entry_or_run["task"]["name"], loss["spec"], canonical(loss["args"]), entry_or_run["model"],
            tuple(sorted(seeds)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "x"


def entry_name(task: str, loss: dict, model: str, seeds: list[int]) -> str:
    """A readable, path-safe id: loss, model basename, seeds, and a short hash of the full key."""
    digest = hashlib.sha256(canonical([task, loss["spec"], loss["args"], model, sorted(seeds)]).encode()).hexdigest()
    model_part = _slug(Path(model).name if "/" in model or os.sep in model else model)[:32]
    seed_part = "s" + "-".join(str(s) for s in sorted(seeds))
    return f"{_slug(loss['spec'])[:40]}_{model_part}_{seed_part[:32]}_{digest[:8]}"


def _stat(values: list[float | None]) -> dict:
    out = mean_ci([v for v in values if v is not None])
    out["per_seed"] = list(values)
    return out


def _stage_stat(runs: list[dict], i: int, key: str) -> dict | None:
    values = [r["stages"][i].get(key) for r in runs]
    if all(v is None for v in values):
        return None
    return _stat(values)


def _same(runs: list[dict], what: str, get) -> Any:
    values = {canonical(get(r)): get(r) for r in runs}
    if len(values) > 1:
        shown = "; ".join(f"{r['_path']}: {canonical(get(r))}" for r in runs)
        raise FortifaiError(f"cannot merge runs with different {what}: {shown}")
    return next(iter(values.values()))


def time_to_failure_summary(per_seed: list[float | None], n_stages: int) -> dict:
    """Mean/CI over the seeds that failed; `rank_value` counts a seed that never failed as the horizon."""
    reached = [t for t in per_seed if t is not None]
    stat = mean_ci(reached)
    return {
        "mean": stat["mean"], "ci": stat["ci"], "reached": len(reached), "not_reached": len(per_seed) - len(reached),
        "per_seed": list(per_seed),
        "rank_value": float(sum(t if t is not None else n_stages for t in per_seed) / len(per_seed)),
    }


def build_entry(runs: list[dict]) -> dict:
    """Merge the runs of several seeds of one configuration into one leaderboard entry."""
    runs = sorted(runs, key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        raise FortifaiError(f"seed {dup[0]} given twice: " + ", ".join(r["_path"] for r in runs if r["seed"] == dup[0]))
    task = _same(runs, "task", lambda r: r["task"])
    loss = _same(runs, "loss", lambda r: {"spec": r["loss"]["spec"], "target": r["loss"]["target"],
                                          "args": r["loss"]["args"]})
    model = _same(runs, "model", lambda r: r["model"])
    score_name = _same(runs, "score_name", lambda r: r["score_name"])
    threshold = _same(runs, "failure_threshold", lambda r: r["failure_threshold"])
    n_stages = _same(runs, "number of stages", lambda r: len(r["stages"]))
    config_hash = _same(runs, "config_hash (config minus seed)", lambda r: r["config_hash"])
    _same(runs, "protocol config", lambda r: protocol_of(r["config"]))
    stages = [{"stage": i, "score": _stage_stat(runs, i, "score"), "kr_total": _stage_stat(runs, i, "kr_total"),
               "kl": _stage_stat(runs, i, "kl")} for i in range(n_stages)]
    versions: dict[str, set] = {}
    for r in runs:
        for k, v in r["provenance"]["versions"].items():
            versions.setdefault(str(k), set()).add(None if v is None else str(v))
    return {
        "name": entry_name(task["name"], loss, model, seeds),
        "task": {"name": task["name"], "version": task["version"]},
        "loss": loss,
        "model": model,
        "seeds": seeds,
        "score_name": score_name,
        "failure_threshold": threshold,
        "stages": stages,
        "time_to_failure": time_to_failure_summary([r["time_to_failure"] for r in runs], n_stages),
        "auc": _stat([r["auc"] for r in runs]),
        "final_score": _stat([r["final_score"] for r in runs]),
        # A version that differs between seeds is shown as "a | b" rather than hidden.
        "versions": {k: " | ".join(sorted(v - {None})) or None for k, v in sorted(versions.items())},
        "config_hash": config_hash,
        "date": max(r["provenance"]["date"] for r in runs),
        "runs": [{"seed": r["seed"], "command": r["provenance"]["command"], "date": r["provenance"]["date"],
                  "git": r["provenance"].get("git"),
                  "split0_ids_sha256": (r.get("items") or {}).get("split0_ids_sha256")} for r in runs],
    }


def rank_entries(entries: Iterable[dict]) -> list[dict]:
    """Best first: longest time to failure (a seed that never failed counts as the full horizon), then AUC."""

    def key(e):
        auc = e["auc"]["mean"]
        return (-e["time_to_failure"]["rank_value"], -(auc if auc is not None and not math.isnan(auc) else -1e9),
                e["name"])

    return sorted(entries, key=key)


# ----------------------------------------------------------------------------------------------- publish


def check_board_path(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """`path` must be a .json file inside `root` (symlinks resolved): a task or entry name can't escape it."""
    root_real = Path(root).resolve()
    target = Path(path)
    real = target.resolve()
    if real.suffix != ".json":
        raise FortifaiError(f"leaderboard file {path} must end in .json")
    if real.parent != root_real and root_real not in real.parents:
        raise FortifaiError(f"leaderboard file {path} is outside the leaderboards folder {root}")
    if real.name == "schema.json":
        raise FortifaiError(f"leaderboard file {path} would overwrite the schema")
    return target


def board_path_for(task_name: str, root: str | os.PathLike) -> Path:
    if not _NAME.match(task_name):
        raise FortifaiError(f"task name {task_name!r} is not a safe file name (letters, digits, _ . - only)")
    return check_board_path(Path(root) / f"{task_name}.json", root)


def describe_difference(a: Any, b: Any, prefix: str = "", limit: int = 4) -> list[str]:
    """Human-readable differences between two JSON values: 'train.epochs: board 3, runs 5'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append(f"{p}: not on the board, runs {canonical(b[k])}")
            elif k not in b:
                out.append(f"{p}: board {canonical(a[k])}, missing in the runs")
            else:
                out += describe_difference(a[k], b[k], p, limit)
        return out[:limit]
    if canonical(a) != canonical(b):
        return [f"{prefix or '(value)'}: board {canonical(a)}, runs {canonical(b)}"]
    return []


@dataclass
class PublishReport:
    board: Path
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    written: bool = False

    def lines(self) -> list[str]:
        out = [f"added {n}" for n in self.added] + [f"replaced {n}" for n in self.replaced]
        out += [f"unchanged {n}" for n in self.unchanged]
        out.append(f"{'wrote' if self.written else 'no change to'} {self.board}")
        return out


def group_runs(runs: list[dict]) -> list[list[dict]]:
    """Runs of the same (task, loss spec+args, model) form one entry, whatever their seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(entry_key(r)[:4], []).append(r)
    return list(groups.values())


def new_board(run: dict) -> dict:
    protocol = protocol_of(run["config"])
    return {"format": BOARD_FORMAT, "task": dict(run["task"]), "kind": run["kind"], "protocol": protocol,
            "protocol_hash": protocol_hash(protocol), "entries": []}


def _check_compatible(board: dict, run: dict, where: Path) -> None:
    if run["task"]["name"] != board["task"]["name"]:
        raise FortifaiError(f"{run['_path']}: task {run['task']['name']!r} differs from the board's "
                            f"{board['task']['name']!r} ({where})")
    if run["task"]["version"] != board["task"]["version"]:
        raise FortifaiError(f"{run['_path']}: task version {run['task']['version']} differs from the board's "
                            f"version {board['task']['version']} ({where})")
    if run["kind"] != board["kind"]:
        raise FortifaiError(f"{run['_path']}: kind {run['kind']!r} differs from the board's {board['kind']!r}")
    diff = describe_difference(board["protocol"], protocol_of(run["config"]))
    if diff:
        raise FortifaiError(f"{run['_path']}: config differs from the board's ({where}): " + "; ".join(diff))


def publish(run_paths: list[str | os.PathLike], to: str | os.PathLike | None = None, *,
            root: str | os.PathLike = "leaderboards", replace: bool = False) -> PublishReport:
    """Merge runs into entries and add them to the board; validate, then write atomically (or not at all).

    Publishing the same runs twice changes nothing. An entry with the same key but different numbers (a re-run)
    is refused unless `replace`.
    """
    if not run_paths:
        raise FortifaiError("publish: give at least one run directory")
    runs = [load_run(p) for p in run_paths]
    task_names = {r["task"]["name"] for r in runs}
    if len(task_names) > 1:
        raise FortifaiError(f"publish: runs of several tasks ({', '.join(sorted(task_names))}); one board per task")
    path = check_board_path(to, root) if to is not None else board_path_for(runs[0]["task"]["name"], root)
    existing = load_board(path) if path.exists() else None
    board = json.loads(json.dumps(existing)) if existing else new_board(runs[0])
    for r in runs:
        _check_compatible(board, r, path)
    report = PublishReport(path)
    entries = {entry_key(e): e for e in board["entries"]}
    for group in group_runs(runs):
        entry = build_entry(group)
        key = entry_key(entry)
        old = entries.get(key)
        if old is None:
            report.added.append(entry["name"])
        elif canonical(old) == canonical(entry):
            report.unchanged.append(entry["name"])
            continue
        elif replace:
            report.replaced.append(entry["name"])
        else:
            diff = describe_difference(old, entry)
            raise FortifaiError(f"{path}: entry {entry['name']} is already on the board with different results "
                                f"({'; '.join(diff)}); pass --replace to overwrite it")
        entries[key] = entry
    # Stable order (loss, model, seeds) so that a pull request shows a small JSON diff; show ranks at read time.
    board["entries"] = [entries[k] for k in sorted(entries, key=lambda k: (k[1], k[2], k[3], k[4]))]
    validate_board(board, str(path))
    if existing is None or canonical(existing) != canonical(board):
        write_json(path, board)
        report.written = True
    return report
