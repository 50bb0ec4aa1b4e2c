"""`fortifai-bench collapse`: argument parsing, then one call into `collapse.experiment` (what runs when the
command chooses nothing, and its rules, are `collapse.defaults`).

    fortifai-bench collapse                                  # the embedded default: ce and tce:0.9, side by side
    fortifai-bench collapse --loss my_module:MyLoss --loss-args gamma=0.8 --seeds 0-2 --baseline ce --control
    fortifai-bench collapse --task collapse_wikitext --plan  # print the schedule, run nothing
    fortifai-bench collapse --task collapse_smoke --set stages=2 --print-config > mine.yaml   # then --task mine.yaml
    fortifai-bench collapse --loss ce --set train.epochs=3 --set regenerate.temperature=0.7
    fortifai-bench collapse --resume runs/collapse_facts-ce-s0-20250101-120000
    fortifai-bench collapse --task collapse_wikitext --nproc 8      # = torchrun --nproc_per_node 8 -m fortifai_bench.collapse
    fortifai-bench collapse --task collapse_wikitext --plan --nproc 8 --device-tflops 400   # compute estimate
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys

from fortifai_bench.cli.args import add_quiet, add_seeds, at_least, run_path
from fortifai_bench.collapse import launch
from fortifai_bench.collapse.compute import DEFAULT_TFLOPS
from fortifai_bench.collapse.config import load_task
from fortifai_bench.collapse.defaults import (DEFAULT_LOSSES, DEFAULT_SUITE, DEFAULT_TASK, SMOKE_TASK, count_runs,
                                              default_jobs, default_tasks, with_control)
from fortifai_bench.errors import FortifaiError
from fortifai_bench.models import require_model
from fortifai_bench.seeds import parse_seeds


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collapse", help="run the collapse protocol (Algorithm 1) for a loss; no arguments: ce vs tce:0.9",
        description="Recursive training on self-generated data (ForTIFAI Algorithm 1): how long does a model "
                    "trained with a given loss keep the facts of split 0? Without arguments, runs the embedded "
                    f"default suite ({' and '.join(DEFAULT_SUITE)}) for {' and '.join(DEFAULT_LOSSES)} beside the "
                    "clean control and prints them side by side.")
    add_arguments(p)
    # A scored run uses one torch thread unless told otherwise (--threads N, the global --threads, the user's
    # OMP_NUM_THREADS), not the load-based policy other commands use: the thread count changes float
    # rounding and so the numbers, and a result must be a function of (code, config, seed) whatever else
    # runs on the machine (issue 20). Parallelism comes from runs side by side (--jobs) or processes
    # (--nproc). Fixed, like --threads 1, so the policy never raises it during the run (cli.apply_threads).
    p.set_defaults(func=main, default_threads=1)


def collapse_parser() -> argparse.ArgumentParser:
    """The collapse command's options on a parser of their own: what `--nproc` forwards to its processes."""
    p = argparse.ArgumentParser(prog="fortifai-bench collapse", add_help=False)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, help=f"shipped task name or YAML path (default: {DEFAULT_TASK})")
    p.add_argument("--smoke", action="store_true",
                   help=f"the task {SMOKE_TASK}: a run that learns (M_0 KR-split-0 >= 0.9) in about 15 s on a 2-core "
                        "CPU, to check a new loss end to end (--smoke --loss my_module:MyLoss; default loss: ce)")
    p.add_argument("--loss", action="append", default=None, metavar="SPEC",
                   help="loss spec: ce, tce:0.9, focal:2 or module:Name; repeat to compare several "
                        f"(default: {' and '.join(DEFAULT_LOSSES)})")
    p.add_argument("--loss-args", action="append", default=None, metavar="K=V[,K=V]",
                   help="keyword arguments for the losses under test (YAML scalars; default: none)")
    p.add_argument("--model", default=None, help="override model.name: tiny, a hub id or a local HF directory")
    add_seeds(p)
    p.add_argument("--stages", type=int, default=None, help="override the number of stages N+1 (default: the task's)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the task's)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any task field, e.g. --set regenerate.temperature=0.7 (repeatable)")
    p.add_argument("--out", default="runs", help="folder for run directories (default: runs/)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a killed run at its first unfinished stage; overrides apply to the run's own "
                        "recorded task and must not change it")
    p.add_argument("--baseline", default=None, metavar="SPEC|RUN",
                   help="loss spec to run with the same seeds, or run directories, to compare against "
                        "(default: ce when several losses are given)")
    p.add_argument("--control", action="store_true",
                   help="also run the clean control (mode: clean, every split stays real) with the baseline loss "
                        "(default: on for the embedded default, off otherwise)")
    p.add_argument("--no-control", dest="no_control", action="store_true", help="never run the control")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved task (its file, includes and overrides) as YAML that --task reads back "
                        "to the same task and config hash, and exit; the embedded default: one document per task")
    p.add_argument("--plan", action="store_true", help="print the schedule (which split generations train "
                                                       "each stage) and a compute estimate, and exit; loads no model")
    scale = p.add_argument_group("scale (README: At the paper's scale)")
    scale.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="run in N processes on this machine (one per GPU), through torch.distributed.run; "
                            "with --plan: the number of devices the time estimate assumes (default: 1)")
    for name, field, help_text in _MODEL_FLAGS:
        scale.add_argument(name, default=None, metavar=field.split(".")[-1].upper(),
                           help=f"{help_text} (override {field}; default: the task's)")
    scale.add_argument("--gradient-checkpointing", action="store_true", default=None,
                       help="recompute activations in backward (override train.gradient_checkpointing)")
    scale.add_argument("--params", type=float, default=None,
                       help="--plan: the model's parameter count when its config is not available here")
    scale.add_argument("--device-tflops", type=float, default=None,
                       help=f"--plan: achieved TFLOP/s per device for the time estimate (default: {DEFAULT_TFLOPS:g}, "
                            "about a third of an A100's bf16 peak; why: fortifai_bench/collapse/compute.py)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per run (default: 1, or OMP_NUM_THREADS when you set it: a run's "
                        "numbers depend on its thread count, and one thread is how the boards are made; "
                        "results.json records the count)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="run up to N (loss, seed) runs at once, each in its own process with one torch thread: "
                        "exactly the numbers of one run after another, as fast on an idle CPU and faster beside "
                        "other work (default: 1; the embedded default runs its six runs side by side)")
    add_quiet(p)


