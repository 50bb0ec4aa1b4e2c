"""Which collapse regime resolves losses? KR-split-0 curves of named regimes over seeds, as a table.

    python benchmarks/collapse_regimes.py --regimes default,paper_decoding_v2 --losses ce --seeds 0-2 --threads 1
    python benchmarks/collapse_regimes.py --regimes default --losses ce --control --seeds 0-2 --table-only

Each regime is a set of overrides of `collapse_facts`. Every (regime, loss, seed) run lives in
OUT/<regime>/<loss>-s<seed>/<run dir>; a finished run is reused, a killed one resumed, so the script can be
stopped and restarted. The table (markdown, for BENCHMARKS.md) gives per regime and loss: KR-split-0 per
stage (mean over seeds), the time to failure summary (`metrics.summarize_failures`), the seed standard
deviation of the time to failure, and the largest share of the M_0 -> M_last fall that any single stage
takes (the issue's "no cliff" criterion). Settings are chosen on CE and the control, never on the loss
under test.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

PAPER_DECODING = ["regenerate.decoding=beam", "regenerate.num_beams=5", "regenerate.repetition_penalty=3.0",
                  "regenerate.mode=original"]  # the authors' src/generate.py: beam 5, penalty 3, original context


def searched(schedule: str, epochs: int, lr: float, temperature: float, budget: str = "epochs") -> list[str]:
    """A regime of the search. budget=epochs: run before v2 made `budget: steps` the default, so that it
    stays the config it was run with."""
    return [f"budget={budget}", f"train.schedule={schedule}", f"train.epochs={epochs}", f"train.lr={lr}",
            f"regenerate.temperature={temperature}"]


# name -> overrides of collapse_facts (the shipped default is "default"; the others say what they change),
# or (task, overrides) for a regime that starts from another shipped task
REGIMES = {
    "default": [],  # the shipped collapse_facts (v2, since 2026-12-02): the config of steps_T1.3 below
    "paper_decoding_v2": PAPER_DECODING,  # the shipped default with the authors' decoding
    "greedy_v2": ["regenerate.temperature=0.01"],  # the shipped default, near-greedy sampling
    # the task before this benchmark: 20 epochs, cosine lr 5e-3, sampling at T=1 (every loss collapsed in one step)
    "v1": searched("cosine", 20, 5e-3, 1.0),
    # the cosine-schedule probes of the search (BENCHMARKS.md, "Collapse")
    "e40_T1.0": searched("cosine", 40, 1e-2, 1.0),
    "e40_T1.3": searched("cosine", 40, 1e-2, 1.3),
    "e40_T1.45": searched("cosine", 40, 1e-2, 1.45),
    "e40_T1.6": searched("cosine", 40, 1e-2, 1.6),
    "e30_T1.5": searched("cosine", 30, 1e-2, 1.5),
    # constant learning rate (after warmup) instead of cosine: no stage anneals onto its own rewrite
    "const_e20_T1.0": searched("constant", 20, 5e-3, 1.0),
    "const_e30_T1.3": searched("constant", 30, 5e-3, 1.3),  # collapse_facts v1
    "const_e40_T1.3": searched("constant", 40, 5e-3, 1.3),
    "const_e40_T1.4": searched("constant", 40, 5e-3, 1.4),
    "const_e30_T1.5": searched("constant", 30, 5e-3, 1.5),
    "const_e30_paper_decoding": searched("constant", 30, 5e-3, 1.3) + PAPER_DECODING,  # v1, authors' decoding
    # budget: steps -- every stage makes the optimizer steps of 30 epochs over one split (30, 15, 10, 8, 6, 5
    # epochs over pools of 1..6 splits): constant compute per stage, and no stage memorizes its rewrite for
    # as long as M_0 learned the real split
    "steps_T1.0": searched("constant", 30, 5e-3, 1.0, budget="steps"),
    "steps_T1.3": searched("constant", 30, 5e-3, 1.3, budget="steps"),
    "steps_T1.5": searched("constant", 30, 5e-3, 1.5, budget="steps"),
    # issue 19: mode-seeking decoding on a base that has not memorized every fact (M_0 below 1): fewer
    # epochs per split, greedy or cool sampling. Chosen on CE and the control (BENCHMARKS.md "Regime suite").
    **{f"greedy_e{e}": ["regenerate.decoding=greedy", f"train.epochs={e}"] for e in (6, 8, 10, 12, 15, 17, 18, 20, 25)},
    # the regime suite's shipped tasks (issue 19), as shipped
    "hot": ("collapse_facts", []),
    "greedy": ("collapse_facts_greedy", []),  # v2 since 2026-12-05: a base per seed
    # collapse_facts_greedy v1 (the board of 2026-12-03: the shipped base for every seed), its hash dd589c6f
    "greedy_v1": ("collapse_facts_greedy", ["version=1", "model.pretrain.seed=0"]),
    # collapse_facts_longtail v2 (the board of 2026-12-03), by overrides of the shipped v3: its config hash (c029eff6)
    "longtail": ("collapse_facts_longtail", ["version=2", "corpus=facts-longtail", "paragraphs_per_split=30",
                                             "model.pretrain.corpus=facts-longtail", "model.pretrain.seed=0"]),
    # issue 26 items 2-3: collapse_facts_longtail v3 as shipped (facts-longtail-450, 75 paragraphs per split,
    # a base per seed)
    "longtail_v3": ("collapse_facts_longtail", []),
    # issue 26 item 3: greedy with a base per seed, by overrides of v1, the name its board's sweep ran under;
    # the same config (hash 54574908) as the shipped v2
    "greedy_seedrun": ("collapse_facts_greedy", ["model.pretrain.seed=run", "version=2"]),
    # issue 27: a pretrained LM (SmolLM2-135M-Instruct) on real text and on the facts, as shipped
    "wikitext_smol": ("collapse_wikitext_smol", []),
    "wikitext_smol_heavy": ("collapse_wikitext_smol_heavy", []),
    "facts_smol": ("collapse_facts_smol", []),
    # issue 27's second model, last: collapse_wikitext_smol on Gemma 3 270M, uncalibrated (its packages first:
    # the task file says which)
    "wikitext_gemma": (str(Path(__file__).resolve().parent / "collapse_wikitext_gemma.yaml"), []),
    # the regime Gemma runs on (BENCHMARKS.md, "Gemma 3 270M on the facts regime"): collapse_facts_smol's protocol
    "facts_gemma": (str(Path(__file__).resolve().parent / "collapse_facts_gemma.yaml"), []),
    **{f"m0_e{e}": ["stages=1", f"train.epochs={e}"] for e in (4, 6, 8, 10, 12, 15)},  # M_0 alone
    **{f"T{t}_e{e}": [f"regenerate.temperature={t}", f"train.epochs={e}"] for t in (0.5, 0.7) for e in (12, 15, 20)},
}


def regime_task(regime: str, control: bool = False):
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.experiment import control_task

    spec = REGIMES[regime]
    name, overrides = spec if isinstance(spec, tuple) else ("collapse_facts", spec)
    task = load_task(name, overrides)
    return control_task(task) if control else task


def run_dir_for(root: Path, regime: str, loss: str, seed: int) -> Path:
    from fortifai_bench.collapse.rundir import slug

    return root / regime / f"{slug(loss)}-s{seed}"


def runs_of(root: Path, regime: str, arm: str, seed: int) -> list[Path]:
    """The run folders of one arm and seed that ran the regime's task as it stands, oldest first (a folder's
    name carries its start time). A folder whose config.yaml holds another config hash ran another experiment
    (an earlier version of the task, left there by a calibration step, or edited loss code): reusing it would
    publish its numbers under this task, resuming it is refused (`rundir.open_run`), and copying its stage 0
    or chance into a control would mix two experiments. Such folders are passed over: a new run starts."""
    from fortifai_bench.io import read_yaml
    from fortifai_bench.losses import load_loss

    loss = "ce" if arm == "control" else arm
    want = regime_task(regime, arm == "control").config_hash(load_loss(loss).describe())
    return sorted(c.parent for c in run_dir_for(root, regime, arm, seed).glob("*/config.yaml")
                  if (read_yaml(c) or {}).get("config_hash") == want)


def newest_run(root: Path, regime: str, arm: str, seed: int) -> Path | None:
    """The newest run folder of one arm and seed (`runs_of`), finished or not; None before any."""
    return max(runs_of(root, regime, arm, seed), default=None)


def finished_run_dir(root: Path, regime: str, arm: str, seed: int) -> Path | None:
    """The folder of the newest run of one arm ("control" for the clean control) and seed, if it finished."""
    from fortifai_bench.io import read_json

    files = [run / "results.json" for run in runs_of(root, regime, arm, seed) if (run / "results.json").is_file()]
    return files[-1].parent if files and read_json(files[-1]).get("complete") else None


def finished_run(root: Path, regime: str, arm: str, seed: int) -> dict | None:
    """The results of the newest finished run of one arm and seed (`finished_run_dir`), or None."""
    from fortifai_bench.io import read_json

    run = finished_run_dir(root, regime, arm, seed)
    return None if run is None else read_json(run / "results.json")


def ensure_run(root: Path, regime: str, loss: str, seed: int, control: bool, progress: bool) -> dict:
    """The results of one run: reused when finished, resumed when killed, else started."""
    from fortifai_bench.collapse.run import run_collapse

    task = regime_task(regime, control)
    arm = "control" if control else loss
    if (done := finished_run(root, regime, arm, seed)) is not None:
        return done
    if (killed := newest_run(root, regime, arm, seed)) is not None:
        return run_collapse(task, loss, seed=seed, resume=killed, progress=progress)
    shared = start_from_baseline(root, regime, loss, seed, control)
    if shared is not None:
        return run_collapse(task, loss, seed=seed, resume=shared, progress=progress)
    return run_collapse(task, loss, seed=seed, out=run_dir_for(root, regime, arm, seed), progress=progress)


def start_from_baseline(root: Path, regime: str, loss: str, seed: int, control: bool) -> Path | None:
    """A new run's folder holding what a CE run of the sweep computed exactly, by an experiment's own rules
    (`experiment.Sharing`): chance.json (the base model's KR: the same for every arm, `chance_key`) and, for the
    clean control, a finished stage 0 of CE at its seed (M_0 trained with CE on the real split 0 and its rewrite,
    `same_stage0`; the CE run may still be running its later stages); None when there is nothing to copy. The
    run then resumes from them: a SmolLM2 control skips its stage 0 and every run the base model's scoring,
    with the numbers it would have computed."""
    from fortifai_bench.collapse import rundir
    from fortifai_bench.collapse.experiment import Job, chance_key, same_stage0
    from fortifai_bench.losses import load_loss

    ce_task, task = regime_task(regime), regime_task(regime, control)
    job = Job(loss, task, "ce" if control else loss, {}, seed)
    ce_runs = [(s, newest_run(root, regime, "ce", s)) for s in [seed, *range(seed)]]
    ce_runs = [(s, d) for s, d in ce_runs if d is not None]  # each seed's newest CE run
    chance_from = next((d for s, d in ce_runs if (d / "chance.json").is_file()
                        and chance_key(Job("ce", ce_task, "ce", {}, s)) == chance_key(job)), None)
    stage0_from = next((d for s, d in ce_runs if s == seed and (d / "stage_0" / "metrics.json").is_file()
                        and (d / "stage_0" / "model").is_dir()  # a published run's models may be pruned
                        and same_stage0(Job("ce", ce_task, "ce", {}, s), job)), None)
    if chance_from is None and stage0_from is None:
        return None
    run = rundir.open_run(dataclasses.replace(task, seed=seed), load_loss(job.spec).describe(),
                          out=run_dir_for(root, regime, "control" if control else loss, seed))
    if chance_from is not None:
        rundir.copy_chance(chance_from, run)
    if stage0_from is not None:
        rundir.copy_stage(stage0_from, run, "stage_0")
    return run


def largest_step_share(curve: list[float]) -> float | None:
    fall = curve[0] - min(curve)
    if fall <= 0:
        return None
    return max(max(0.0, curve[i] - curve[i + 1]) for i in range(len(curve) - 1)) / fall


def row(regime: str, label: str, runs: list[dict]) -> str:
    from fortifai_bench.results import run_failure, summarize_runs

    s = summarize_runs(runs)
    curve = [st["mean"] for st in s["per_stage"]["score"]]
    times = [f.restricted() for f in map(run_failure, runs) if f.restricted() is not None]
    sd = statistics.stdev(times) if len(times) > 1 else None
    share = largest_step_share(curve)
    kl = [st["mean"] for st in s["per_stage"]["kl_split0"]]
    return (f"| {regime} | {label} | {' '.join(f'{c:.3f}' for c in curve)} | {s['time_to_failure']['text']} | "
            f"{'-' if sd is None else f'{sd:.2f}'} | {'-' if share is None else f'{share:.2f}'} | "
            f"{min(curve):.3f} | {' '.join(f'{k:.2f}' for k in kl)} |")


def tag_row(regime: str, label: str, runs: list[dict], tag: str) -> str:
    """KR-split-0 on the questions tagged `tag` per stage, mean over seeds (`experiment.tag_mean`, the CLI
    table's), and each seed's restricted time to failure (of the headline score)."""
    from fortifai_bench.collapse.experiment import tag_mean
    from fortifai_bench.results import run_failure

    curve = [tag_mean(runs, i, tag) for i in range(len(runs[0]["stages"]))]
    times = [run_failure(r).restricted() for r in runs]
    return (f"| {regime} | {label} | {' '.join('-' if c is None else f'{c:.3f}' for c in curve)} | "
            f"{' '.join('-' if t is None else f'{t:.2f}' for t in times)} |")


def tag_header(tag: str) -> str:
    return (f"| regime | loss | KR-split-0 of the {tag!r} questions per stage (mean over seeds) | restricted time "
            "to failure per seed |\n| --- | --- | --- | --- |")


MECHANISM = ("corrupted_share", "corrupted_kept_rate", "faithful_kept_rate", "fresh_kept_rate", "kept_corrupted_share")
MECHANISM_HEADER = ("| regime | loss | corrupted share of the rewrite | kept rate: corrupted tokens | kept rate: faithful "
                    "tokens | kept rate: fresh real split | corrupted share of the kept tokens |\n"
                    "| --- | --- | ---: | ---: | ---: | ---: | ---: |")


def mechanism_row(regime: str, label: str, runs: list[dict]) -> str:
    """Issue 19 item 4: where the loss puts its gradient, as the model that starts each stage sees it (the
    `gradient.start` block of stages 1..N, read from each stage's metrics.json), mean over stages and seeds.
    The paper's mechanism predicts kept rate on corrupted tokens < on faithful ones (and on fresh real text)."""
    from fortifai_bench.io import read_json

    cells = {k: [] for k in MECHANISM}
    for r in runs:
        for st in r["stages"][1:]:
            g = (read_json(Path(r["run_dir"]) / f"stage_{st['stage']}" / "metrics.json").get("gradient") or {})
            for k in MECHANISM:
                if (g.get("start") or {}).get(k) is not None:
                    cells[k].append(g["start"][k])
    mean = lambda xs: f"{statistics.fmean(xs):.3f}" if xs else "-"  # noqa: E731
    return f"| {regime} | {label} | " + " | ".join(mean(cells[k]) for k in MECHANISM) + " |"


HEADER = ("| regime | loss | KR-split-0 per stage (mean over seeds) | time to failure | sd of time (seeds) | "
          "largest one-stage share of the fall | min KR-split-0 | KL split 0 per stage |\n"
          "| --- | --- | --- | --- | ---: | ---: | ---: | --- |")


def main(argv=None) -> int:
    from fortifai_bench.seeds import parse_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regimes", default="default", help=f"comma-separated, from: {', '.join(REGIMES)}")
    p.add_argument("--losses", default="ce")
    p.add_argument("--control", action="store_true", help="also the clean control (CE, mode: clean)")
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--out", default="runs/regimes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table-only", action="store_true", help="only tabulate the runs that are finished")
    p.add_argument("--mechanism", action="store_true",
                   help="with --table-only: the kept rates of corrupted, faithful and fresh tokens instead")
    p.add_argument("--tag", default=None, help="with --table-only: KR-split-0 of one tag's questions per stage "
                                             "(a tagged KR set, e.g. mode or tail on longtail) and each seed's time")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    root, seeds = Path(args.out), parse_seeds(args.seeds)
    lines = [MECHANISM_HEADER if args.mechanism else tag_header(args.tag) if args.tag else HEADER]
    for regime in args.regimes.split(","):
        if regime not in REGIMES:
            sys.exit(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
        losses = [loss for loss in args.losses.split(",") if loss]  # --losses "" with --control: the control only
        groups = [(loss, False) for loss in losses] + ([("ce", True)] if args.control else [])
        for loss, control in groups:
            if args.table_only:
                found = [finished_run(root, regime, "control" if control else loss, s) for s in seeds]
                runs = [r for r in found if r is not None]
            else:
                runs = [ensure_run(root, regime, loss, s, control, not args.quiet) for s in seeds]
            if runs:
                label = "control (ce, clean)" if control else loss
                if args.tag:
                    lines.append(tag_row(regime, label, runs, args.tag))
                else:
                    lines.append((mechanism_row if args.mechanism else row)(regime, label, runs))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
