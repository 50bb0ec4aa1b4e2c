"""The KR lm-eval tasks next to a collapse run: its own questions and cut, and the marks on lm-eval's table.

    lm_eval --model hf --model_args pretrained=RUN/stage_K/model,logits_cache=False --tasks kr_file \\
        --metadata '{"run": "RUN"}'

scores the questions RUN was scored on (the file it recorded, sha256 checked, by `kr.sets.find_kr_file`), on
RUN's own cut into splits (`collapse.protocol.load_data`: the one place the protocol cuts its corpus), so
`kr_file_split0`'s acc is RUN's KR-split-0 at stage K: results.json `stages[K].kr["0"]`, recorded beside it
in `configs.<task>.metadata.kr_run` and printed under the table.

A shipped task (kr_facts, kr_wikitext, kr_imagination) cuts its corpus its own way (six even splits): on a
model of a run cut otherwise (the smoke task's 10 paragraphs per split), its splits are not the run's, and
`kr_run` says so, with a warning naming both cuts.

`table_marks` is what `fortifai_bench._lm_eval_hook` adds to the table lm-eval prints: a `(!)` on every
task whose numbers are not what they claim (requests mis-read by lm-eval's logits cache, a split cut unlike
the model's run, an acc unlike the run's own), and one line under the table for each.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from pathlib import Path

from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.rundir import read_run_config
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.sets import find_kr_file
from fortifai_bench.results import ids_sha256, load_results

log = logging.getLogger("fortifai_bench.kr.lm_eval_tasks")  # one logger for the KR tasks' warnings
MARK = "(!)"


def run_of_model(pretrained) -> tuple[Path, int] | None:
    """(run folder, stage K) when `pretrained` is a collapse run's stage model, RUN/stage_K/model; else None."""
    if not isinstance(pretrained, str) or not pretrained:
        return None
    path = Path(pretrained).expanduser()
    match = re.fullmatch(r"stage_(\d+)", path.parent.name)
    if path.name != "model" or not match or not (path.parent.parent / "config.yaml").is_file():
        return None
    return path.parent.parent.resolve(), int(match.group(1))


@functools.lru_cache(maxsize=4)
def run_kr(run: str) -> tuple[tuple, dict]:
    """(questions, record) of the collapse run in folder `run`: the KR questions it scored, each with the split
    of the run's own cut, in the run's order; the record says where they come from and how it was cut."""
    folder = Path(run).expanduser()
    if not (folder / "config.yaml").is_file():
        raise FortifaiError(f"kr_file: --metadata run {run}: not a collapse run folder (no config.yaml)")
    task, _ = read_run_config(folder)
    results = load_results(folder, complete=False)
    kr_file = find_kr_file(results)
    if kr_file is None:
        raise FortifaiError(f"kr_file: run {run} scored no KR questions (eval.kr: null)")
    # The file the run recorded, read by the run's own code on the run's own cut.
    data = load_data(dataclasses.replace(task, eval=dataclasses.replace(task.eval, kr=str(kr_file))))
    questions = data.questions
    recorded = (results.get("items") or {}).get("split0_ids_sha256")
    if recorded and ids_sha256([q.id for q in questions if q.split == 0]) != recorded:
        raise FortifaiError(f"kr_file: run {run}: the split-0 questions found here are not the ones it scored "
                            f"(ids sha256 differs from results.json items.split0_ids_sha256)")
    bounds, start = [], 0
    for split in data.splits:
        bounds.append([start, start + len(split)])
        start += len(split)
    record = {"run": str(folder.resolve()), "task": task.task, "version": task.version, "corpus": task.corpus,
              "part": task.corpus_part, "bounds": bounds, "kr_file": str(kr_file), "sha256": results["kr"]["sha256"]
              if results.get("kr") else None, "kr_method": task.eval.kr_method, "score_tag": task.eval.score_tag,
              "stages": [{str(k): v for k, v in (s.get("kr") or {}).items()} for s in results["stages"]]}
    return tuple(questions), record


def describe_cut(corpus: str, part: str, bounds) -> str:
    """`facts (main) in 3 splits of 10 paragraphs (split 0 = paragraphs 0-9)`."""
    sizes = sorted({b - a for a, b in bounds})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    first = bounds[0]
    return (f"{corpus} ({part}) in {len(bounds)} splits of {size} paragraphs "
            f"(split 0 = paragraphs {first[0]}-{first[1] - 1})")


