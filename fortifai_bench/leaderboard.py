"""Leaderboards: publish collapse runs as entries, show them ranked, render a static web page.

    fortifai-bench publish RUN_DIR... [--to leaderboards/<task>.json] [--replace]
    fortifai-bench leaderboard show FILE [--markdown]
    fortifai-bench leaderboard render FILE --html OUT
    fortifai-bench leaderboard suite FILE... [--markdown] [--html OUT]   # loss x regime, one board per regime

A board is one JSON file per collapse task (`leaderboards/<task>.json`). Each entry merges the runs (one
`results.json` per seed, contract 5) of one (task, loss spec and arguments, model, seed set). The board records
the *protocol* (the runs' resolved config minus what may differ between entries: loss, seed, output folder) and
refuses runs made under another protocol or task version, so every entry is comparable with every other.
Loading a board parses JSON and checks it against `leaderboards/schema.json`; nothing in it is ever executed.
Publishing holds a lock on the board for its read-modify-write, so concurrent publishers lose nothing.
Rendering lives in `fortifai_bench.leaderboard_render`, the commands in `fortifai_bench.leaderboard_cli`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import filelock
import jsonschema

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_json, write_json
from fortifai_bench.metrics import (ALPHA, Failure, compare_failures, holm, mean_ci, score_bounds,
                                    summarize_failures)
from fortifai_bench.results import (check_same_base, entry_conditions, json_path, load_results, run_failure,
                                    same_number)


# ----------------------------------------------------------------------------------------------- results.json
# The results contract (schema, loader, and the check that a run's numbers agree with each other,
# results.check_run_numbers) lives in fortifai_bench.results.

def read_json_file(path: str | os.PathLike) -> Any:
    """`io.read_json` (a binary or non-UTF-8 file is a one-line error there too)."""
    return read_json(path)


def schema_error(validator: jsonschema.protocols.Validator, obj: Any) -> jsonschema.ValidationError | None:
    """The first error in document order (deterministic, so a message is stable across runs)."""
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return errors[0] if errors else None


def load_run(path: str | os.PathLike) -> dict:
    """One run's results.json for a board: `results.load_results` (schema and self-consistency checked)."""
    return load_results(path)


BOARD_FORMAT = "fortifai-bench/leaderboard@1"

# Config keys that legitimately differ between the runs on one board (the entry records them itself),
# or that only say where/how a run was executed. Everything else in the config is the protocol.
RUN_ONLY_KEYS = frozenset({"seed", "loss", "loss_args", "out", "out_dir", "output", "run_dir", "resume",
                           "progress", "device", "command", "description"})  # a description is prose, not protocol

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
    return Path(__file__).resolve().parents[1] / "leaderboards"


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
    check_board_consistency(board, str(path))
    return board


def _stat_mismatch(stat: dict | None, n_seeds: int, bounds: tuple | None) -> str | None:
    """Why a stored {mean, ci, per_seed} is not what its own per-seed values give, or None. Boards published
    before intervals were cut to the quantity's range hold the uncut t-interval, also accepted."""
    if stat is None:
        return None
    if len(stat["per_seed"]) != n_seeds:
        return f"{len(stat['per_seed'])} per-seed values for {n_seeds} seeds"
    again = _stat(stat["per_seed"], bounds)
    if not same_number(stat.get("mean"), again["mean"]):
        return f"mean {stat.get('mean')} but the per-seed values give {again['mean']}"
    uncut = _stat(stat["per_seed"])["ci"]
    if "ci" in stat and not any(all(same_number(x, y) for x, y in zip(stat["ci"], ci)) for ci in (again["ci"], uncut)):
        return f"ci {stat['ci']} but the per-seed values give {again['ci']}"
    return None


