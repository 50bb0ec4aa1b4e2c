"""The mask as trained and the paper's Fig. 1 contrasts, per stage, as markdown tables (issue 26 item 4).

Reads finished collapse runs (any folder holding run directories, e.g. the --out of
`fortifai-bench collapse --task T --loss ce --loss tce:0.9 --seeds 0 --no-control`) and prints, per task:

* for every loss that masks (kept rate below 1 somewhere), `gradient.trained` per stage: the mask the loss
  applied over every training step of the stage (train mode), as kept rates of corrupted / faithful
  regenerated tokens and fresh real tokens, of fact values the rewrite states true / false and of fresh
  real fact values, the facts the rewrite states true / false / not at all, and beside it the eval-mode
  faithful kept rate of the models that start and end the stage (`gradient.start` / `gradient.end`);
* for every loss, `confidence` per stage (M_0 .. M_N): mean p_t and share above gamma on M_i's own
  regenerated tokens, on the real text it trained on, and on unseen real text, in eval and in train mode.

    python benchmarks/mask_as_trained.py /tmp/h2runs/collapse_facts [more folders]
    python benchmarks/mask_as_trained.py --summary runs/regimes_v3/greedy_seedrun   # a sweep, one row per loss

`--summary`: every finished run below the folders (a sweep's layout, any depth), one row per loss: the mean over
seeds of each run's stages 1-5 mean of the mask as trained, and of the Fig. 1 contrasts (eval mode, mean p_t of
M_1..M_5 on its own regenerated text, the real text it trained on and unseen real text). `--by-stage`: one row
per loss and stage instead (the control included), each number the mean over seeds. `--plot STEM`: the
mechanism figure over seeds per task (`collapse.plots.mechanism_figure`), at STEM-TASK.png and .svg.

    python benchmarks/mask_as_trained.py --summary --by-stage --plot smol runs/regimes_v3/wikitext_smol

`--board FILE`: `--by-stage`'s table from a board file alone, for seeds whose run folders are gone (kept = 1 - the
share above gamma the board keeps as `mask_trained`; for CE, what TCE would keep).

    python benchmarks/mask_as_trained.py --board leaderboards/collapse_facts_gemma.json

`--cost`: what the tally costs the trainer: TCE(0.9) training of collapse_facts' base on split 0 and the real
text of split 1 (as token classes fresh), one thread, with and without classes, alternated `--repeats` times
in one process; the median seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from fortifai_bench.results import arm  # a run's arm: its loss, or the control (one definition)

CONTRASTS = ("own_generated", "trained_real", "unseen_real")


def runs_in(folder: Path) -> list[Path]:
    return sorted(p.parent for p in Path(folder).glob("*/results.json"))


def stage_metrics(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.glob("stage_*/metrics.json"),
                                                     key=lambda p: int(p.parent.name.split("_")[1]))]


def f3(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def rate(cell: dict | None, key: str = "kept_rate") -> float | None:
    return None if cell is None else cell[key]


def mask_rows(stages: list[dict]) -> list[list[float | None]]:
    """Per stage 1-5: corrupted share of the regenerated tokens, then the kept rates of the columns of `mask_table`."""
    rows = []
    for m in stages[1:]:
        t = m["gradient"]["trained"]
        regen = sum((t[c] or {}).get("tokens", 0) for c in ("corrupted", "faithful"))
        by_fact = t.get("by_fact") or {}
        kept = sum((t[c] or {}).get("tokens", 0) * (t[c] or {}).get("kept_rate", 0) for c in ("corrupted", "faithful"))
        rows.append([(t["corrupted"] or {}).get("tokens", 0) / regen if regen else None,
                     rate(t["corrupted"]), rate(t["faithful"]), kept / regen if regen else None, rate(t["fresh"]),
                     rate(by_fact.get("true")), rate(by_fact.get("false")), rate(by_fact.get("fresh"))])
    return rows


def _mean(values: list[float | None]) -> float | None:
    present = [x for x in values if x is not None]
    return statistics.fmean(present) if present else None


def column_means(rows: list[list[float | None]]) -> list[float | None]:
    return [_mean(list(col)) for col in zip(*rows)]


def mask_table(stages: list[dict]) -> list[str]:
    lines = ["| stage | corrupted share of regenerated tokens | kept: corrupted | kept: faithful | kept: all regenerated | "
             "kept: fresh real | "
             "kept: value stated true | kept: value stated false | kept: fresh real value | facts stated true / false / "
             "not found | eval mode, kept faithful: start -> end |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    rows = mask_rows(stages)
    for m, row in zip(stages[1:], rows):
        g = m["gradient"]
        facts = g["trained"].get("facts_stated") or {}
        stated = " / ".join(str(facts.get(k, "-")) for k in ("true", "false", "missing"))
        lines.append(f"| {m['stage']} | " + " | ".join(f3(x) for x in row) + f" | {stated} | "
                     f"{f3(g['start']['faithful_kept_rate'])} -> {f3(g['end']['faithful_kept_rate'])} |")
    lines.append("| mean 1-5 | " + " | ".join(f3(x) for x in column_means(rows)) + " | | |")
    return lines


def finished_runs(folders: list[str], control: bool = False) -> dict[tuple, list[Path]]:
    """(task, version, loss or "control") -> every finished run below the folders; the control only if asked."""
    groups: dict[tuple, list[Path]] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("results.json")):
            res = json.loads(path.read_text())
            if res.get("complete") and (control or not res.get("control")):
                groups.setdefault((res["task"]["name"], res["task"]["version"], arm(res)), []).append(path.parent)
    return groups


def by_stage(folders: list[str]) -> None:
    """One row per (task, loss, stage): the mean over seeds of the mask as trained and the Fig. 1 contrasts."""
    print("| task | loss | seeds | stage | KR split 0 | kept: corrupted | kept: faithful | kept: fresh real | "
          "mean p: own regenerated / real it trained on / unseen real |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for (name, version, label), runs in sorted(finished_runs(folders, control=True).items()):
        stages = [stage_metrics(r) for r in runs]
        for i in range(min(map(len, stages))):
            cells = [m[i] for m in stages]
            trained = [m["gradient"]["trained"] or {} for m in cells]
            kept = [_mean([rate(t.get(c)) for t in trained]) for c in ("corrupted", "faithful", "fresh")]
            conf = [statistics.fmean(m["confidence"][k]["mean"] for m in cells) for k in CONTRASTS]
            score = statistics.fmean(m["score"] for m in cells)
            print(f"| {name} v{version} | {label} | {len(runs)} | {i} | {f3(score)} | " + " | ".join(map(f3, kept))
                  + " | " + " / ".join(map(f3, conf)) + " |")


def board_by_stage(path: str) -> None:
    """`by_stage`'s table from a board file alone (its run folders may be gone): the mean over an entry's seeds of
    its mask as trained, kept = 1 - the share above gamma the board keeps (`mask_trained`), and of the Fig. 1
    contrasts (eval mode)."""
    from fortifai_bench.leaderboard.board import load_board

    board = load_board(path)
    print("| task | loss | seeds | stage | KR split 0 | kept: corrupted | kept: faithful | kept: fresh real | "
          "mean p: own regenerated / real it trained on / unseen real |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for e in board["entries"]:
        label = arm(e)  # a board entry carries a run's `control` and `loss` fields
        for s in e["stages"]:
            dropped = s.get("mask_trained") or {}
            kept = [1 - statistics.fmean(dropped[c]["per_seed"]) if c in dropped else None
                    for c in ("corrupted", "faithful", "fresh")]
            conf = [statistics.fmean(s["confidence"][k]["per_seed"]) for k in CONTRASTS]
            print(f"| {e['task']['name']} v{e['task']['version']} | {label} | {len(e['seeds'])} | {s['stage']} | "
                  f"{f3(statistics.fmean(s['score']['per_seed']))} | " + " | ".join(map(f3, kept)) + " | "
                  + " / ".join(map(f3, conf)) + " |")


def plot(folders: list[str], stem: str) -> None:
    """The mechanism figure over seeds, one per task, at STEM-TASK."""
    from fortifai_bench.collapse.plots import plot_mechanism

    tasks: dict[str, dict[str, list[dict]]] = {}
    for (name, _, label), runs in sorted(finished_runs(folders, control=True).items()):
        tasks.setdefault(name, {})[label] = [json.loads((r / "results.json").read_text()) for r in runs]
    for name, groups in tasks.items():
        for path in plot_mechanism(groups, f"{stem}-{name}"):
            print(f"wrote {path}")


def summary(folders: list[str]) -> None:
    """One row per (task, loss) over every finished run below the folders: the seeds' mean of each run's mean."""
    groups = finished_runs(folders)
    print("| task | loss | seeds | corrupted share | kept: corrupted | kept: faithful | kept: all regenerated | "
          "kept: fresh real | kept: value stated true | kept: value stated false | kept: fresh real value | "
          "mean p, M_1..M_5: own regenerated / real it trained on / unseen real |")
    print("| --- | --- | ---: | " + " | ".join(["---:"] * 8) + " | --- |")
    for (name, version, spec), runs in sorted(groups.items()):
        per_run = [(column_means(mask_rows(st)), [statistics.fmean(m["confidence"][k]["mean"] for m in st[1:])
                                                  for k in CONTRASTS]) for st in map(stage_metrics, runs)]
        mask = column_means([m for m, _ in per_run])
        conf = " / ".join(f3(x) for x in column_means([c for _, c in per_run]))
        print(f"| {name} v{version} | {spec} | {len(runs)} | " + " | ".join(f3(x) for x in mask) + f" | {conf} |")


def confidence_table(label: str, stages: list[dict]) -> list[str]:
    out = []
    for m in stages:
        c = m["confidence"]
        cells = [f"{f3(c[k]['mean'])} / {f3(c[k]['share_above_gamma'])}" for k in CONTRASTS]
        cells += [f"{f3(c['train_mode'][k]['mean'])} / {f3(c['train_mode'][k]['share_above_gamma'])}"
                  for k in CONTRASTS]
        out.append(f"| {label} | M_{m['stage']} | " + " | ".join(cells) + " |")
    return out


CONFIDENCE_HEADER = ("| loss | model | eval: own regenerated | eval: real it trained on | eval: unseen real | "
                     "train: own regenerated | train: real it trained on | train: unseen real |\n"
                     "| --- | --- | --- | --- | --- | --- | --- | --- |")


def cost(repeats: int, epochs: int) -> None:
    import time

    import torch

    from fortifai_bench.collapse.base import base_model
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.corruption import token_classes
    from fortifai_bench.collapse.protocol import load_data
    from fortifai_bench.models import load_model
    from fortifai_bench.train import train

    torch.set_num_threads(1)
    task = load_task("collapse_facts")
    data = load_data(task)
    paragraphs = data.splits[0] + data.splits[1]
    config = dataclasses.replace(task.stage_train(seed=0), epochs=epochs)
    seconds: dict[str, list[float]] = {"without classes": [], "with classes": []}
    for _ in range(repeats):
        for label in seconds:
            model, tok = load_model(base_model(task, progress=False))
            classes = [token_classes(tok, q, q.text, 0)[0] for q in paragraphs] if label == "with classes" else None
            start = time.perf_counter()
            train(model, tok, [q.text for q in paragraphs], "tce:0.9", config, progress=False, classes=classes)
            seconds[label].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    for k, v in seconds.items():
        print(f"{k}: median {med[k]:.2f} s ({', '.join(f'{x:.2f}' for x in v)})")
    print(f"ratio with / without: {med['with classes'] / med['without classes']:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="*", help="folders holding finished run directories")
    p.add_argument("--cost", action="store_true", help="time the trainer with and without the tally instead")
    p.add_argument("--summary", action="store_true", help="one row per loss over every run below the folders")
    p.add_argument("--by-stage", action="store_true", help="with --summary: one row per loss and stage")
    p.add_argument("--plot", default=None, metavar="STEM", help="with --summary: the mechanism figure per task")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--board", default=None, metavar="FILE",
                   help="--by-stage's table from a board file instead of run folders (seeds whose folders are gone)")
    args = p.parse_args(argv)
    if args.board:
        board_by_stage(args.board)
        return 0
    if args.cost:
        cost(args.repeats, args.epochs)
        return 0
    if args.summary:
        by_stage(args.folders) if args.by_stage else summary(args.folders)
        if args.plot:
            plot(args.folders, args.plot)
        return 0
    for folder in args.folders:
        runs = [(json.loads((r / "results.json").read_text()), r) for r in runs_in(Path(folder))]
        if not runs:
            print(f"{folder}: no finished runs")
            continue
        task = runs[0][0]["task"]
        seeds = sorted({r["seed"] for r, _ in runs})
        print(f"\n### {task['name']} v{task['version']}, seed {', '.join(map(str, seeds))}\n")
        confidence = []
        for res, run in runs:
            stages = stage_metrics(run)
            spec = res["loss"]["spec"]
            masks = any((m["gradient"]["trained"] or {}).get(c) and m["gradient"]["trained"][c]["kept_rate"] < 1
                        for m in stages for c in ("corrupted", "faithful", "fresh"))
            if masks:
                gamma = stages[0]["gradient"]["trained"]["gamma"]
                print(f"{spec}: the mask as trained (train mode, every step of the stage; gamma {gamma})\n")
                print("\n".join(mask_table(stages)) + "\n")
            confidence += confidence_table(spec, stages)
        print("Fig. 1 contrasts: mean p_t / share above gamma (0.9), per model\n")
        print(CONFIDENCE_HEADER + "\n" + "\n".join(confidence))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