# flag, the task field it overrides, help: each one is a `--set FIELD=VALUE` with a name
_MODEL_FLAGS = [
    ("--dtype", "model.dtype", "weights' dtype: float32, bfloat16 or float16"),
    ("--attn", "model.attn_implementation", "attention: eager, sdpa or flash_attention_2"),
    ("--revision", "model.revision", "hub branch, tag or commit of the model"),
    ("--per-device-batch-size", "train.per_device_batch_size", "at most this many blocks per device per pass"),
    ("--grad-accum", "train.grad_accum", "batches of train.batch_size blocks per optimizer step"),
]


def _overrides(args) -> list[str]:
    out = list(args.set)
    for name, field, _ in _MODEL_FLAGS:
        value = getattr(args, name.lstrip("-").replace("-", "_"))
        if value is not None:
            out.append(f"{field}={value}")
    if args.gradient_checkpointing:
        out.append("train.gradient_checkpointing=true")
    if args.model is not None:
        out.append(f"model.name={args.model}")
    if args.stages is not None:
        out.append(f"stages={args.stages}")
    if args.epochs is not None:
        out.append(f"train.epochs={args.epochs}")
    return out


def _is_default(args) -> bool:
    """A command that chooses nothing of what runs: the embedded default (`collapse.defaults`)."""
    return not (args.task or args.loss or args.loss_args or args.seeds or _overrides(args) or args.baseline)


def _control(args) -> bool | None:
    """--control / --no-control (which wins), or None: not said."""
    return False if args.no_control else (True if args.control else None)


def main(args: argparse.Namespace) -> int:
    from fortifai_bench.losses import load_loss, parse_loss_args

    command = "fortifai-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run_path(args.resume, "--resume")  # "" is not "no --resume": it would start the whole default
    at_least(args.nproc, "--nproc")
    loss_args = parse_loss_args(args.loss_args)
    if args.smoke:
        if args.task not in (None, SMOKE_TASK) or args.resume:  # (torchrun's processes get both flags back)
            raise FortifaiError(f"--smoke runs the task {SMOKE_TASK}: drop --task / --resume")
        args.task, args.loss = SMOKE_TASK, args.loss or ["ce"]
    if args.resume and args.print_config:
        raise FortifaiError(f"--print-config prints a task: drop --resume (the run's task is {args.resume}/config.yaml)")
    if args.resume:
        if launch.wanted(args):
            return _relaunch(args)
        return _resume(args, loss_args, command)
    default = _is_default(args)
    tasks = default_tasks() if default else [load_task(args.task or DEFAULT_TASK, _overrides(args))]
    if args.print_config:
        print("---\n".join(t.to_yaml() for t in tasks), end="")
        return 0
    for t in tasks:
        require_model(t.model.name)  # a model that is not installed is one line, before any work
    task = tasks[0]
    losses = args.loss or DEFAULT_LOSSES
    seeds = parse_seeds(args.seeds, task.seed)
    for spec in losses:
        load_loss(spec, **loss_args)  # a bad spec fails here, not after an hour
    control = with_control(task, _control(args), default=default)
    jobs = default_jobs(count_runs(tasks, losses, seeds, control), args.jobs, default=default, threads=args.threads,
                        nproc=args.nproc)
    if args.plan:
        with _offline():
            return _plan(args, tasks, losses, seeds, loss_args, control, jobs)
    if launch.wanted(args):  # everything above was checked here, once, before starting N processes
        return _relaunch(args)
    return _run(args, tasks, losses, seeds, loss_args, control, jobs, default, command)