def _entry_mismatch(entry: dict, names: bool) -> str | None:
    """What in one entry disagrees with the rest of it (its summaries; its name if `names`), or None."""
    seeds = entry["seeds"]
    name = entry_name(entry["task"]["name"], entry["loss"], entry["model"], seeds, bool(entry.get("control")))
    if names and entry["name"] != name:
        return f"name {entry['name']!r} is not the name its task, loss, model and seeds give ({name!r})"
    bounds = stat_bounds(entry["score_name"])
    for field_name in ("auc", "final_score"):
        why = _stat_mismatch(entry[field_name], len(seeds), bounds[field_name])
        if why:
            return f"field {field_name}: {why}"
    for i, stage in enumerate(entry["stages"]):
        for key in ("score", "kr_total", "kl"):
            why = _stat_mismatch(stage.get(key), len(seeds), bounds[key])
            if why:
                return f"field stages[{i}].{key}: {why}"
    ttf = entry["time_to_failure"]
    again = time_to_failure_summary(ttf["per_seed"])
    scores = [[st["score"]["per_seed"][j] for st in entry["stages"]] for j in range(len(seeds))]
    for j, fail in enumerate(ttf["per_seed"]):
        derived = failure_of(scores[j], entry["failure_threshold"])
        if fail != derived:
            return f"field time_to_failure.per_seed[{j}]: {fail} but seed {seeds[j]}'s stage scores give {derived}"
    for key in ("mean", "rank_value", "restricted_mean", "failed", "never_failed", "never_learned"):
        if key in ttf and key in again and not same_number(ttf[key], again[key]):
            return f"field time_to_failure.{key}: {ttf[key]} but the per-seed values give {again[key]}"
    return None


def failure_of(scores: list, threshold: float) -> dict:
    from fortifai_bench.metrics import failure

    return failure(scores, threshold).to_dict()