def for_subtask(task_name: str, metadata: dict, provenance: dict) -> dict | None:
    """`kr_run` for one KR subtask's results, or None when the model is no run's stage and no run was named.

    kr_file with `run`: the run's results.json KR of this split at the model's stage (when the model is one
    of that run's stages). A shipped task on a run's stage model: whether its cut is the run's (a warning,
    once per run and task family, when not)."""
    split = provenance.get("split")
    of_model = run_of_model(metadata.get("pretrained"))
    if provenance.get("run"):  # kr_file on a run's questions: they are the run's by construction
        record = provenance["run"]
        out = {"run": record["run"], "task": record["task"], "split": split, "same_cut": True}
        if of_model is None or str(of_model[0]) != record["run"]:
            out["stage"] = None
            out["note"] = "the model is not a stage of this run: no results.json figure to compare"
            return out
        stage = of_model[1]
        out["stage"] = stage
        stages = record["stages"]
        out["results_json"] = stages[stage].get(str(split)) if stage < len(stages) and split is not None else None
        if record["kr_method"] != "sum":
            out["note"] = (f"the run scored with kr_method={record['kr_method']}; lm-eval's acc is the sum rule, "
                           "so the two may differ")
        return out
    if of_model is None or provenance.get("bounds") is None:
        return None
    run, stage = of_model
    try:
        _, record = run_kr(str(run))
    except FortifaiError as exc:  # the task scores its own set either way; only the comparison is lost
        log.warning("%s: the model is stage %d of run %s, whose KR cut cannot be read here (%s)", task_name, stage,
                    run, exc)
        return {"run": str(run), "stage": stage, "split": split, "same_cut": None, "note": str(exc)}
    same = (record["corpus"], record["part"], record["bounds"]) == (
        provenance.get("corpus"), provenance.get("part"), [list(b) for b in provenance["bounds"]])
    out = {"run": record["run"], "task": record["task"], "stage": stage, "split": split, "same_cut": same,
           "run_cut": describe_cut(record["corpus"], record["part"], record["bounds"]),
           "task_cut": describe_cut(provenance.get("corpus"), provenance.get("part"), provenance["bounds"])}
    if same:
        out["results_json"] = record["stages"][stage].get(str(split)) if stage < len(record["stages"]) else None
    else:
        _warn_cut(task_name, out)
    return out


_WARNED: set = set()


def _warn_cut(task_name: str, info: dict) -> None:
    family = re.sub(r"_split\d+$", "", task_name)
    if (family, info["run"]) in _WARNED:
        return
    _WARNED.add((family, info["run"]))
    log.warning("%s cuts %s; the model is stage %d of run %s (task %s), cut as %s: its splits are not the run's "
                "KR splits. For the run's own KR: --tasks kr_file --metadata '{\"run\": \"%s\"}'", family,
                info["task_cut"], info["stage"], info["run"], info["task"], info["run_cut"], info["run"])


# ------------------------------------------------------------------------------------------ the printed table

def table_marks(result_dict: dict, column: str = "results") -> tuple[set, list[str]]:
    """(the rows of lm-eval's table to mark, the lines to print under it) from the results' KR metadata: one
    line for the logits cache's misreads, one per differently cut run, one per subtask with a run's own KR."""
    configs = result_dict.get("configs") or {}
    scores = result_dict.get("results") or {}
    marked, lines, cached, cuts = set(), [], [], {}
    for name in sorted(configs):
        meta = (configs[name] or {}).get("metadata") or {}
        cache, run = meta.get("kr_logits_cache") or {}, meta.get("kr_run")
        if cache.get("affected"):
            marked.add(name)
            cached.append((name, cache["affected"], cache["requests"]))
        if run and run.get("same_cut") is False:
            marked.add(name)
            cuts.setdefault((run["run"], run["stage"], run["task_cut"], run["run_cut"]), []).append(name)
        acc = (scores.get(name) or {}).get("acc,none")
        if run and run.get("results_json") is not None and acc is not None:
            equal = abs(acc - run["results_json"]) < 1e-9
            if not equal:
                marked.add(name)
            lines.append(f"{'' if equal else MARK + ' '}{name}: run {run['run']} stage {run['stage']}: results.json "
                         f"KR-split-{run['split']} {run['results_json']:.4f}, lm-eval acc {acc:.4f} "
                         f"({'equal' if equal else 'DIFFERENT'})")
    if cached:
        lines.append(f"{MARK} lm-eval's logits_cache=True read {sum(a for _, a, _ in cached)} of "
                     f"{sum(n for _, _, n in cached)} requests from the wrong positions ("
                     + ", ".join(f"{name} {a}/{n}" for name, a, n in cached)
                     + "): not exact; rerun with logits_cache=False in --model_args")
    for (run, stage, task_cut, run_cut), names in cuts.items():
        lines.append(f"{MARK} {', '.join(names)}: cut as {task_cut}; the model is stage {stage} of run {run}, cut as "
                     f"{run_cut}: not its KR splits (those: --tasks kr_file --metadata '{{\"run\": \"{run}\"}}')")
    for group, members in (result_dict.get("group_subtasks") or {}).items():  # a group holding a marked subtask
        if set(members) & marked:
            marked.add(group)
    rows = set(result_dict.get(column) or {})
    return marked & rows, (lines if column == "results" else [])
