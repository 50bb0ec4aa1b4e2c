"""The results contract: one run's `results.json`, for text collapse runs and toys alike.

One run is one (task, loss, model, seed). Its results hold every stage's metrics (`stages[i].score` is the
headline score of stage i, KR-split-0 for text runs), the time to failure derived from those scores
(`metrics.failure`, the one definition), the config that produced it and its provenance.

    make_results(...)      the one writer: derives the failure/AUC fields, checks the schema, returns the dict
    load_results(path)     the one reader: a run folder or its results.json, checked against the same schema
    summarize_runs(runs)   the one summary over seeds (CLI table, boards, compare and plots all use it)
    provenance()           package versions, git commit (marked -dirty when the tree has edits), command, date, CPU
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import jsonschema

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import read_json
from fortifai_bench.metrics import Failure, area_under_curve, failure, mean_ci, summarize_failures

RESULTS_FORMAT = "fortifai-bench/results@1"
PACKAGES = ("fortifai-bench", "torch", "transformers", "tokenizers", "numpy", "scipy", "lm-eval")

_NUM_OR_NULL = {"type": ["number", "null"]}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SHA256_OR_NULL = {"anyOf": [_SHA256, {"type": "null"}]}

# What every reader relies on; producers may add fields (additional properties are allowed).
RESULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "kind", "task", "loss", "model", "seed", "config", "config_hash", "score_name",
                 "failure_threshold", "stages", "time_to_failure", "failure", "auc", "final_score", "provenance"],
    "properties": {
        "format": {"const": RESULTS_FORMAT},
        "kind": {"enum": ["text", "toy"]},
        "task": {"type": "object", "required": ["name", "version"],
                 "properties": {"name": {"type": "string"}, "version": {"type": "integer"}}},
        "loss": {"type": "object", "required": ["spec", "target", "args"],
                 "properties": {"spec": {"type": "string", "minLength": 1}, "target": {"type": "string"},
                                "args": {"type": "object"}, "source_sha256": _SHA256}},
        "model": {"type": "string", "minLength": 1},
        "seed": {"type": "integer"},
        "control": {"type": "boolean"},
        "config": {"type": "object"},
        "config_hash": {"type": "string", "minLength": 1},
        "score_name": {"type": "string", "minLength": 1},
        "failure_threshold": {"type": "number"},
        "stages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["stage", "score"],
            "properties": {"stage": {"type": "integer"}, "score": {"type": "number"},
                           "kr_total": _NUM_OR_NULL, "kl": _NUM_OR_NULL, "kl_split0": _NUM_OR_NULL,
                           # a tagged KR set only (facts-longtail): KR per tag and split, and on split 0
                           "kr_by_tag": {"type": "object", "additionalProperties": {
                               "type": "object", "additionalProperties": {"type": "number"}}},
                           "score_by_tag": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                           # KR questions whose context was cut on the left to fit the model's window
                           "kr_truncated": {"type": "integer", "minimum": 1}}}},
        "time_to_failure": _NUM_OR_NULL,
        "failure": {"type": "object", "required": ["status", "time", "horizon"],
                    "properties": {"status": {"enum": ["failed", "never_failed", "never_learned"]},
                                   "time": _NUM_OR_NULL, "horizon": {"type": "integer"}}},
        "auc": {"type": "number"},
        "final_score": {"type": "number"},
        "items": {"type": "object", "required": ["split0_ids_sha256", "split0_correct"],
                  "properties": {"split0_ids_sha256": {"type": "string"},
                                 "split0_correct": {"type": "array",
                                                    "items": {"type": "string", "pattern": "^[01]*$"}}}},
        # Written since issue 20 (older runs lack them): the base model M_0 and its weights' sha256, how the
        # run was executed (a thread count, world size, device or dtype changes float rounding, so numbers),
        # and the KR set scored by name and sha256 (found again wherever the package is installed).
        "base": {"type": "object", "required": ["model", "sha256"],
                 "properties": {"model": {"type": "string"}, "key": {"type": ["string", "null"]},
                                "sha256": _SHA256_OR_NULL, "shipped": {"type": "boolean"}}},
        "runtime": {"type": "object", "required": ["torch_threads", "world_size", "device", "dtype"],
                    "properties": {"torch_threads": {"type": "integer", "minimum": 1},
                                   "world_size": {"type": "integer", "minimum": 1},
                                   "device": {"type": "string"}, "dtype": {"type": "string"}}},
        "kr": {"type": "object", "required": ["file", "sha256"],
               "properties": {"file": {"type": "string"}, "sha256": _SHA256, "name": {"type": ["string", "null"]},
                              "source": {"type": "string"}}},
        "provenance": {"type": "object", "required": ["versions", "command", "date"],
                       "properties": {"versions": {"type": "object"}, "command": {"type": "string"},
                                      "date": {"type": "string"}, "git": {"type": ["string", "null"]},
                                      "cpu": {"type": "object"}}},  # since issue 26: `cpu()`
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(RESULTS_SCHEMA)


# ------------------------------------------------------------------------------------------ provenance

def provenance(command: str | None = None, packages: Sequence[str] = PACKAGES) -> dict:
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for pkg in dict.fromkeys(("fortifai-bench", *packages)):  # this package's version, always
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"versions": versions, "git": git_commit(), "command": command or " ".join(sys.argv),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu()}


_ISA_PREFIXES = ("sse4", "avx", "fma", "f16c", "amx")  # the vector extensions a kernel library dispatches on
# The variables that hold a kernel library below the CPU's widest instructions: torch's own operators, MKL's
# (BLAS) and oneDNN's. A run records those set, as they change its numbers.
KERNEL_CAPS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def cpu() -> dict:
    """The CPU a run's numbers came from (a float kernel's rounding follows the instructions it picks; README,
    "What reproduces where"): `model` and `id` (vendor, family, model, stepping) as the OS reports them, `isa` its vector
    extensions, `torch_capability`, the kernel set torch's own operators dispatch to (lowered by an
    ATEN_CPU_CAPABILITY in the environment), read only where torch is loaded: a run without torch has none, and
    `kernel_caps`, the KERNEL_CAPS variables set (absent where none is)."""
    import platform

    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in iter(f.readline, "\n"):  # the first processor's block describes the machine
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    ident = zip(("vendor", "family", "model", "stepping"),
                (info.get(k) for k in ("vendor_id", "cpu family", "model", "stepping")))
    out = {"model": info.get("model name") or platform.processor() or platform.machine(),
           "id": " ".join(f"{k} {v}" for k, v in ident if v) or None, "machine": platform.machine(),
           "isa": sorted(f for f in info.get("flags", "").split() if f.startswith(_ISA_PREFIXES))}
    if "torch" in sys.modules:
        out["torch_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    if caps := {k: os.environ[k] for k in KERNEL_CAPS if os.environ.get(k)}:
        out["kernel_caps"] = caps
    return out


def cpu_kind(cpu: dict) -> str:
    """The kind of CPU a run's numbers belong to: runs of one kind give the same bits (README, "What reproduces
    where"). In general the processor (vendor, family, model, stepping) and the kernel set torch dispatched to.
    One wider kind is measured: an AMD family 25 or 26 (Zen 3, Zen 4, Zen 5) whose kernels are all AVX2, natively
    (no AVX-512) or held there (ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2, ONEDNN_MAX_CPU_ISA=AVX2): a
    family 25 model 17 so held gave a model 1's numbers bit for bit, where natively it differed in the eighth digit
    (BENCHMARKS.md, "Two AMD EPYCs, one kind"), and so did a family 26 model 2 ("A Zen 5 joins the kind")."""
    ident = dict(zip(*[iter((cpu.get("id") or "").split())] * 2))  # "vendor V family F model M stepping S"
    caps = {k: v.upper() for k, v in (cpu.get("kernel_caps") or {}).items()}
    held = all(caps.get(k) == "AVX2" for k in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
                                                "ONEDNN_MAX_CPU_ISA"))
    avx2 = cpu.get("torch_capability") == "AVX2" and ("avx512f" not in cpu.get("isa", []) or held)
    if avx2 and ident.get("vendor") == "AuthenticAMD" and ident.get("family") in ("25", "26"):
        return "vendor AuthenticAMD family 25 or 26, any model (AVX2)"
    return f"{cpu.get('id') or cpu.get('model')} ({cpu.get('torch_capability') or 'no torch'})"


def git_commit() -> str | None:
    """HEAD of the checkout the package runs from, `-dirty` if tracked files have edits; None if not in git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def config_hash(config: dict, ignore: Sequence[str] = ("seed", "out", "description"), *,
                loss: dict | None = None) -> str:
    """sha256 of a resolved config minus what differs between seeds of one experiment (and prose), and of
    the source of a user's loss module (`loss["source_sha256"]`) where there is one: the same config with
    edited loss code is another experiment. Built-in losses add nothing (their hashes stay as they were)."""
    body = {k: v for k, v in config.items() if k not in ignore}
    body = without_added_defaults(body)
    if loss and loss.get("source_sha256"):
        body["loss_source_sha256"] = loss["source_sha256"]
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# Fields added to a collapse task after runs were published, each with the value that does what the task did
# before the field existed: at that value it is left out of the hash, so every earlier run and board entry
# keeps its identity; any other value is another experiment and hashes as one.
ADDED_FIELDS = {("eval", "kr_splits"): "all"}


