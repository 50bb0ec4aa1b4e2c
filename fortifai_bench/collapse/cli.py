"""`fortifai-bench collapse`: Algorithm 1 for one or more losses over one or more seeds.

    fortifai-bench collapse                                  # the embedded default: ce and tce:0.9, side by side
    fortifai-bench collapse --loss my_module:MyLoss --loss-args gamma=0.8 --seeds 0,1,2 --baseline ce
    fortifai-bench collapse --task collapse_wikitext --plan  # print the schedule, run nothing
    fortifai-bench collapse --loss ce --set train.epochs=3 --set regenerate.temperature=0.7
    fortifai-bench collapse --resume runs/collapse_facts-ce-s0-20250101-120000
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
from pathlib import Path

from fortifai_bench.errors import FortifaiError

DEFAULT_LOSSES = ["ce", "tce:0.9"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collapse", help="run the collapse protocol (Algorithm 1) for a loss; no arguments: ce vs tce:0.9",
        description="Recursive training on self-generated data (ForTIFAI Algorithm 1): how long does a model "
                    "trained with a given loss keep the facts of split 0? Without arguments, runs the embedded "
                    "default task for ce and tce:0.9 and prints them side by side.")
    p.add_argument("--task", default=None, help="shipped task name or YAML path (default: collapse_facts)")
    p.add_argument("--loss", action="append", default=None, metavar="SPEC",
                   help="loss spec: ce, tce:0.9, focal:2 or module:Name (repeat to compare several)")
    p.add_argument("--loss-args", action="append", default=None, metavar="K=V[,K=V]",
                   help="keyword arguments for the loss (YAML scalars)")
    p.add_argument("--model", default=None, help="override model.name: tiny, a hub id or a local HF directory")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the task's seed)")
    p.add_argument("--stages", type=int, default=None, help="override the number of stages (N+1)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any task field, e.g. --set regenerate.temperature=0.7 (repeatable)")
    p.add_argument("--out", default="runs", help="folder for run directories (default: runs/)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a killed run at its first unfinished stage (config must match)")
    p.add_argument("--baseline", default=None, metavar="SPEC|RUN",
                   help="loss spec to run with the same seeds, or a run directory, to report time-to-failure ratios")
    p.add_argument("--plan", action="store_true", help="print the schedule (which split generations train "
                                                       "each stage) and exit; needs no model or data")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is much faster on a busy shared machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def _overrides(args) -> list[str]:
    out = list(args.set)
    if args.model is not None:
        out.append(f"model.name={args.model}")
    if args.stages is not None:
        out.append(f"stages={args.stages}")
    if args.epochs is not None:
        out.append(f"train.epochs={args.epochs}")
    return out


def _seeds(text: str | None, default: int) -> list[int]:
    if text is None:
        return [default]
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise FortifaiError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise FortifaiError("--seeds is empty")
    return seeds


def main(args: argparse.Namespace) -> int:
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.losses import parse_loss_args

    command = "fortifai-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.threads is not None:
        if args.threads < 1:
            raise FortifaiError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    loss_args = parse_loss_args(args.loss_args)
    if args.resume:
        return _resume(args, loss_args, command)
    task = load_task(args.task or "collapse_facts", _overrides(args))
    losses = args.loss or DEFAULT_LOSSES
    if args.plan:
        from fortifai_bench.collapse.protocol import format_plan
        from fortifai_bench.losses import load_loss

        for spec in losses:
            load_loss(spec, **loss_args)  # a bad spec fails here, not after an hour
        print(format_plan(task))
        print(f"losses: {', '.join(losses)}; seeds: {','.join(map(str, _seeds(args.seeds, task.seed)))}")
        return 0
    seeds = _seeds(args.seeds, task.seed)
    from fortifai_bench.collapse.run import run_collapse, summarize

    baseline_runs = None
    if args.baseline:
        baseline_runs = _baseline(args.baseline, task, seeds, args, command)
    groups: dict[str, list[dict]] = {}
    for spec in losses:
        groups[spec] = [run_collapse(task, spec, loss_args, seed=s, out=args.out, progress=not args.quiet,
                                     command=command) for s in seeds]
    base_summary = summarize(baseline_runs) if baseline_runs else None
    if base_summary is None and "ce" in groups and len(groups) > 1:
        base_summary = summarize(groups["ce"])  # the reference loss is the natural baseline
    summaries = {spec: summarize(runs, base_summary) for spec, runs in groups.items()}
    if baseline_runs and args.baseline not in groups:
        groups = {f"{args.baseline} (baseline)": baseline_runs, **groups}
        summaries = {f"{args.baseline} (baseline)": base_summary, **summaries}
    print(format_table(groups, summaries, task.eval.failure_threshold))
    _write_summary(task, groups, summaries, args.out)
    return 0


def _resume(args, loss_args, command) -> int:
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.run import read_run_config, run_collapse, summarize

    recorded_task, recorded_loss = read_run_config(args.resume)
    explicit = args.task or args.loss or _overrides(args) or loss_args
    if explicit:
        task = load_task(args.task or "collapse_facts", _overrides(args))
        task.seed = recorded_task.seed if args.seeds is None else _seeds(args.seeds, 0)[0]
        specs = args.loss or [recorded_loss["spec"]]
        if len(specs) != 1:
            raise FortifaiError("--resume continues one run: give at most one --loss")
        spec = specs[0]
        args_for_loss = loss_args if args.loss or loss_args else recorded_loss.get("args", {})
    else:
        task, spec = recorded_task, recorded_loss["spec"]
        args_for_loss = _user_args(recorded_loss)
    results = run_collapse(task, spec, args_for_loss, out=args.out, resume=args.resume,
                           progress=not args.quiet, command=command)
    print(format_table({spec: [results]}, {spec: summarize([results])}, task.eval.failure_threshold))
    return 0


def _user_args(loss_desc: dict) -> dict:
    """The keyword arguments a user gave, from a recorded loss description (short specs carry theirs)."""
    from fortifai_bench.losses import load_loss

    plain = load_loss(loss_desc["spec"]).describe()["args"]
    return {k: v for k, v in loss_desc.get("args", {}).items() if plain.get(k, object()) != v}


def _baseline(text: str, task, seeds, args, command) -> list[dict]:
    from fortifai_bench.io import read_json
    from fortifai_bench.collapse.run import run_collapse

    path = Path(text)
    if path.is_dir() or path.suffix == ".json":
        files = [path / "results.json"] if (path / "results.json").is_file() else sorted(path.glob("*/results.json"))
        if path.suffix == ".json":
            files = [path]
        if not files or not all(f.is_file() for f in files):
            raise FortifaiError(f"--baseline {text}: no results.json found there")
        return [read_json(f) for f in files]
    return [run_collapse(task, text, {}, seed=s, out=args.out, progress=not args.quiet, command=command)
            for s in seeds]


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_table(groups: dict[str, list[dict]], summaries: dict[str, dict], threshold: float) -> str:
    """KR-split-0 per stage (mean over seeds) side by side, then time to failure, AUC and final KR."""
    names = list(groups)
    n_stages = max((len(r["stages"]) for runs in groups.values() for r in runs), default=0)

    def ttf(s):
        t = s["time_to_failure"]
        if s["censored"] == len(s["seeds"]):
            return "not reached"
        text = _fmt(t["mean"], 2)
        if t["n"] > 1:
            text += f" [{t['ci'][0]:.2f}, {t['ci'][1]:.2f}]"
        if s["censored"]:
            text += f" ({s['censored']} not reached)"
        return text

    rows = [["stage"] + names]
    for i in range(n_stages):
        per = [summaries[n]["score_per_stage"] for n in names]
        rows.append([f"M_{i}"] + [_fmt(p[i]["mean"]) if i < len(p) else "-" for p in per])
    rows.append(["failure"] + [ttf(summaries[n]) for n in names])
    rows.append(["AUC"] + [_fmt(summaries[n]["auc"]["mean"]) for n in names])
    rows.append(["final"] + [_fmt(summaries[n]["final_score"]["mean"]) for n in names])
    ratios = [summaries[n].get("baseline", {}).get("ratio") for n in names]
    base = next((summaries[n]["baseline"]["loss"]["spec"] for n in names if summaries[n].get("baseline")), None)
    if base is not None:
        rows.append([f"ratio"] + [_fmt(r, 2) for r in ratios])
    widths = [max(len(r[c]) for r in rows) + 2 for c in range(len(rows[0]))]
    lines = [f"KR-split-0 per stage (mean over seeds); failure = first crossing below {threshold:.2f}"]
    lines += ["".join(cell.ljust(widths[0]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(r))
              for r in rows]
    if base is not None:
        lines.append(f"ratio = time to failure / {base}'s (a run that never fails counts as the number of stages)")
    runs = [r["run_dir"] for runs in groups.values() for r in runs]
    lines.append("runs: " + ", ".join(str(r) for r in runs))
    return "\n".join(lines)


def _write_summary(task, groups, summaries, out) -> None:
    from fortifai_bench.io import write_json

    if sum(len(v) for v in groups.values()) < 2:
        return
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out) / f"summary-{task.task}-{stamp}.json"
    write_json(path, {"task": {"name": task.task, "version": task.version}, "config_hash": task.config_hash(),
                      "summaries": summaries})
    try:
        from fortifai_bench.collapse.plots import plot_compare

        plot_compare(groups, path.with_suffix(".png"), task.eval.failure_threshold)
    except ImportError:
        pass
    print(f"summary: {path}")
