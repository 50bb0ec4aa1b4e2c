"""Paired significance between two losses (or any two sets of runs) on the same collapse task.

    fortifai-bench compare RUN_A RUN_B
    fortifai-bench compare A1,A2,A3 B1,B2,B3          # several seeds per side
    fortifai-bench compare -a A1 -a A2 -b B1 -b B2    # the same, as repeated options
    fortifai-bench compare leaderboards/collapse_facts.json#tce-0.9 RUN1,RUN2,RUN3   # a board entry, either side

A side is run folders (or results.json files), or a board entry `BOARD.json#ENTRY` (its full name, or the
start of it if only one entry starts so): the entry's seeds, from the per-seed values the board keeps.

Two questions, two tests:

* Does one loss delay collapse? Seeds are the unit: the exact permutation test over seeds on the restricted
  time to failure min(time, last stage) (`metrics.compare_failures`: every split of the seeds, so 3 vs 3
  seeds cannot give p below 0.1 and 5 vs 5 not below 2/252; a seed that never failed is censored at the last
  stage, and the summary says so), and the ratio of restricted means with a bootstrap interval over seeds.
  With one run on a side there is no seed-level test; then a bootstrap over questions (paired: the same draw
  for both sides) gives an interval that reflects question sampling within that one seed only, and is
  labelled as such. It resamples facts, not questions: the questions about one fact (KR ids
  `facts/p0001/q2`, `q2.1`, `q2.2`; any other set: one paragraph's questions) rise and fall together.
* Do the two final models answer the same KR questions differently? McNemar's exact test on the final
  stage's KR-split-0 items, per seed pair. The runs must have scored the very same questions (item id
  hashes agree). No pooled McNemar: two seeds of one loss share nothing but their questions, so pooling
  question-runs would treat dependent outcomes as independent.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fortifai_bench.collapse.config import task_from_dict
from fortifai_bench.collapse.plots import plot_compare, plot_mechanism
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.schema import read_questions
from fortifai_bench.kr.sets import find_kr_file
from fortifai_bench.leaderboard.board import load_board
from fortifai_bench.metrics import cluster_totals, compare_failures, compare_retention, failure, resample_weights
from fortifai_bench.results import check_same_base, ids_sha256, load_results as load_run, run_failure, summarize_runs
from fortifai_bench.stats import ALPHA, format_p, mcnemar


def restricted_times(scores: np.ndarray, threshold: float) -> np.ndarray:
    """`metrics.Failure.restricted` of every row of `scores` [rows, stages], by `metrics.failure` itself (the one
    definition): a row that never fails counts as the last stage; NaN for a row below the threshold at M_0
    (never learned: it has no time to failure, not a time of 0)."""
    times = [failure(row, threshold).restricted() for row in np.atleast_2d(np.asarray(scores, dtype=float))]
    return np.array([np.nan if t is None else t for t in times])


def _bits(run: dict, keep: np.ndarray | None = None) -> np.ndarray:
    """[stages, questions] 0/1 matrix of split-0 correctness; with `keep` (`question_clusters`), only the
    questions the headline score reads."""
    bits = np.array([[c == "1" for c in row] for row in run["items"]["split0_correct"]], dtype=float)
    return bits if keep is None else bits[:, keep]


def _label(runs: list[dict]) -> str:
    r = runs[0]
    entry = f" (board entry {r['_entry']})" if r.get("_entry") else ""
    control = ", the clean control" if r.get("control") else ""
    return f"{r['loss']['spec']}{control} ({r['model']}), seeds {','.join(str(x['seed']) for x in runs)}{entry}"


# ------------------------------------------------------------------------------------------ sides


def load_side(spec: str) -> list[dict]:
    """One argument of a side: a run folder (one run), or `BOARD.json#ENTRY` (the entry's seeds)."""
    board_file, _, name = spec.partition("#")
    if not name or not board_file.endswith(".json"):
        return [load_run(spec)]

    return entry_runs(find_entry(load_board(board_file), name, board_file), board_file)


def _seed_mechanism(stage: dict, j: int) -> dict:
    """Seed j's mechanism at an entry's stage, as a run records it (the fields `results.stage_mechanism` reads:
    `confidence.<text>.mean`, `gradient.trained.<class>.share_above_gamma`), so `plots.mechanism_figure` draws
    a board entry as it draws runs."""
    def cells(stats: dict, field: str) -> dict:
        return {k: {field: v["per_seed"][j]} for k, v in stats.items() if k != "gamma" and v["per_seed"][j] is not None}

    out = {}
    if confidence := cells(stage.get("confidence") or {}, "mean"):
        out["confidence"] = confidence
    if trained := cells(stage.get("mask_trained") or {}, "share_above_gamma"):
        out["gradient"] = {"trained": {"gamma": stage["mask_trained"]["gamma"], **trained}}
    return out


def find_entry(board: dict, name: str, where: str) -> dict:
    """The entry called `name`, or the only one whose name starts with it."""
    exact = [e for e in board["entries"] if e["name"] == name]
    found = exact or [e for e in board["entries"] if e["name"].startswith(name)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(e["name"] for e in (found or board["entries"])[:8]) or "none"
    what = "several entries start with" if found else "no entry is named or starts with"
    raise FortifaiError(f"{where}: {what} {name!r} (entries: {names})")


def entry_runs(entry: dict, where: str) -> list[dict]:
    """An entry's seeds as the run records compare reads: each seed's stage scores, KR-total and KL of split
    0, AUC and final score, from the per-seed values the board keeps. A board keeps no per-question results,
    so neither McNemar nor the question bootstrap applies to a board entry."""
    def seed_value(stat, j):
        return None if stat is None else stat["per_seed"][j]

    runs = []
    for j, seed in enumerate(entry["seeds"]):
        stages = [{"stage": st["stage"], "score": seed_value(st["score"], j),
                   "kr_total": seed_value(st.get("kr_total"), j), "kl_split0": seed_value(st.get("kl_split0"), j),
                   **_seed_mechanism(st, j)}
                  for st in entry["stages"]]
        runs.append({"_path": f"{where}#{entry['name']} seed {seed}", "_entry": f"{where}#{entry['name']}",
                     "task": entry["task"], "loss": entry["loss"], "model": entry["model"], "seed": seed,
                     "control": bool(entry.get("control")), "score_name": entry["score_name"],
                     "failure_threshold": entry["failure_threshold"], "stages": stages,
                     "auc": seed_value(entry["auc"], j), "final_score": seed_value(entry["final_score"], j),
                     "run_dir": f"{where}#{entry['name']}", "items": None})
    return runs


def _check_comparable(runs_a: list[dict], runs_b: list[dict]) -> None:
    runs = runs_a + runs_b
    first = runs[0]
    for r in runs[1:]:
        for what, get in (("task", lambda x: (x["task"]["name"], x["task"]["version"])),
                          ("number of stages", lambda x: len(x["stages"])),
                          ("failure threshold", lambda x: x["failure_threshold"]),
                          ("score", lambda x: x["score_name"])):
            if get(r) != get(first):
                raise FortifaiError(f"cannot compare: {r['_path']} has {what} {get(r)}, "
                                    f"{first['_path']} has {get(first)}")
    for side, group in (("A", runs_a), ("B", runs_b)):
        seeds = [r["seed"] for r in group]
        if len(set(seeds)) != len(seeds):
            raise FortifaiError(f"side {side} lists seed {max(seeds, key=seeds.count)} twice")


def _check_items(runs: list[dict]) -> None:
    missing = [r["_path"] for r in runs if not r.get("items")]
    if missing:
        raise FortifaiError(f"cannot run McNemar: {missing[0]} keeps no per-question results (items)")
    first = runs[0]
    for r in runs[1:]:
        if r["items"]["split0_ids_sha256"] != first["items"]["split0_ids_sha256"]:
            raise FortifaiError(
                f"cannot compare: {r['_path']} scored other KR questions than {first['_path']} "
                f"(split-0 item id hash {r['items']['split0_ids_sha256'][:12]}... vs "
                f"{first['items']['split0_ids_sha256'][:12]}...)")
        if len(r["items"]["split0_correct"][-1]) != len(first["items"]["split0_correct"][-1]):
            raise FortifaiError(f"cannot compare: {r['_path']} and {first['_path']} have the same item hash but "
                                f"different numbers of items")


def _pairs(runs_a: list[dict], runs_b: list[dict]) -> list[tuple[dict, dict]] | None:
    """Seed pairs for McNemar: matching seeds if both sides have the same seeds, else the given order."""
    by_seed_b = {r["seed"]: r for r in runs_b}
    if sorted(by_seed_b) == sorted(r["seed"] for r in runs_a):
        return [(a, by_seed_b[a["seed"]]) for a in sorted(runs_a, key=lambda r: r["seed"])]
    if len(runs_a) == len(runs_b):
        return list(zip(runs_a, runs_b))
    return None


def mcnemar_final(runs_a: list[dict], runs_b: list[dict], headline: tuple | None = None) -> dict:
    """McNemar per seed pair on the final stage's headline questions. `headline`: `question_clusters` of
    the runs, when the caller has it already (it reads the KR file)."""
    _check_items(runs_a + runs_b)
    pairs = _pairs(runs_a, runs_b)
    if pairs is None:
        raise FortifaiError(f"cannot pair {len(runs_a)} runs with {len(runs_b)} for McNemar: give the same number "
                            f"of runs (seeds) per side")
    labels, what, keep = headline or question_clusters(runs_a[0])
    if labels is None:  # a tagged headline whose questions cannot be told apart here
        return {"stage": len(runs_a[0]["stages"]) - 1, "pairs": [], "note": what}
    per_pair = []
    for a, b in pairs:
        res = mcnemar(_bits(a, keep)[-1].astype(bool), _bits(b, keep)[-1].astype(bool))
        per_pair.append({"seed_a": a["seed"], "seed_b": b["seed"], **res})
    return {"stage": len(runs_a[0]["stages"]) - 1, "pairs": per_pair}


def ttf_difference(runs_a: list[dict], runs_b: list[dict], *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95, headline: tuple | None = None) -> dict:
    """Time to failure of both sides (`metrics.summarize_failures`), the seed-level test, and with one run
    on a side the question bootstrap (see module doc)."""
    fa, fb = [run_failure(r) for r in runs_a], [run_failure(r) for r in runs_b]
    out = {"a": summarize_runs(runs_a)["time_to_failure"], "b": summarize_runs(runs_b)["time_to_failure"],
           "seeds": compare_failures(fa, fb), "questions": None}
    learned = out["seeds"]["diff"] is not None  # else a side has no seed that learned: no difference to resample
    if learned and (len(runs_a) < 2 or len(runs_b) < 2) and all(r.get("items") for r in runs_a + runs_b):
        out["questions"] = _question_bootstrap(runs_a, runs_b, n_boot, seed, level,
                                               headline or question_clusters(runs_a[0]))
    return out


def auc_by_seed(runs: list[dict]) -> dict:
    """seed -> AUC of the run's score over stages (a side never repeats a seed: `_check_comparable`)."""
    return {r["seed"]: r["auc"] for r in runs if r.get("auc") is not None}


def _question_bootstrap(runs_a, runs_b, n_boot, seed, level, headline) -> dict:
    _check_items(runs_a + runs_b)
    thr = runs_a[0]["failure_threshold"]
    labels, clusters, keep = headline
    if labels is None:
        return {"ci": [None, None], "level": level, "n_boot": 0, "clusters": clusters, "note": clusters}
    # One draw of facts for every run (paired): per resample, how often each fact is drawn; a stage's score
    # is then (drawn facts' right answers) / (drawn facts' questions).
    weights = resample_weights(len(set(labels)), n_boot, np.random.default_rng(seed))

    def boot_mean(runs):
        """Per resample, the mean over the side's runs that learned in it (M_0 at or above the threshold), as
        the seed-level test leaves out a seed that never learned; NaN where none did."""
        ttf = []
        for r in runs:
            right, size = cluster_totals(_bits(r, keep), labels)
            ttf.append(restricted_times((weights @ right.T) / (weights @ size)[:, None], thr))
        ttf = np.array(ttf)
        learned = (~np.isnan(ttf)).sum(axis=0)
        return np.where(learned > 0, np.nansum(ttf, axis=0) / np.maximum(learned, 1), np.nan)

    diffs = boot_mean(runs_a) - boot_mean(runs_b)
    learned = diffs[~np.isnan(diffs)]  # a resample where a side has no run that learned has no difference
    alpha = (1 - level) / 2
    ci = [float(np.quantile(learned, alpha)), float(np.quantile(learned, 1 - alpha))] if learned.size else [None, None]
    note = "question sampling within these runs only, not seed-to-seed variation"
    if learned.size < n_boot:
        note += (f"; {n_boot - learned.size} of {n_boot} resamples left out: in them a side has no run at or above "
                 "the threshold at M_0 (never learned)")
    return {"ci": ci, "level": level, "n_boot": n_boot, "clusters": clusters, "note": note}


def fact_key(question) -> str:
    """What a KR question is about, for resampling: the facts generator asks each fact three times (ids
    `<paragraph>/q<k>`, `q<k>.1`, `q<k>.2`), so a fact is its id without the `.j`; questions of any other
    set are grouped by their paragraph (they are cut from its text)."""
    if str(question.generator).startswith("facts@"):
        return re.sub(r"\.\d+$", "", question.id)
    return f"paragraph {question.paragraph}"


def question_clusters(run: dict) -> tuple[list[str], str, np.ndarray | None]:
    """One label per scored split-0 question of `run` (its fact, `fact_key`), a line saying what is resampled,
    and which of the run's split-0 bits are scored (None: all). With `eval.score_tag` the headline score reads
    only the questions of that tag, so only they are resampled. The labels come from the run's KR file,
    checked against the run's item id hash; where the file is not here or its split-0 questions are not the
    ones scored, each question is its own cluster and the line says so; a tagged headline then cannot be
    resampled at all (labels None: which bits are the tag's is unknown)."""
    n = len(run["items"]["split0_correct"][0])
    tag = (run.get("config", {}).get("eval") or {}).get("score_tag")
    path, why = _kr_file(run)
    if path is not None:
        split0 = [q for q in read_questions(path, check=False) if q.split == 0]
        if ids_sha256([q.id for q in split0]) != run["items"]["split0_ids_sha256"]:
            split0 = _selected_split0(run) or split0  # a task cut finer than the file scores a subset of it
        if ids_sha256([q.id for q in split0]) == run["items"]["split0_ids_sha256"] and len(split0) == n:
            keep = None if tag is None else np.array([q.tag == tag for q in split0])
            labels = [fact_key(q) for q in split0 if tag is None or q.tag == tag]
            what = "" if tag is None else f" tagged {tag!r}"
            return labels, f"{len(set(labels))} facts of split 0 ({len(labels)} questions{what}) resampled", keep
        why = f"the split-0 questions of {path} are not the ones the run scored"
    if tag is not None:
        return None, f"not resampled: the headline reads the {tag!r} questions and {why}", None
    return [str(i) for i in range(n)], f"{n} questions resampled one by one ({why}, so which share a fact is unknown)", None


def _selected_split0(run: dict) -> list:
    """The split-0 questions the run's own config selects (its paragraphs per split may differ from those
    the KR file was cut for), or [] where that config cannot be loaded here."""
    try:
        return [q for q in load_data(task_from_dict(run["config"])).questions if q.split == 0]
    except (FortifaiError, OSError, KeyError):
        return []


def _kr_file(run: dict) -> tuple[Path | None, str]:
    """The run's KR file here (`kr.sets.find_kr_file`: by path, else by name and sha256), or why not."""
    try:
        path = find_kr_file(run)
    except FortifaiError as exc:
        return None, f"the run's KR file is not found here: {exc}"
    return path, "the run records no KR file"


def compare_runs(paths_a: list[str], paths_b: list[str], *, n_boot: int = 2000, seed: int = 0,
                 plot: str | None = None) -> dict:
    if not paths_a or not paths_b:
        raise FortifaiError("compare needs at least one run on each side")
    runs_a = [r for p in paths_a for r in load_side(p)]
    runs_b = [r for p in paths_b for r in load_side(p)]
    _check_comparable(runs_a, runs_b)
    check_same_base([], runs_a + runs_b, "cannot compare losses trained from different base models")
    both_have_items = all(r.get("items") for r in runs_a + runs_b)
    headline = question_clusters(runs_a[0]) if both_have_items else None  # reads the KR file once
    if plot:
        groups = {f"A: {runs_a[0]['loss']['spec']}": runs_a, f"B: {runs_b[0]['loss']['spec']}": runs_b}
        plot_compare(groups, Path(plot), runs_a[0]["failure_threshold"])
        plot_mechanism(groups, Path(f"{plot}-mechanism"))  # none where no side recorded confidence
    return {
        "task": dict(runs_a[0]["task"]), "score_name": runs_a[0]["score_name"],
        "a": _label(runs_a), "b": _label(runs_b),
        "mcnemar": mcnemar_final(runs_a, runs_b, headline) if both_have_items else None,
        "time_to_failure": ttf_difference(runs_a, runs_b, n_boot=n_boot, seed=seed, headline=headline),
        "retention": compare_retention(auc_by_seed(runs_a), auc_by_seed(runs_b)),
    }


def format_report(res: dict) -> str:
    lines = [f"{res['task']['name']} v{res['task']['version']}", f"A: {res['a']}", f"B: {res['b']}", ""]
    t = res["time_to_failure"]
    lines += ["Time to failure (stages from M_0; a seed that never fails is censored at the last stage):",
              f"  A {t['a']['text']}", f"  B {t['b']['text']}"]
    v = t["seeds"]
    if v["diff"] is None:
        lines.append(f"  {v['test']}: not possible, a side has no seed that learned (M_0 below the threshold)")
    else:
        lines.append(f"  restricted mean A - B = {v['diff']:+.2f}, A / B = {_ratio(v['ratio'], v['ratio_ci'])}")
        lines.append("  " + seed_test_text(v))
    q = t["questions"]
    if q is not None and q["ci"][0] is None:
        lines.append(f"  bootstrap over questions: not possible ({q['note']})")
    elif q is not None:
        lines.append(f"  {q['level']:.0%} bootstrap CI of A - B over questions [{q['ci'][0]:+.2f}, {q['ci'][1]:+.2f}] "
                     f"({q['n_boot']} resamples, {q['clusters']}; {q['note']})")
    lines += ["", "Retention (AUC of the score over stages; what separates losses where neither side fails):"]
    lines += retention_text(res["retention"])
    m = res["mcnemar"]
    lines.append("")
    if m is None:
        lines.append("McNemar: not available (a side keeps no per-question results: a board entry, or a run "
                     "without items)")
    elif m.get("note"):
        lines.append(f"McNemar: not available ({m['note']})")
    else:
        lines.append(f"McNemar (exact) on the final stage ({m['stage']}) {res['score_name']} items, per seed pair:")
        for p in m["pairs"]:
            lines.append(f"  seed {p['seed_a']} vs {p['seed_b']}: {p['n']} questions, only A right {p['only_a']}, "
                         f"only B right {p['only_b']}, p = {p['p_value']:.4g}")
    return "\n".join(lines) + "\n"


def seed_test_text(v: dict) -> str:
    """The seed-level test in words: its exact p (never 0), how many splits it counted, that it is one
    comparison's p (a board adjusts its claims), and, where these seed counts cannot reach p < 0.05 at all, the
    smallest p they can give."""
    if v["p_value"] is None:
        return f"no seed-level test ({v['test']} needs 2 learned seeds a side)"
    text = (f"{format_p(v['p_value'], v['splits'])} ({v['test']}, {v['n_a']} vs {v['n_b']} seeds, {v['splits']} "
            "splits; one comparison, unadjusted: on a board it is one of the claims against CE, Holm-adjusted)")
    if v["min_p"] >= ALPHA:
        text += (f"; {v['n_a']} vs {v['n_b']} seeds cannot reach p < {ALPHA:g}: the smallest p they can give "
                 f"is {v['min_p']:.2g}")
    return text


def retention_text(v: dict) -> list[str]:
    if v["diff"] is None:
        return ["  not possible: a side has no run with an AUC"]
    lines = [f"  AUC A - B = {v['diff']:+.3f}"]
    if v["p_value"] is None:
        lines.append(f"  no seed-level test ({v['test']} needs 2 seeds a side)")
    else:
        lines.append(f"  {format_p(v['p_value'], v['splits'])} ({v['test']}, {v['n_a']} vs {v['n_b']} seeds, "
                     f"{v['splits']} splits; one comparison, unadjusted)")
    pr = v["paired"]
    if pr is not None:
        corr = "-" if pr["correlation"] is None else f"{pr['correlation']:.2f}"
        lines.append(f"  paired by seed ({pr['n']} pairs): correlation {corr}, sd of the differences "
                     f"{pr['diff_sd']:.3f}, {format_p(pr['p_value'])} (sign-flip test; the smallest p {pr['n']} "
                     f"pairs can give is {pr['min_p']:.2g})")
    return lines


def _ratio(r, ci=(None, None)) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}] (95% bootstrap over seeds)" if ci[0] is not None else "")