def without_added_defaults(body: dict) -> dict:
    """A config (or any dict holding config sections) with each added field left out where it is at its
    old-behaviour default: the one rule for the hash and for `describe_differences`."""
    out = dict(body)
    for (section, name), default in ADDED_FIELDS.items():
        if isinstance(out.get(section), dict) and out[section].get(name, default) == default:
            out[section] = {k: v for k, v in out[section].items() if k != name}
    return out


def runtime(*, world_size: int, device: str, dtype: str | None) -> dict:
    """How a run was executed, beyond its config: torch's intra-op thread count now, the number of
    processes, the device type and the weights' dtype. Each changes float rounding and so the numbers:
    the same (code, config, seed) reproduces exactly only under the same runtime (README, "Reproducing")."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "world_size": int(world_size), "device": str(device),
            "dtype": str(dtype or "float32")}


# ------------------------------------------------------------------------------------------ writing

def _finite_or_none(x: Any) -> Any:
    """Strict JSON: a metric that overflowed or could not be computed is stored as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    return x


def make_results(*, kind: str, task: dict, loss: dict, model: str, seed: int, config: dict, score_name: str,
                 failure_threshold: float, stages: list[dict], command: str | None = None, packages: Sequence[str] = PACKAGES, **extra: Any) -> dict:
    """The results of one run. Scores of the finished stages decide `failure`, `time_to_failure`, `auc`."""
    stages = _finite_or_none([dict(s) for s in stages])
    scores = [s["score"] for s in stages]
    have = bool(scores) and all(x is not None for x in scores)
    fail = failure(scores, failure_threshold) if have else None
    out = {
        "format": RESULTS_FORMAT, "kind": kind, "task": task, "loss": loss, "model": model, "seed": int(seed),
        "config": config, "config_hash": config_hash(config, loss=loss),
        "score_name": score_name, "failure_threshold": failure_threshold, "stages": stages,
        "time_to_failure": fail.time if fail else None,
        "failure": fail.to_dict() if fail else {"status": "never_learned", "time": None, "horizon": 0},
        "auc": area_under_curve(scores) if have else None,
        "final_score": scores[-1] if have else None,
        **_finite_or_none(extra),
        "provenance": provenance(command, packages),
    }
    return out