def _relaunch(args) -> int:
    """This command in --nproc processes (torchrun), with every option given but --nproc."""
    return launch.launch(args.nproc, launch.forwarded(collapse_parser(), args))


@contextlib.contextmanager
def _offline():
    """No network call while planning: a corpus or model that is not here is planned from what is recorded
    (the Hugging Face libraries read these when first imported, which planning is the first to do)."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _plan(args, tasks, losses, seeds, loss_args, control, jobs) -> int:
    from fortifai_bench.collapse.protocol import format_plan

    masks = [_masks(spec, loss_args) for spec in losses] + [False] * control  # the control trains with CE
    for t in tasks:  # the per-run estimate of the costliest run
        print(format_plan(t, devices=args.nproc or 1, params=args.params, device_tflops=args.device_tflops,
                          masks=any(masks)))
    print(f"losses: {', '.join(losses)}; seeds: {','.join(map(str, seeds))}")
    if args.device_tflops is None:
        print(_planned_wall(tasks, [m for m in masks for _ in seeds], jobs, args))
    return 0


def _masks(spec: str, loss_args: dict) -> bool:
    """Whether a run of this loss measures its mask with the model around training (`Loss.keeps_every_token`)."""
    from fortifai_bench.losses import load_loss

    return not load_loss(spec, **loss_args).loss.keeps_every_token()


def _run(args, tasks, losses, seeds, loss_args, control, jobs, default, command) -> int:
    from fortifai_bench.collapse.experiment import baseline_runs, run_default, run_experiment
    from fortifai_bench.distributed import is_main

    if default:
        exps = run_default(tasks, control=control, jobs=jobs, out=args.out, progress=_progress(args), command=command)
        print("\n\n".join(f"== {e.task.task} v{e.task.version}: {e.task.description}\n{e.table()}" for e in exps))
        return 0
    exp = run_experiment(tasks[0], losses, seeds, loss_args=loss_args, baseline=baseline_runs(args.baseline),
                         control=control, out=args.out, progress=_progress(args), command=command,
                         write_summary=is_main(), jobs=jobs)
    if is_main():
        print(exp.table())
    return 0


def _planned_wall(tasks, runs: list[bool], jobs: int, args) -> str:
    """The experiment's wall time on this machine, from each task's per-run estimate (measured throughput):
    runs side by side share the CPU cores (one thread each); on a GPU they take turns. `runs`: per run of a
    task, whether its loss's mask is measured (`_masks`)."""
    from fortifai_bench.collapse.compute import duration, estimate, recorded_data, run_seconds
    from fortifai_bench.collapse.plan import plan
    from fortifai_bench.collapse.protocol import plan_data

    devices = args.nproc or 1
    total = 0.0
    for t in tasks:
        data = plan_data(t)[0] or recorded_data(t)
        stages = plan(t, [len(s) for s in data.splits]) if data is not None else None
        est = estimate(t, stages, data, args.params) if stages is not None else None
        seconds = run_seconds(est, devices) if est is not None else None
        if seconds is None:
            return "wall time: not estimated here (no throughput could be measured for the model)"
        keeping = dataclasses.replace(estimate(t, stages, data, args.params, measure=False, masks=False),
                                      rates=est.rates)
        total += sum(seconds if m else run_seconds(keeping, devices) for m in runs)
    import torch

    cores = os.cpu_count() or 1
    parallel = min(jobs, cores) if not torch.cuda.is_available() else 1
    n = len(runs) * len(tasks)
    most = min(cores, n) if not torch.cuda.is_available() else 1  # one thread a run, as the runs are timed
    wider = f"; with --jobs {most}, about {duration(total / most)}" if most > parallel else ""
    return (f"wall time: about {duration(total / parallel)} for {n} run{'s' * (n > 1)}, {parallel} at a time on this "
            f"machine ({cores} cores{', one GPU per run' if torch.cuda.is_available() else ''}){wider}, from the "
            "throughput measured above; shared work (chance level, the control's stage 0) not subtracted")


def _progress(args):
    """Bars on a terminal (a line per stage when piped); -q: one summary line per stage, no bars."""
    return "lines" if args.quiet else True


def _resume(args, loss_args, command) -> int:
    from fortifai_bench.collapse.experiment import resume_experiment
    from fortifai_bench.distributed import is_main

    if args.task or args.seeds or (args.loss and len(args.loss) > 1):
        raise FortifaiError("--resume continues one recorded run: --task, --seeds and several --loss do not apply")
    exp = resume_experiment(args.resume, _overrides(args), args.loss[0] if args.loss else None, loss_args,
                            progress=_progress(args), command=command)
    if is_main():
        print(exp.table())
    return 0
