"""Publishing runs to a board: group them into entries, check them against the board, write it atomically.

The board refuses runs made under another protocol or task version, so every entry is comparable with every
other. Publishing holds a lock on the board for its read-modify-write, so concurrent publishers lose nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import filelock

from fortifai_bench.collapse.config import describe_differences
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import remove_orphan_temps, write_json
from fortifai_bench.kr.schema import read_questions
from fortifai_bench.kr.sets import find_kr_file
from fortifai_bench.leaderboard.board import (BOARD_FORMAT, assemble_entry, build_entry, canonical,
                                              check_board_consistency, entry_key, load_board, protocol_hash,
                                              protocol_of, validate_board)
from fortifai_bench.leaderboard.ranking import CLAIMS, PAIRING, RETENTION, TIME
from fortifai_bench.results import base_per_seed, check_same_base, cpu_kind, load_results
from fortifai_bench.verify import verify_in_subprocess

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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


def differences(on_board: dict, from_runs: dict) -> list[str]:
    """The first four differences, `path: board value -> runs value` (`collapse.config.describe_differences`,
    the one description of two configs' differences), judged as the protocol hash judges them, by canonical
    JSON: 3 and 3.0, or true and 1, differ on a board although Python calls them equal."""
    if canonical(on_board) == canonical(from_runs):
        return []
    return describe_differences(on_board, from_runs)[:4] or ["values equal in Python but of other JSON types "
                                                             "(such as 3 and 3.0, or true and 1)"]


@dataclass
class PublishReport:
    board: Path
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)  # an arm's entry given more seeds
    unchanged: list[str] = field(default_factory=list)
    written: bool = False

    def lines(self) -> list[str]:
        out = [f"added {n}" for n in self.added] + [f"replaced {n}" for n in self.replaced]
        out += [f"grew {n}" for n in self.grown]
        out += [f"unchanged {n}" for n in self.unchanged]
        out.append(f"{'wrote' if self.written else 'no change to'} {self.board}")
        return out


def group_runs(runs: list[dict]) -> list[list[dict]]:
    """Runs of the same (task, loss spec+args, model) form one entry, whatever their seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(entry_key(r)[:5], []).append(r)
    return list(groups.values())


@dataclass(frozen=True)
class Design:
    """What a board's tests are, fixed when it is created, before its runs are seen (a test chosen after the data
    would make its p meaningless). `claims` (`ranking.CLAIMS`): what they compare (only a retention board states
    it; a board without the field compares times, as every board before the field did). `paired`: whether they
    pair the runs by seed (`pairing: seed`; absent, unpaired). `planned`: the losses its claims against CE will
    test (`planned_claims`: Holm adjusts over the plan from the first entry, so a plan changed after the data would
    choose the family by its verdicts; absent, the family is the losses on the board). None: as the board is (as a
    new board has it when absent). A publish that asks for another design than its board's is refused."""
    claims: str | None = None
    paired: bool | None = None
    planned: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.claims is not None and self.claims not in CLAIMS:
            raise FortifaiError(f"--claims must be one of {', '.join(CLAIMS)}, got {self.claims!r}")
        if self.planned is None:
            return
        shown = ",".join(self.planned)
        if not all(self.planned):
            raise FortifaiError(f"--planned-claims: an empty loss spec in {shown!r} (give specs joined by commas)")
        if len(set(self.planned)) < len(self.planned):
            raise FortifaiError(f"--planned-claims: a loss named twice in {shown!r}")
        if "ce" in self.planned:
            raise FortifaiError("--planned-claims: ce is what the claims compare against, not a claim; drop it")

    def fields(self) -> dict:
        """The design's fields on a new board (each absent where a board without it reads the same)."""
        return {**({"claims": self.claims} if self.claims == RETENTION else {}),
                **({"pairing": PAIRING} if self.paired else {}),
                **({"planned_claims": list(self.planned)} if self.planned else {})}

    def check(self, board: dict, where: Path) -> None:
        """Refuse a design the board at `where` was not created with, naming what it has."""
        has = board.get("claims", TIME)
        if self.claims is not None and has != self.claims:
            raise FortifaiError(f"{where}: the board's claims compare {has}, fixed when it was created; it cannot "
                                f"switch to {self.claims} (publish to a new board)")
        has = board.get("pairing") == PAIRING
        if self.paired is not None and self.paired != has:
            raise FortifaiError(f"{where}: the board's tests are {'paired' if has else 'unpaired'}, fixed when it "
                                f"was created; it cannot switch to {'paired' if self.paired else 'unpaired'} "
                                "(publish to a new board)")
        has = board.get("planned_claims")
        if self.planned is not None and has != list(self.planned):
            now = ", ".join(has) if has else "none (the family is the losses on the board)"
            raise FortifaiError(f"{where}: the board's planned claims are {now}, fixed when it was created; it "
                                f"cannot switch to {', '.join(self.planned)} (publish to a new board)")


def new_board(run: dict, design: Design = Design()) -> dict:
    """An empty board for the run's task, of the given design."""
    protocol = _protocol(run, None)
    return {"format": BOARD_FORMAT, "task": dict(run["task"]), "kind": run["kind"], "protocol": protocol,
            "protocol_hash": protocol_hash(protocol), **design.fields(), "entries": []}


def parse_planned(text: str | None) -> tuple[str, ...] | None:
    """`--planned-claims tce:0.9,tce:0.99,focal:2`: the loss specs the board's claims against CE will test."""
    return None if text is None else tuple(s.strip() for s in text.split(","))  # checked by `Design`


def check_one_seed_set(board: dict, where: Path) -> None:
    """A paired board's entries (the control aside) hold the same seeds: a claim pairs every seed of an entry
    with CE's run of that seed."""
    if board.get("pairing") != PAIRING:
        return
    sets = {tuple(e["seeds"]): e["name"] for e in board["entries"] if not e.get("control")}
    if len(sets) > 1:
        shown = "; ".join(f"{name}: seeds {', '.join(map(str, seeds))}" for seeds, name in sets.items())
        raise FortifaiError(f"{where}: a board paired by seed holds one seed set in every entry, this one would "
                            f"hold {len(sets)} ({shown}); run the missing seeds or publish to a new board")


def _check_compatible(board: dict, run: dict, where: Path) -> None:
    if run["task"]["name"] != board["task"]["name"]:
        raise FortifaiError(f"{run['_path']}: task {run['task']['name']!r} differs from the board's "
                            f"{board['task']['name']!r} ({where})")
    if run["task"]["version"] != board["task"]["version"]:
        raise FortifaiError(f"{run['_path']}: task version {run['task']['version']} differs from the board's "
                            f"version {board['task']['version']} ({where})")
    if run["kind"] != board["kind"]:
        raise FortifaiError(f"{run['_path']}: kind {run['kind']!r} differs from the board's {board['kind']!r}")
    diff = differences(board["protocol"], _protocol(run, board))
    if diff:
        raise FortifaiError(f"{run['_path']}: config differs from the board's ({where}; board -> runs): "
                            + "; ".join(diff))


def check_kr_source(run: dict) -> None:
    """Re-read the KR questions a run was scored on (`kr_source` in results.json) with the checks of
    `read_questions`: a file of questions whose true and false continuations are the same scores 1.0
    whatever the model remembers, so it must not reach a board. A run that names a source this machine
    does not have cannot be checked, and is refused."""
    source = find_kr_file(run)  # by the recorded path, else by name and sha256 (a moved run or package)
    if source is None:
        return  # a toy run, or a collapse run without KR (eval.kr: null)
    where = run["_path"]
    try:
        read_questions(source)
    except FortifaiError as exc:
        raise FortifaiError(f"{where}: scored on KR questions that are refused: {exc}") from exc


def verify_run(run: dict) -> None:
    """A collapse run's scores re-computed from its saved models, in a fresh process (`verify`); refused,
    in one line naming the stage and the numbers, when they differ."""
    if run["kind"] != "text":
        return
    where = str(Path(run["_path"]).parent)
    report = verify_in_subprocess(where)
    if report.problems:
        raise FortifaiError(f"{where}: results.json is not what its saved models score: {report.problems[0]}"
                            + (f"; and {len(report.problems) - 1} more stage(s)" if len(report.problems) > 1 else "")
                            + " (fortifai-bench verify shows every stage)")


def verify_runs(runs: list[dict], jobs: int = 1, progress: bool = False) -> None:
    """`verify_run` for every run, `jobs` fresh processes at a time (each scores with its own run's thread
    count, so `jobs` is the number of cores it takes), with a progress bar where stderr is a terminal. The first
    run refused, in the order given, is the error; runs not yet started are then not started."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    if jobs < 1:
        raise FortifaiError(f"publish: jobs must be >= 1, got {jobs}")
    pool = ThreadPoolExecutor(max_workers=jobs)  # threads only wait on their child processes
    try:
        # on a terminal only (disable=None), and cleared when done: a refusal stays the one line on stderr
        bar = tqdm(pool.map(verify_run, runs), total=len(runs), desc="verify", unit="run", leave=False,
                   disable=None if progress else True)
        for _ in bar:
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_finite(board: dict, where: Path) -> None:
    """No Infinity or NaN on a board: JSON has neither (Python writes them, `JSON.parse` and jq refuse them)."""
    def walk(x, path):
        if isinstance(x, float) and not math.isfinite(x):
            raise FortifaiError(f"{where}: field {path} would be {x}, which JSON cannot hold; refusing to write the "
                                "board (is a run's number infinite or undefined?)")
        items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
        for k, v in items:
            walk(v, f"{path}.{k}" if isinstance(k, str) else f"{path}[{k}]")

    for i, entry in enumerate(board.get("entries", [])):
        walk(entry, f"entries[{i}] ({entry.get('name')})")
    walk({k: v for k, v in board.items() if k != "entries"}, "board")


def board_cpu_kinds(board: dict) -> dict[str, str]:
    """The CPU kinds (`results.cpu_kind`) of a board's runs, each with the first run of it ("ENTRY seed S");
    runs that predate the record (no `cpu`) have none."""
    kinds: dict[str, str] = {}
    for e in board["entries"]:
        for r in e.get("runs", []):
            if r.get("cpu"):
                kinds.setdefault(cpu_kind(r["cpu"]), f"{e['name']} seed {r['seed']}")
    return kinds


def check_one_cpu_kind(board: dict, path: Path) -> None:
    """Refuse a board whose runs came from several CPU kinds: the same seed gives another curve on another CPU
    (issue 26: hot CE seed 0 failed at 2.09 on one AVX-512 CPU and 1.98 on another), so seeds from several kinds
    mix in a factor the board's test does not model, and arms run on different kinds would confound it with the
    loss. Runs that predate the record (no `cpu`) are not compared."""
    kinds = board_cpu_kinds(board)
    if len(kinds) > 1:
        shown = "; ".join(f"{kind} (first: {where})" for kind, where in kinds.items())
        raise FortifaiError(f"{path}: its runs would come from {len(kinds)} CPU kinds: {shown}. Run every seed on "
                            "one kind, publish to a new board, or pass --mixed-cpu to accept the mix")


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
            root: str | os.PathLike = "leaderboards", replace: bool = False, verify: bool = False,
            mixed_cpu: bool = False, claims: str | None = None, paired: bool | None = None,
            planned: Sequence[str] | None = None, jobs: int = 1, progress: bool = False) -> PublishReport:
    """Merge runs into entries and add them to the board; validate, then write atomically (or not at all),
    all under the board's lock (`board_lock`).

    Publishing the same runs twice changes nothing. An entry with the same key but different numbers (a re-run)
    is refused unless `replace`. A board whose runs would come from more than one CPU kind is refused unless
    `mixed_cpu` (`check_one_cpu_kind`). `claims` (`ranking.CLAIMS`) sets what a new board's tests compare and
    is refused where an existing board compares another; `paired` likewise sets whether a new board pairs its
    runs by seed (None: as the board is, unpaired when new), and a paired board refuses entries of another seed
    set (`check_one_seed_set`); `planned` sets the losses a new board's claims will test, Holm adjusting over all
    of them from the first. The three are the board's `Design`, fixed when it is created. With `verify` (always,
    from the command line), every collapse run's saved models are scored again in a fresh process
    (`fortifai_bench.verify`), `jobs` at a time, and a run whose results.json says otherwise is refused, naming the stage and both numbers; a
    toy run has no models and is checked for self-consistency only.
    """
    if not run_paths:
        raise FortifaiError("publish: give at least one run directory")
    design = Design(claims, paired, None if planned is None else tuple(planned))
    runs = [load_results(p) for p in run_paths]  # schema and self-consistency checked
    for r in runs:
        check_kr_source(r)
    task_names = {r["task"]["name"] for r in runs}
    if len(task_names) > 1:
        raise FortifaiError(f"publish: runs of several tasks ({', '.join(sorted(task_names))}); one board per task")
    path = check_board_path(to, root) if to is not None else board_path_for(runs[0]["task"]["name"], root)
    if verify:  # the slow check last, outside the board's lock: first every board check, without writing
        _merge(runs, path, replace, mixed_cpu, design)
        verify_runs(runs, jobs, progress)
    lock = board_lock(path)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise FortifaiError(f"{path}: another publish has held its lock for {LOCK_TIMEOUT:g} s ({lock.lock_file}); "
                            "try again when it is done") from exc
    except OSError as exc:
        raise FortifaiError(f"cannot lock {path}: {lock.lock_file}: {exc.strerror or exc}") from exc
    try:
        return _publish_locked(runs, path, replace, mixed_cpu, design)
    finally:
        lock.release()


def _publish_locked(runs: list[dict], path: Path, replace: bool, mixed_cpu: bool, design: Design) -> PublishReport:
    remove_orphan_temps(path.parent, path.name)  # a publish killed mid-write left `.BOARD.json.<pid>-*.tmp`
    board, existing, report = _merge(runs, path, replace, mixed_cpu, design)
    if existing is None or canonical(existing) != canonical(board):
        write_json(path, board)
        report.written = True
    return report


def _onto_arm(old: dict, entry: dict, replace: bool, path: Path) -> tuple[dict, str]:
    """The arm's entry once `entry` (built from the runs being published) is put onto `old` (the board's entry of
    the same arm: task, loss, model, control), and what happened: grown, unchanged or replaced. An arm has one
    entry. Its seeds on the board that the runs do not give are kept as published (their runs need not be at hand,
    `assemble_entry`); a seed the runs give again must be the same run (its record and numbers), so that a result
    is never silently swapped for another run's (--replace allows that)."""
    changed = [s for s in entry["seeds"] if s in old["seeds"] and _seed_record(old, s) != _seed_record(entry, s)]
    if changed and not replace:
        what = (f"is already on the board with different results (board -> runs: "
                f"{'; '.join(differences(old, entry))})" if old["seeds"] == entry["seeds"] else
                f"gives seed {changed[0]} of entry {old['name']} from another run than the board's (its record or "
                "numbers differ)")
        raise FortifaiError(f"{path}: entry {entry['name']} {what}; pass --replace to overwrite it")
    kept = [(old, i) for i, s in enumerate(old["seeds"]) if s not in entry["seeds"]]
    merged = assemble_entry(kept + [(entry, j) for j in range(len(entry["seeds"]))]) if kept else entry
    if canonical(merged) == canonical(old):
        return old, "unchanged"
    return merged, "replaced" if changed else "grown"


