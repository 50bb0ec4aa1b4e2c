"""Reading a run's `results.json` (contract 5), strictly: every field the leaderboard and `compare` use is
checked here, so later code can index without guarding and a bad file fails with its name and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_json

RESULTS_FORMAT = "fortifai-bench/results@1"

_NUM_OR_NULL = {"type": ["number", "null"]}

# Only what this module relies on; producers may add fields (additional properties are allowed).
RESULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "kind", "task", "loss", "model", "seed", "config", "config_hash", "score_name",
                 "failure_threshold", "stages", "time_to_failure", "auc", "final_score", "provenance"],
    "properties": {
        "format": {"const": RESULTS_FORMAT},
        "kind": {"enum": ["text", "toy"]},
        "task": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "integer"}},
        },
        "loss": {
            "type": "object",
            "required": ["spec", "target", "args"],
            "properties": {"spec": {"type": "string", "minLength": 1}, "target": {"type": "string"},
                           "args": {"type": "object"}},
        },
        "model": {"type": "string", "minLength": 1},
        "seed": {"type": "integer"},
        "config": {"type": "object"},
        "config_hash": {"type": "string", "minLength": 1},
        "score_name": {"type": "string", "minLength": 1},
        "failure_threshold": {"type": "number"},
        "stages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["stage", "score"],
                "properties": {"stage": {"type": "integer"}, "score": {"type": "number"},
                               "kr_total": _NUM_OR_NULL, "kl": _NUM_OR_NULL},
            },
        },
        "time_to_failure": _NUM_OR_NULL,
        "auc": {"type": "number"},
        "final_score": {"type": "number"},
        "items": {
            "type": "object",
            "required": ["split0_ids_sha256", "split0_correct"],
            "properties": {
                "split0_ids_sha256": {"type": "string"},
                "split0_correct": {"type": "array", "items": {"type": "string", "pattern": "^[01]*$"}},
            },
        },
        "provenance": {
            "type": "object",
            "required": ["versions", "command", "date"],
            "properties": {"versions": {"type": "object"}, "command": {"type": "string"},
                           "date": {"type": "string"}, "git": {"type": ["string", "null"]}},
        },
    },
}


def read_json_file(path: str | os.PathLike) -> Any:
    """`io.read_json`, plus a one-line error for a binary file (io.read_json lets UnicodeDecodeError through)."""
    try:
        return read_json(path)
    except UnicodeDecodeError as exc:
        raise FortifaiError(f"{path}: invalid JSON: not UTF-8 text (byte {exc.start})") from exc


def json_path(path) -> str:
    """['stages', 3, 'score'] -> 'stages[3].score' (how errors name a field)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def schema_error(validator: jsonschema.protocols.Validator, obj: Any) -> jsonschema.ValidationError | None:
    """The first error in document order (deterministic, so a message is stable across runs)."""
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return errors[0] if errors else None


_RESULTS_VALIDATOR = jsonschema.Draft202012Validator(RESULTS_SCHEMA)


def results_file(path: str | os.PathLike) -> Path:
    """A run directory or its results.json -> the results.json path."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def load_run(path: str | os.PathLike) -> dict:
    """Load and check one run's results.json (JSON only: nothing in it is executed)."""
    file = results_file(path)
    if not file.is_file():
        raise FortifaiError(f"{path}: no results.json (is it a finished run directory?)")
    data = read_json_file(file)
    err = schema_error(_RESULTS_VALIDATOR, data)
    if err is not None:
        raise FortifaiError(f"{file}: field {json_path(err.absolute_path)}: {err.message}")
    stages = [s["stage"] for s in data["stages"]]
    if stages != list(range(len(stages))):
        raise FortifaiError(f"{file}: stages must be numbered 0..{len(stages) - 1} in order, got {stages}")
    items = data.get("items")
    if items is not None:
        bits = items["split0_correct"]
        if len(bits) != len(stages):
            raise FortifaiError(f"{file}: items.split0_correct has {len(bits)} bitstrings for {len(stages)} stages")
        if len({len(b) for b in bits}) > 1:
            raise FortifaiError(f"{file}: items.split0_correct bitstrings differ in length")
    data["_path"] = str(file)
    return data