def check_results(data: Any, where: str) -> None:
    """Raise a one-line FortifaiError naming the field if `data` breaks the results schema."""
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise FortifaiError(f"{where}: field {json_path(errors[0].absolute_path)}: {errors[0].message}")
    stages = [s["stage"] for s in data["stages"]]
    if stages != list(range(len(stages))):
        raise FortifaiError(f"{where}: stages must be numbered 0..{len(stages) - 1} in order, got {stages}")
    items = data.get("items")
    if items is not None:
        bits = items["split0_correct"]
        if len(bits) != len(stages):
            raise FortifaiError(f"{where}: items.split0_correct has {len(bits)} bitstrings for {len(stages)} stages")
        if len({len(b) for b in bits}) > 1:
            raise FortifaiError(f"{where}: items.split0_correct bitstrings differ in length")
    recorded = data["failure"]
    derived = run_failure(data).to_dict()
    if recorded["status"] != derived["status"] or not same_number(recorded["time"], derived["time"]):
        raise FortifaiError(f"{where}: field failure: {recorded} does not follow from the stage scores "
                            f"({derived}); the file was edited or written by another tool")


def same_number(a, b) -> bool:
    """Two stored numbers agree (both None, or equal up to float rounding): the one comparison that
    checks a results file or a board against what its own values give."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def json_path(path) -> str:
    """['stages', 3, 'score'] -> 'stages[3].score' (how errors name a field)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# ------------------------------------------------------------------------------------------ reading

