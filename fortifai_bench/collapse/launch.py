"""`fortifai-bench collapse --nproc N`: the same command, started N times by torch's own launcher.

It is exactly ``torchrun --standalone --nproc_per_node N -m fortifai_bench.collapse ARGS`` (the arguments
given, less ``--nproc``): `torch.distributed.run` picks a free port on this machine, starts the processes
and stops all of them when one fails. On several machines, run torchrun yourself with its rendezvous
flags (README, "At the paper's scale"); nothing here is project-specific.
"""

from __future__ import annotations

import argparse
import os

from fortifai_bench.errors import FortifaiError


def wanted(args: argparse.Namespace) -> bool:
    """Whether this command should start the processes itself (``--nproc N`` outside torchrun)."""
    nproc = getattr(args, "nproc", None)
    if nproc is None:
        return False
    if nproc < 1:
        raise FortifaiError(f"--nproc must be >= 1, got {nproc}")
    if "WORLD_SIZE" in os.environ:
        raise FortifaiError("--nproc starts torchrun itself; under torchrun, leave --nproc out")
    return nproc > 1


def forwarded(parser: argparse.ArgumentParser, args: argparse.Namespace, drop: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The command line that gives `args` again (every option that differs from its default), less `drop`."""
    out: list[str] = []
    for action in parser._actions:  # argparse's own record of the options it defined
        if not action.option_strings or action.dest in drop or action.dest == "help":
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse._StoreTrueAction):
            out.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m fortifai_bench.collapse ARGV`` in `nproc` processes on this machine; 0 or an error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    config = get_args_parser().parse_args(["--standalone", "--nproc_per_node", str(nproc),
                                           "-m", "fortifai_bench.collapse", *argv])
    try:
        run(config)
    except ChildFailedError as exc:
        raise FortifaiError(f"{len(exc.failures)} of the {nproc} processes stopped with an error "
                            "(rank 0's message is above)") from exc
    return 0
