"""The processes of one run under `torchrun`, and the few collective operations the project needs.

``torchrun --nproc_per_node N`` (or several nodes through its rendezvous flags) starts N copies of a
command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. `Dist.start` joins them into one process
group (gloo on CPU, nccl on CUDA, each process on its own GPU ``cuda:LOCAL_RANK``); a plain
``python`` process is the world of one, so every caller has one code path. The operations:

* `sum`: numbers added over processes (the trainer's logged statistics, validation loss terms);
* `map_sharded`: a function run on this process's strided share of a list, every result back in the
  list's order on every process (regeneration, KR scoring, stage evaluation); `shard` / `unshard`, the
  two halves of it (the trainer shards its batches' indices);
* `broadcast`, `on_main`: rank 0 alone does something (writes a file, reads the run directory) and
  every process gets its result, or the same one-line error, so no process waits for a peer that died;
* `agree`: an error seen by some processes (a NaN loss in one shard) stops all of them together.

We use torch.distributed directly rather than `accelerate`: the loops already own what Accelerator adds
(autocast, accumulation, clipping), and its prepared data loader reshards the sample order, which would
break the exact agreement with the single-process order that the trainer's tests rely on.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import os
from typing import Any, Callable, Sequence

import torch

from fortifai_bench.errors import FortifaiError

# Rank-0-only phases (saving a 1B model, lm-eval) can keep the other processes waiting in a collective
# for longer than torch's default timeout (10 min for nccl); a run is killed by torchrun on a real failure.
TIMEOUT = datetime.timedelta(minutes=float(os.environ.get("FORTIFAI_DIST_TIMEOUT_MIN", "180")))

_solo_depth = 0


@contextlib.contextmanager
def solo():
    """Inside, `Dist.start` returns a world of one: rank 0 does a piece of work alone (building the cached
    tiny base model) while the other processes wait in `on_main`."""
    global _solo_depth
    _solo_depth += 1
    try:
        yield
    finally:
        _solo_depth -= 1


def env_world() -> tuple[int, int, int]:
    """(world size, rank, local rank) as torchrun set them; (1, 0, 0) in a plain process."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def is_main() -> bool:
    return env_world()[1] == 0


def _destroy_group() -> None:
    """At exit, the process group we set up goes, once every DDP wrapper that holds it has gone first: a DDP
    reducer freed after `destroy_process_group` destroys the gloo group while holding the GIL and waits for a
    gloo thread that needs the GIL (seen: a process left hanging at exit). Nor is the group torn down and set up
    again between runs: after a destroy, the second `init_process_group` under torchrun left both ranks waiting
    in their first broadcast (seen under parallel tests)."""
    gc.collect()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class Dist:
    """Who we are, and collectives that are no-ops in a world of one. The process group, once set up, lives
    as long as the process (see `_destroy_group`)."""

    def __init__(self, world: int, rank: int, device: torch.device):
        self.world, self.rank, self.device = world, rank, device

    @classmethod
    def start(cls, device_pref: str = "auto", single: bool = False) -> "Dist":
        world, rank, local_rank = env_world()
        if single or _solo_depth:
            world, rank = 1, 0
        if device_pref == "auto":
            device_pref = "cuda" if torch.cuda.is_available() else "cpu"
        if device_pref == "cuda" and world > 1:
            device_pref = f"cuda:{local_rank}"
        device = torch.device(device_pref)
        if world > 1 and not torch.distributed.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
            atexit.register(_destroy_group)
        return cls(world, rank, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------------------------- numbers

    def sum(self, values: list[float]) -> list[float]:
        """Numbers added over processes (float64, on this process's device)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    # ---------------------------------------------------------------------------------- work sharing

    def shard(self, items):
        """This process's strided share: items rank, rank + world, ... (a list or a tensor)."""
        return items[self.rank :: self.world]

    def gather(self, obj: Any) -> list:
        """Every process's `obj`, in rank order, on every process."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def unshard(self, mine: Sequence) -> list:
        """The inverse of `shard`: every process's results (in the order of its share) back in the order of
        the whole list, on every process."""
        parts = self.gather(list(mine))
        out: list = [None] * sum(len(p) for p in parts)
        for rank, part in enumerate(parts):
            out[rank :: self.world] = part
        return out

    def map_sharded(self, fn: Callable[[list], Sequence], items: Sequence, order: Sequence[int] | None = None) -> list:
        """`fn` run on this process's strided share of `items` (it returns one result per item of the share),
        and every item's result back in the order of `items`, on every process. `order`: the positions to
        deal out, in the order they are dealt (sorted by length, every process gets a similar amount of
        work); default: as they come. A process whose share is empty does not call `fn`."""
        positions = list(range(len(items))) if order is None else list(order)
        mine = self.shard(positions)
        done = self.unshard(fn([items[j] for j in mine]) if mine else [])
        out: list = [None] * len(items)
        for j, result in zip(positions, done):
            out[j] = result
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process."""
        if self.world == 1:
            return obj
        box = [obj if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """`fn` run by rank 0 alone; its result on every process. If it raises, rank 0 raises it and every
        other process raises a FortifaiError with the same message (instead of waiting forever)."""
        if self.world == 1:
            return fn(*args, **kwargs)
        error: BaseException | None = None
        result = None
        if self.main:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the others
                error = exc
        kind, value = self.broadcast(("ok", result) if error is None else ("error", _one_line(error)))
        if error is not None:
            raise error
        if kind == "error":
            raise FortifaiError(value)
        return value

    def agree(self, error: str | None) -> str | None:
        """Some processes may have an error message; every process returns the first one (by rank), or None."""
        if self.world == 1:
            return error
        flag = torch.tensor([0 if error is None else 1], device=self.device)
        torch.distributed.all_reduce(flag)
        if not flag.item():
            return None
        return next(e for e in self.gather(error) if e is not None)


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, FortifaiError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__