def check_board_consistency(board: dict, where: str = "leaderboard", names: bool = False) -> None:
    """Refuse a board edited by hand so that it contradicts itself: a summary (mean, CI, rank value) that its
    own per-seed values do not give, two entries with the same key, a protocol hash that is not the
    protocol's, and (`names`, as `publish` checks before it adds to a board) an entry name that is not the
    one its task, loss, model and seeds give, e.g. a loss spec edited to claim another loss's numbers.
    (Per-seed numbers themselves can only be checked against the runs: `publish` builds entries from
    results.json files, never from a board.)"""
    if board["protocol_hash"] != protocol_hash(board["protocol"]):
        raise FortifaiError(f"{where}: field protocol_hash is not the hash of the board's protocol "
                            "(was the protocol edited by hand?)")
    seen: dict[tuple, int] = {}
    for i, entry in enumerate(board["entries"]):
        label = f"{where}: entry {i} ({entry['name']!r})"
        if entry["task"] != board["task"]:
            raise FortifaiError(f"{label}: task {entry['task']} differs from the board's {board['task']}")
        key = entry_key(entry)
        if key in seen:
            raise FortifaiError(f"{label}: the same task, loss, model and seeds as entry {seen[key]}")
        seen[key] = i
        why = _entry_mismatch(entry, names)
        if why:
            raise FortifaiError(f"{label}: {why} (was it edited by hand? publish it again from its runs)")


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
            bool(entry_or_run.get("control")), tuple(sorted(seeds)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "x"


def entry_name(task: str, loss: dict, model: str, seeds: list[int], control: bool = False) -> str:
    """A readable, path-safe id: loss, model basename, seeds, and a short hash of the full key; the clean
    control (the same loss with every split real) is prefixed `control-`."""
    key = [task, loss["spec"], loss["args"], model, sorted(seeds)] + (["control"] if control else [])
    digest = hashlib.sha256(canonical(key).encode()).hexdigest()
    model_part = _slug(Path(model).name if "/" in model or os.sep in model else model)[:32]
    seed_part = "s" + "-".join(str(s) for s in sorted(seeds))
    return f"{'control-' if control else ''}{_slug(loss['spec'])[:40]}_{model_part}_{seed_part[:32]}_{digest[:8]}"


def stat_bounds(score_name: str) -> dict[str, tuple]:
    """The range of each summarized quantity of an entry: the score's (`metrics.score_bounds`) for the
    score, its AUC and final value; KR-total is an accuracy; a KL is >= 0."""
    score = score_bounds(score_name)
    return {"score": score, "auc": score, "final_score": score, "kr_total": (0.0, 1.0),
            "kl": (0.0, None), "kl_split0": (0.0, None)}


def _stat(values: list[float | None], bounds: tuple | None = None) -> dict:
    # NaN (a metric that could not be computed) is stored as null: boards stay strict JSON
    values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    out = mean_ci([v for v in values if v is not None], bounds=bounds)
    out["per_seed"] = values
    return out


def _stage_stat(runs: list[dict], i: int, key: str, bounds: tuple) -> dict | None:
    values = [r["stages"][i].get(key) for r in runs]
    if all(v is None for v in values):
        return None
    return _stat(values, bounds)


def _same(runs: list[dict], what: str, get) -> Any:
    values = {canonical(get(r)): get(r) for r in runs}
    if len(values) > 1:
        shown = "; ".join(f"{r['_path']}: {canonical(get(r))}" for r in runs)
        raise FortifaiError(f"cannot merge runs with different {what}: {shown}")
    return next(iter(values.values()))


def time_to_failure_summary(per_seed: list[dict]) -> dict:
    """`metrics.summarize_failures` over an entry's seeds (`per_seed`: each seed's `Failure` as a dict);
    `rank_value`, what the board ranks by, is the restricted mean time to failure (a seed that never
    failed counts as the last stage; -1 when no seed learned)."""
    out = summarize_failures([Failure.from_dict(d) for d in per_seed])
    out["rank_value"] = out["restricted_mean"] if out["restricted_mean"] is not None else -1.0
    return out


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
    control = _same(runs, "control flag", lambda r: bool(r.get("control")))
    conditions = entry_conditions(runs)  # the base's sha256 and the runtime, where the runs recorded them
    bounds = stat_bounds(score_name)
    stages = [{"stage": i, **{key: _stage_stat(runs, i, key, bounds[key])
                              for key in ("score", "kr_total", "kl", "kl_split0")}}
              for i in range(n_stages)]
    versions: dict[str, set] = {}
    for r in runs:
        for k, v in r["provenance"]["versions"].items():
            versions.setdefault(str(k), set()).add(None if v is None else str(v))
    return {
        "name": entry_name(task["name"], loss, model, seeds, control),
        "control": control,
        "task": {"name": task["name"], "version": task["version"]},
        "loss": loss,
        "model": model,
        "seeds": seeds,
        "score_name": score_name,
        "failure_threshold": threshold,
        "stages": stages,
        "time_to_failure": time_to_failure_summary([run_failure(r).to_dict() for r in runs]),
        "auc": _stat([r["auc"] for r in runs], bounds["auc"]),
        "final_score": _stat([r["final_score"] for r in runs], bounds["final_score"]),
        # A version that differs between seeds is shown as "a | b" rather than hidden.
        "versions": {k: " | ".join(sorted(v - {None})) or None for k, v in sorted(versions.items())},
        "config_hash": config_hash,
        **conditions,
        "date": max(r["provenance"]["date"] for r in runs),
        "runs": [{"seed": r["seed"], "command": r["provenance"]["command"], "date": r["provenance"]["date"],
                  "git": r["provenance"].get("git"), **({"run_dir": r["run_dir"]} if r.get("run_dir") else {}),
                  "split0_ids_sha256": (r.get("items") or {}).get("split0_ids_sha256")} for r in runs],
    }


TIE_ALPHA = ALPHA  # Holm-adjusted exact p at or above it: indistinguishable


def rank_entries(entries: Iterable[dict]) -> list[dict]:
    """Best first: longest restricted mean time to failure, then AUC; the clean control (a ceiling, not a
    loss) after the ranked entries."""

    def key(e):
        auc = e["auc"]["mean"]
        return (bool(e.get("control")), -e["time_to_failure"]["rank_value"],
                -(auc if auc is not None and not math.isnan(auc) else -1e9), e["name"])

    return sorted(entries, key=key)


@dataclass
class Ranked:
    """One row of a shown board. `label`: "1" for the best entry, "=1" for an entry indistinguishable from it,
    else its position ("4"); "control" for the clean control. `vs_best` and `vs_ce`: `metrics.compare_failures`
    of this entry against the best entry and against CE (ratio = this entry / the other), each with `p_holm`,
    its p adjusted over all the board's comparisons; `vs_ce` also has `verdict`."""

    label: str
    entry: dict
    vs_best: dict | None = None
    vs_ce: dict | None = None


BASELINE_SPECS = ("ce", "mle")  # cross-entropy: `ce` for text, `mle` (maximum likelihood) for the toys


def baseline_of(entries: Iterable[dict], entry: dict) -> dict | None:
    """The CE entry an entry is compared with: loss spec `ce` (the toys: `mle`), not the control, the same
    model; of several, the one with the most seeds."""
    found = [e for e in entries if e["loss"]["spec"] in BASELINE_SPECS and not e.get("control")
             and e["model"] == entry["model"]]
    return max(found, key=lambda e: (len(e["seeds"]), e["name"])) if found else None


def verdict(test: dict | None) -> str:
    """better / worse (Holm-adjusted exact p < ALPHA, by the sign of the difference) or indistinguishable."""
    if test is None or test.get("p_holm") is None or test["p_holm"] >= ALPHA:
        return "indistinguishable"
    return "better" if test["diff"] > 0 else "worse"


def _seed_failures(entry: dict) -> list[Failure]:
    return [Failure.from_dict(d) for d in entry["time_to_failure"]["per_seed"]]


def ranking(entries: Iterable[dict]) -> list[Ranked]:
    """The board as shown, best first (`rank_entries`), every entry tested against the best entry and against
    CE (the exact permutation test over seeds, `metrics.compare_failures`), the p-values Holm-adjusted over
    all these comparisons at once. The best entry's group, the entries whose adjusted p against it is
    >= ALPHA (or that have too few seeds to test), share its rank as "=1": one group, not a chain of
    neighbours. The clean control is not compared."""
    ranked = rank_entries(entries)
    losses = [e for e in ranked if not e.get("control")]
    best = losses[0] if losses else None
    rows = [Ranked("control", e) for e in ranked if e.get("control")]
    family: dict[frozenset, float | None] = {}
    out = []
    for i, e in enumerate(losses):
        row = Ranked("1" if e is best else str(i + 1), e)
        for attr, other in (("vs_best", best), ("vs_ce", baseline_of(losses, e))):
            if other is not None and other is not e:
                test = compare_failures(_seed_failures(e), _seed_failures(other))
                family[frozenset((e["name"], other["name"]))] = test["p_value"]
                setattr(row, attr, {**test, "other": other["name"]})
        out.append(row)
    adjusted = dict(zip(family, holm(list(family.values()))))
    for row in out:
        for test in (row.vs_best, row.vs_ce):
            if test is not None:
                test["p_holm"] = adjusted[frozenset((row.entry["name"], test["other"]))]
        if row.vs_ce is not None:
            row.vs_ce["verdict"] = verdict(row.vs_ce)
        if row.vs_best is not None and verdict(row.vs_best) == "indistinguishable":
            row.label = "=1"
    return out + rows


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
        groups.setdefault(entry_key(r)[:5], []).append(r)
    return list(groups.values())


def new_board(run: dict) -> dict:
    protocol = _protocol(run, None)
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
    diff = describe_difference(board["protocol"], _protocol(run, board))
    if diff:
        raise FortifaiError(f"{run['_path']}: config differs from the board's ({where}): " + "; ".join(diff))


def check_kr_source(run: dict) -> None:
    """Re-read the KR questions a run was scored on (`kr_source` in results.json) with the checks of
    `read_questions`: a file of questions whose true and false continuations are the same scores 1.0
    whatever the model remembers, so it must not reach a board. A run that names a source this machine
    does not have cannot be checked, and is refused."""
    from fortifai_bench.kr.schema import read_questions
    from fortifai_bench.kr.sets import find_kr_file

    source = find_kr_file(run)  # by the recorded path, else by name and sha256 (a moved run or package)
    if source is None:
        return  # a toy run, or a collapse run without KR (eval.kr: null)
    where = run["_path"]
    try:
        read_questions(source)
    except FortifaiError as exc:
        raise FortifaiError(f"{where}: scored on KR questions that are refused: {exc}") from exc


def _protocol(run: dict, board: dict | None) -> dict:
    """The run's protocol as a board compares it. The clean control differs from the board's runs only in
    `mode` (every split kept real), so it is compared with the mode of the accumulate runs it controls."""
    protocol = protocol_of(run["config"])
    if run.get("control"):
        protocol["mode"] = board["protocol"].get("mode") if board else "accumulate"
    return protocol


LOCK_TIMEOUT = 120.0  # seconds a publish waits for another one writing the same board


def board_lock(path: Path):
    """An exclusive lock (`filelock`) on one board, held around publish's read-modify-write so that two
    publishers at once cannot both read the old board and each write it back without the other's entry.
    The lock file lives in the system temporary folder, named by the board's real path, not beside the
    board: a folder of boards keeps only boards, and a refused publish leaves nothing behind."""
    real = str(Path(path).resolve())
    folder = Path(tempfile.gettempdir()) / "fortifai-bench-locks"
    name = hashlib.sha256(real.encode()).hexdigest()[:32] + ".lock"
    return filelock.FileLock(str(folder / name), timeout=LOCK_TIMEOUT, mode=0o666)


def publish(run_paths: list[str | os.PathLike], to: str | os.PathLike | None = None, *,
            root: str | os.PathLike = "leaderboards", replace: bool = False) -> PublishReport:
    """Merge runs into entries and add them to the board; validate, then write atomically (or not at all),
    all under the board's lock (`board_lock`).

    Publishing the same runs twice changes nothing. An entry with the same key but different numbers (a re-run)
    is refused unless `replace`.
    """
    if not run_paths:
        raise FortifaiError("publish: give at least one run directory")
    runs = [load_run(p) for p in run_paths]
    for r in runs:
        check_kr_source(r)
    task_names = {r["task"]["name"] for r in runs}
    if len(task_names) > 1:
        raise FortifaiError(f"publish: runs of several tasks ({', '.join(sorted(task_names))}); one board per task")
    path = check_board_path(to, root) if to is not None else board_path_for(runs[0]["task"]["name"], root)
    lock = board_lock(path)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise FortifaiError(f"{path}: another publish has held its lock for {LOCK_TIMEOUT:g} s ({lock.lock_file}); "
                            "try again when it is done") from exc
    except OSError as exc:
        raise FortifaiError(f"cannot lock {path}: {lock.lock_file}: {exc.strerror or exc}") from exc
    try:
        return _publish_locked(runs, path, replace)
    finally:
        lock.release()


def _publish_locked(runs: list[dict], path: Path, replace: bool) -> PublishReport:
    existing = load_board(path) if path.exists() else None
    if existing is not None:
        check_board_consistency(existing, str(path), names=True)
    first = next((r for r in runs if not r.get("control")), runs[0])
    board = json.loads(json.dumps(existing)) if existing else new_board(first)
    for r in runs:
        _check_compatible(board, r, path)
    check_same_base(board["entries"], runs, f"a board holds runs from one base ({path}; rebuild the base, or "
                                            "publish to a new board)")
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
