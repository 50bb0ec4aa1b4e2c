"""A board: its format and schema, loading it, the checks that it agrees with itself, and its entries.

A board is one JSON file per collapse task (`leaderboards/<task>.json`). Each entry merges the runs (one
`results.json` per seed, contract 5) of one (task, loss spec and arguments, model, seed set); `build_entry`
makes one. The board records the *protocol* (the runs' resolved config minus what may differ between entries:
loss, seed, output folder). Loading a board parses JSON and checks it against `leaderboards/schema.json`;
nothing in it is ever executed.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_json
from fortifai_bench.metrics import Failure, failure, mean_ci, score_bounds, summarize_failures
from fortifai_bench.results import (CONFIDENCE_TEXTS, TRAINED_CLASSES, base_sha256, entry_conditions, json_path,
                                     run_failure, same_number, stage_mechanism)

BOARD_FORMAT = "fortifai-bench/leaderboard@1"

# Config keys that legitimately differ between the runs on one board (the entry records them itself),
# or that only say where/how a run was executed. Everything else in the config is the protocol.
RUN_ONLY_KEYS = frozenset({"seed", "loss", "loss_args", "out", "out_dir", "output", "run_dir", "resume",
                           "progress", "device", "command", "description"})  # a description is prose, not protocol

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


def schema_error(validator: jsonschema.protocols.Validator, obj: Any) -> jsonschema.ValidationError | None:
    """The first error in document order (deterministic, so a message is stable across runs)."""
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return errors[0] if errors else None


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
    board = read_json(path)  # a binary or non-UTF-8 file is a one-line error there
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
        for key in ("confidence", "mask_trained"):
            for name, stat in (stage.get(key) or {}).items():
                why = None if name == "gamma" else _stat_mismatch(stat, len(seeds), UNIT)
                if why:
                    return f"field stages[{i}].{key}.{name}: {why}"
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


def arm_entry(board: dict, loss: str, control: bool = False) -> dict | None:
    """The board's entry of one arm (a board holds one an arm: `publish`): loss spec `loss`, the clean control
    or not; None where the board has none."""
    return next((e for e in board["entries"] if e["loss"]["spec"] == loss and bool(e.get("control")) == control),
                None)


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


UNIT = (0.0, 1.0)  # an accuracy, a probability or a share


def stat_bounds(score_name: str) -> dict[str, tuple]:
    """The range of each summarized quantity of an entry: the score's (`metrics.score_bounds`) for the
    score, its AUC and final value; KR-total is an accuracy; a KL is >= 0."""
    score = score_bounds(score_name)
    return {"score": score, "auc": score, "final_score": score, "kr_total": UNIT,
            "kl": (0.0, None), "kl_split0": (0.0, None)}


def _stat(values: list[float | None], bounds: tuple | None = None) -> dict:
    # NaN (a metric that could not be computed) is stored as null: boards stay strict JSON
    values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    out = mean_ci([v for v in values if v is not None], bounds=bounds)
    out["per_seed"] = values
    return out


def time_to_failure_summary(per_seed: list[dict]) -> dict:
    """`metrics.summarize_failures` over an entry's seeds (`per_seed`: each seed's `Failure` as a dict);
    `rank_value`, what the board ranks by, is the restricted mean time to failure (a seed that never
    failed counts as the last stage; -1 when no seed learned)."""
    out = summarize_failures([Failure.from_dict(d) for d in per_seed])
    out["rank_value"] = out["restricted_mean"] if out["restricted_mean"] is not None else -1.0
    return out


# What every seed of an entry shares; `assemble_entry` refuses to merge entries that differ in any.
_ARM_FIELDS = ("control", "task", "loss", "model", "score_name", "failure_threshold", "config_hash", "base_sha256")


def assemble_entry(picks: list[tuple[dict, int]], labels: list[str] | None = None) -> dict:
    """An entry made of chosen seeds of entries of one arm, `picks` each (entry, index of a seed in it): every
    per-seed number and run record kept as published, the summaries over the picked seeds computed here, the one
    place that computes them (`build_entry` hands it each run as a `seed_entry`), so a grown entry equals the one
    built from all its runs at once. This is how a board's entry grows by runs of new seeds when its old runs are
    not at hand (they may have gone with another machine; each was verified when it was published). Versions and
    runtimes are the union over the entries. It is also the one check of what seeds must share to be merged
    (`_ARM_FIELDS`, the number of stages, one seed each); its errors name the picks by `labels`, one a pick
    (`build_entry` gives the runs' paths), or by their entries' names."""
    labels = labels or [e["name"] for e, _ in picks]
    order = sorted(range(len(picks)), key=lambda j: picks[j][0]["seeds"][picks[j][1]])
    picks, labels = [picks[j] for j in order], [labels[j] for j in order]
    first = picks[0][0]
    for (e, _), label in zip(picks, labels):
        differ = next(((f, canonical(first.get(f)), canonical(e.get(f))) for f in _ARM_FIELDS
                       if canonical(e.get(f)) != canonical(first.get(f))), None)
        if differ is None and len(e["stages"]) != len(first["stages"]):
            differ = ("number of stages", len(first["stages"]), len(e["stages"]))
        if differ:
            raise FortifaiError(f"cannot merge {labels[0]} and {label}: they differ in {differ[0]} "
                                f"({differ[1]} vs {differ[2]})")
    seeds = [e["seeds"][i] for e, i in picks]
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise FortifaiError(f"seed {dup} given twice: " + ", ".join(lb for (e, i), lb in zip(picks, labels)
                                                                   if e["seeds"][i] == dup))
    entries = list({id(e): e for e, _ in picks}.values())
    bounds = stat_bounds(first["score_name"])

    def stat(get, bound):  # `get(entry)`: one of its stats or None; a seed without it counts as None
        values = [None if get(e) is None else get(e)["per_seed"][i] for e, i in picks]
        return None if all(v is None for v in values) else _stat(values, bound)

    stages = []
    for k in range(len(first["stages"])):
        stage = {"stage": k, **{key: stat(lambda e: e["stages"][k].get(key), bounds[key])
                                for key in ("score", "kr_total", "kl", "kl_split0")}}
        for group, names in (("confidence", CONFIDENCE_TEXTS), ("mask_trained", TRAINED_CLASSES)):
            stats = {n: s for n in names
                     if (s := stat(lambda e: e["stages"][k].get(group, {}).get(n), UNIT)) is not None}
            if stats and group == "mask_trained":
                gammas = {e["stages"][k][group]["gamma"] for e in entries if e["stages"][k].get(group)}
                if len(gammas) > 1:
                    raise FortifaiError(f"cannot merge entries whose stage {k} masked at different gammas: "
                                        f"{sorted(gammas)}")
                stats = {"gamma": gammas.pop(), **stats}
            if stats:
                stage[group] = stats
        stages.append(stage)
    versions: dict[str, set] = {}
    for e in entries:
        for k, v in e["versions"].items():
            versions.setdefault(k, set()).update(v.split(" | ") if v else ())
    runtimes = [e["runtime"] for e in entries if e.get("runtime")]
    runs = [e["runs"][i] for e, i in picks]
    return {  # the key order of `build_entry`'s, so that a board's JSON diff shows only what changed
        "name": entry_name(first["task"]["name"], first["loss"], first["model"], seeds, first["control"]),
        **{f: first[f] for f in ("control", "task", "loss", "model")},
        "seeds": seeds,
        **{f: first[f] for f in ("score_name", "failure_threshold")},
        "stages": stages,
        "time_to_failure": time_to_failure_summary([e["time_to_failure"]["per_seed"][i] for e, i in picks]),
        "auc": stat(lambda e: e["auc"], bounds["auc"]),
        "final_score": stat(lambda e: e["final_score"], bounds["final_score"]),
        "versions": {k: " | ".join(sorted(v)) or None for k, v in sorted(versions.items())},
        "config_hash": first["config_hash"],
        **({"base_sha256": first["base_sha256"]} if "base_sha256" in first else {}),
        **({"runtime": {k: sorted({x for rt in runtimes for x in rt.get(k, [])}, key=str)
                        for k in ("torch_threads", "world_size", "device", "dtype")}} if runtimes else {}),
        "date": max(r["date"] for r in runs),
        "runs": runs,
    }


def seed_entry(run: dict) -> dict:
    """One run as an entry of one seed, every number as the run recorded it: what `build_entry` hands to
    `assemble_entry`, the one place an entry's summaries over seeds are computed."""
    bounds = stat_bounds(run["score_name"])

    def one(value, bound):  # a number the run could not compute (None, NaN) is no stat
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else _stat([value], bound)

    stages = []
    for i, st in enumerate(run["stages"]):
        stage = {"stage": i, **{key: one(st.get(key), bounds[key]) for key in ("score", "kr_total", "kl", "kl_split0")}}
        mechanism = stage_mechanism(st)
        for group, names in (("confidence", CONFIDENCE_TEXTS), ("mask_trained", TRAINED_CLASSES)):
            stats = {k: one(mechanism[group][k], UNIT) for k in names if k in mechanism[group]}
            if stats:
                stage[group] = {"gamma": mechanism["gamma"], **stats} if group == "mask_trained" else stats
        stages.append(stage)
    prov = run["provenance"]
    return {
        "name": entry_name(run["task"]["name"], run["loss"], run["model"], [run["seed"]], bool(run.get("control"))),
        "control": bool(run.get("control")),
        "task": {"name": run["task"]["name"], "version": run["task"]["version"]},
        "loss": {k: run["loss"][k] for k in ("spec", "target", "args")},
        "model": run["model"],
        "seeds": [run["seed"]],
        "score_name": run["score_name"],
        "failure_threshold": run["failure_threshold"],
        "stages": stages,
        "time_to_failure": time_to_failure_summary([run_failure(run).to_dict()]),
        "auc": one(run["auc"], bounds["auc"]),
        "final_score": one(run["final_score"], bounds["final_score"]),
        "versions": {str(k): None if v is None else str(v) for k, v in prov["versions"].items()},
        "config_hash": run["config_hash"],
        **entry_conditions([run]),  # the base's sha256 and the runtime, where the run recorded them
        "date": prov["date"],
        "runs": [{"seed": run["seed"], "command": prov["command"], "date": prov["date"], "git": prov.get("git"),
                  **({"run_dir": run["run_dir"]} if run.get("run_dir") else {}),
                  "split0_ids_sha256": (run.get("items") or {}).get("split0_ids_sha256"),
                  **({"base_sha256": base_sha256(run)} if base_sha256(run) else {}),
                  **({"cpu": prov["cpu"]} if prov.get("cpu") else {})}],
    }


def build_entry(runs: list[dict]) -> dict:
    """Merge the runs of several seeds of one configuration into one leaderboard entry: each run made a one-seed
    entry (`seed_entry`), checked and summarised over seeds by `assemble_entry`, whose errors name the runs' paths."""
    entry_conditions(runs)  # refuses runs from two base models, naming them
    return assemble_entry([(seed_entry(r), 0) for r in runs], labels=[str(r["_path"]) for r in runs])