def results_file(path: str | os.PathLike) -> Path:
    """A run directory or its results.json -> the results.json path."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def load_results(path: str | os.PathLike, *, complete: bool = True) -> dict:
    """Load and check one run's results.json (JSON only: nothing in it is executed)."""
    file = results_file(path)
    if not file.is_file():
        raise FortifaiError(f"{path}: no results.json (is it a finished run directory?)")
    try:
        data = read_json(file)
    except UnicodeDecodeError as exc:
        raise FortifaiError(f"{file}: invalid JSON: not UTF-8 text (byte {exc.start})") from exc
    if complete and isinstance(data, dict) and data.get("complete") is False:  # rewritten after every stage
        stopped = data.get("stopped") or {}
        why = f": stopped at stage {stopped.get('stage')}: {stopped.get('error')}" if stopped else ""
        raise FortifaiError(f"{file}: the run is not complete ({len(data.get('stages') or [])} stages done{why}); "
                            f"finish it with `fortifai-bench collapse --resume` before publishing or comparing")
    check_results(data, str(file))
    check_run_numbers(data, file)
    data["_path"] = str(file)
    return data


def ids_sha256(ids: Sequence[str]) -> str:
    """`items.split0_ids_sha256`: which split-0 questions a run scored, in order (their ids, one per line)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def check_run_numbers(data: dict, file) -> None:
    """Refuse a results.json whose numbers contradict each other, e.g. edited by hand to rank first: each
    KR-split-0 score must be the share of ones in that stage's per-question bits, and the final score, AUC,
    time to failure (and `failure`, where recorded) must be what the stage scores give."""

    scores = [s["score"] for s in data["stages"]]
    bits = (data.get("items") or {}).get("split0_correct")
    if bits is not None and data["score_name"] == "kr_split0":
        for i, (score, row) in enumerate(zip(scores, bits)):
            if row and not same_number(score, row.count("1") / len(row)):
                raise FortifaiError(f"{file}: field stages[{i}].score: {score} but items.split0_correct[{i}] has "
                                    f"{row.count('1')} of {len(row)} correct ({row.count('1') / len(row)})")
    fail = failure(scores, data["failure_threshold"])
    derived = {"final_score": scores[-1], "auc": area_under_curve(scores), "time_to_failure": fail.time}
    for key, value in derived.items():
        if not same_number(data[key], value):
            raise FortifaiError(f"{file}: field {key}: {data[key]} but the stage scores give {value}")
    recorded = data.get("failure")
    if isinstance(recorded, dict) and recorded.get("status") != fail.status:
        raise FortifaiError(f"{file}: field failure.status: {recorded.get('status')!r} but the stage scores give "
                            f"{fail.status!r}")



def arm(results: dict) -> str:
    """The arm a run belongs to in tables and figures over seeds: its loss spec, or "control" for the clean
    control (which trains with its baseline's loss on real splits only)."""
    return "control" if results.get("control") else results["loss"]["spec"]


def run_failure(results: dict) -> Failure:
    """The run's time to failure, derived from its stage scores (never trusted from a stored number)."""
    return failure([s["score"] for s in results["stages"]], results["failure_threshold"])


# The mechanism as a stage record holds it: M_i's mean confidence on three texts (collapse.evaluate's
# `confidence`, eval mode: the contrast of the paper's Sec. 2.1.1 and Fig. 1, own rewrite against unseen real
# text) and each token class's share above gamma in training (the loss's `gradient.trained`: what TCE(gamma)
# masked as it trained).
CONFIDENCE_TEXTS = ("own_generated", "trained_real", "unseen_real")
TRAINED_CLASSES = ("corrupted", "faithful", "fresh")


def stage_mechanism(stage: dict) -> dict:
    """A stage record's mechanism numbers: {"confidence": {text: mean p}, "mask_trained": {class: share above
    gamma}, "gamma": gamma of the mask or None}, a text or class absent where the run did not record it."""
    conf = stage.get("confidence") or {}
    trained = (stage.get("gradient") or {}).get("trained") or {}
    return {"confidence": {k: conf[k]["mean"] for k in CONFIDENCE_TEXTS if conf.get(k)},
            "mask_trained": {k: trained[k]["share_above_gamma"] for k in TRAINED_CLASSES if trained.get(k)},
            "gamma": trained.get("gamma")}


# ------------------------------------------------------------------------------------------ over seeds

def summarize_runs(runs: Sequence[dict], keys: Sequence[str] = ("score", "kr_total", "kl_split0")) -> dict:
    """One experiment (same task, loss, model) over seeds: per-stage mean and 95% t-interval of each key,
    the time-to-failure summary (`metrics.summarize_failures`), AUC and final score."""
    runs = list(runs)
    n_stages = max((len(r["stages"]) for r in runs), default=0)
    per_stage = {}
    for key in keys:
        rows = []
        for i in range(n_stages):
            vals = [r["stages"][i].get(key) for r in runs if len(r["stages"]) > i]
            rows.append(mean_ci([v for v in vals if v is not None]))
        per_stage[key] = rows
    first = runs[0] if runs else {}
    return {
        "task": first.get("task"), "loss": first.get("loss"), "model": first.get("model"),
        "control": bool(first.get("control")),
        "seeds": [r["seed"] for r in runs], "runs": [r.get("run_dir") for r in runs],
        "failure_threshold": first.get("failure_threshold"),
        "time_to_failure": summarize_failures([run_failure(r) for r in runs]),
        "auc": mean_ci([r["auc"] for r in runs if r.get("auc") is not None]),
        "final_score": mean_ci([r["final_score"] for r in runs if r.get("final_score") is not None]),
        "per_stage": per_stage,
    }


# ------------------------------------------------------------------------------------------ base and runtime

# model.pretrain.seed: "run": the base's seed follows the run's (issue 26 item 3). Defined here, with what a
# run's record means, so that the task config (collapse.config) and the records share it without a cycle.
BASE_SEED_RUN = "run"


def base_sha256(results: dict) -> str | None:
    """The sha256 of the weights of the base M_0 a run started from (None: not recorded, e.g. a hub model
    or a run written before runs recorded it)."""
    return (results.get("base") or {}).get("sha256")


def base_per_seed(config: dict | None) -> bool:
    """Whether a run's task samples its base per seed (``model.pretrain.seed: run``, issue 26 item 3): each run
    then starts from its own seed's base, so runs of one seed share a base and runs of two seeds do not."""
    model = (config or {}).get("model")  # a toy's or an older record's may be a name alone
    pretrain = model.get("pretrain") if isinstance(model, dict) else None
    return isinstance(pretrain, dict) and pretrain.get("seed") == BASE_SEED_RUN


def entry_conditions(runs: Sequence[dict]) -> dict:
    """What a board entry says about the conditions its seeds ran under (added to the entry where the runs
    recorded them): `base_sha256`, one for all seeds (runs from two bases are refused; where the task samples
    a base per seed, `base_per_seed`, none: each seed's base is on its `runs` item, and a base that is not its
    seed's is refused), and `runtime`, each field's distinct values over the seeds (e.g. world_size [1, 2])."""
    out: dict[str, Any] = {}
    shas = {base_sha256(r) for r in runs} - {None}
    if runs and all(base_per_seed(r.get("config")) for r in runs):
        check_same_base([], runs, "cannot merge them into one entry")
    elif len(shas) > 1:
        shown = "; ".join(f"{r.get('_path')}: {base_sha256(r)}" for r in runs)
        raise FortifaiError(f"cannot merge runs made from different base models (sha256 of M_0's weights): {shown}")
    elif shas:
        out["base_sha256"] = shas.pop()
    recorded = [r["runtime"] for r in runs if r.get("runtime")]
    if recorded:
        out["runtime"] = {k: sorted({rt[k] for rt in recorded if k in rt}, key=str)
                          for k in ("torch_threads", "world_size", "device", "dtype")}
    return out


DEFAULT_RUNTIME = {"torch_threads": [1], "world_size": [1], "device": ["cpu"], "dtype": ["float32"]}


def runtime_note(entry: dict) -> str:
    """How an entry's runs differ from the default execution (one thread, one process, CPU, float32), for
    a board's model column: "" when they do not, else e.g. " (2 torch threads; 2 processes)"."""
    rt = entry.get("runtime")
    if not rt or rt == DEFAULT_RUNTIME:
        return ""
    parts = []
    if rt.get("torch_threads") != [1]:
        parts.append("/".join(map(str, rt["torch_threads"])) + " torch threads")
    if rt.get("world_size") != [1]:
        parts.append("/".join(map(str, rt["world_size"])) + " processes")
    if rt.get("device") != ["cpu"]:
        parts.append("/".join(rt["device"]))
    if rt.get("dtype") != ["float32"]:
        parts.append("/".join(rt["dtype"]))
    return f" ({'; '.join(parts)})" if parts else ""


def check_same_base(entries: Sequence[dict], runs: Sequence[dict], why: str) -> None:
    """Losses are compared from one M_0: refuse a run whose base weights' sha256 differs from the one the
    board's `entries` (or the other runs given) record, in one line naming both and ending with `why`.
    Where every run's task samples a base per seed (`base_per_seed`), the base is its seed's instead: a run
    must have the base that the other runs (and entries' runs) of its seed record, and no base two seeds.
    Entries and runs that predate the record carry none and are not compared."""
    per_seed = bool(runs) and all(base_per_seed(r.get("config")) for r in runs)
    if per_seed:
        known = [(f"entry {e['name']} seed {r['seed']}", r["seed"], r.get("base_sha256"))
                 for e in entries for r in e.get("runs", [])]
    else:
        known = [(f"entry {e['name']}", None, e.get("base_sha256")) for e in entries]
    known += [(str(r.get("_path")), r.get("seed") if per_seed else None, base_sha256(r)) for r in runs]
    first_of_seed: dict = {}
    seed_of_base: dict = {}
    for name, seed, sha in known:
        if not sha:
            continue
        first_name, first = first_of_seed.setdefault(seed, (name, sha))
        if sha != first:
            whose = f" (seed {seed}'s base: the task samples a base per seed)" if per_seed else ""
            raise FortifaiError(f"{name}: base model M_0 sha256 {sha[:16]}... differs from {first_name}'s "
                                f"{first[:16]}...{whose}; {why}")
        other_name, other_seed = seed_of_base.setdefault(sha, (name, seed))
        if other_seed != seed:
            raise FortifaiError(f"{name}: base model M_0 sha256 {sha[:16]}... is also {other_name}'s, of seed "
                                f"{other_seed}, but the task samples a base per seed (model.pretrain.seed: run); "
                                f"{why}")