def _seed_record(entry: dict, seed: int) -> str:
    """One seed's part of an entry, canonical: its run's record and its per-seed numbers."""
    i = entry["seeds"].index(seed)
    return canonical({"run": entry["runs"][i], "auc": entry["auc"]["per_seed"][i],
                      "final": entry["final_score"]["per_seed"][i],
                      "stages": [s["score"]["per_seed"][i] for s in entry["stages"]]})


def _merge(runs: list[dict], path: Path, replace: bool, mixed_cpu: bool,
           design: Design) -> tuple[dict, dict | None, PublishReport]:
    """The board with the runs' entries merged in, every check made, nothing written: (new board, the board
    as it is on disk or None, the report)."""
    existing = load_board(path) if path.exists() else None
    if existing is not None:
        check_board_consistency(existing, str(path), names=True)
    first = next((r for r in runs if not r.get("control")), runs[0])
    board = json.loads(json.dumps(existing)) if existing else new_board(first, design)
    design.check(board, path)
    for r in runs:
        _check_compatible(board, r, path)
    holds = ("each seed's runs from that seed's base" if base_per_seed(first["config"]) else "runs from one base")
    check_same_base(board["entries"], runs, f"a board holds {holds} ({path}; rebuild the base, or publish to a "
                                            "new board)")
    report = PublishReport(path)
    entries = {entry_key(e): e for e in board["entries"]}
    for group in group_runs(runs):
        entry = build_entry(group)
        # a board holds one entry an arm (this loop keeps it so)
        [old_key] = [k for k in entries if k[:5] == entry_key(entry)[:5]] or [None]
        if old_key is None:
            report.added.append(entry["name"])
        else:
            entry, what = _onto_arm(entries.pop(old_key), entry, replace, path)
            getattr(report, what).append(entry["name"])
        entries[entry_key(entry)] = entry
    # Stable order (loss, model, seeds) so that a pull request shows a small JSON diff; show ranks at read time.
    board["entries"] = [entries[k] for k in sorted(entries, key=lambda k: (k[1], k[2], k[3], k[4]))]
    if not mixed_cpu:
        check_one_cpu_kind(board, path)
    check_one_seed_set(board, path)
    check_finite(board, path)
    validate_board(board, str(path))
    return board, existing, report
