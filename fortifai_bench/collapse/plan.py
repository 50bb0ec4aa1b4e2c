"""Algorithm 1's schedule as data: what every stage trains on, regenerates and is evaluated on, computed once.

The real corpus is cut into N+1 splits D_0..D_N. D_k^(g) is split k after g regenerations. For
stage i = 0..N: train M_i (continuing from M_{i-1}; M_{-1} is the base M_0 spec) on the stage's
pool, then let M_i regenerate every split of that pool, and evaluate M_i on every split's questions.

Modes (what stage i trains on, `pool`):

* ``accumulate`` (the paper): ``[D_0^(i), D_1^(i-1), ..., D_i^(0)]`` -- every split seen so far, each
  as last regenerated, plus the fresh real split D_i. The real share falls 1, 1/2, 1/3, ...
* ``replace`` (Shumailov et al. 2024; Gerstgrasser et al. 2024's "replace"): ``[D_0^(i)]`` -- only
  the previous model's rewrite of split 0; no fresh real data after stage 0. Splits 1..N are never
  trained on; their KR stays at the untrained level and is still reported.
* ``accumulate-subsample`` (Kazdan, Schaeffer et al. 2024): the accumulate pool, subsampled (seeded,
  per stage, without replacement) to a fixed `subsample` paragraphs (default: one split's worth),
  so the training set does not grow while its real share falls.
* ``clean`` (the control, `fortifai-bench collapse --control`): the accumulate schedule, model and
  training, but every split stays real: ``[D_0^(0), ..., D_i^(0)]``. It still regenerates (so its KL
  shows what a model that never saw its own text writes) but never trains on the rewrite. Any fall
  of its KR-split-0 is forgetting or noise, not collapse: the ceiling row of a board.

A split is regenerated at stage i if it is in the stage's pool (for replace: split 0), so the last
stage regenerates too: its KL, distinct-n and confidence are measured like every other stage's.

`plan(task, split_sizes)` turns a task and its splits' sizes into one `StagePlan` per stage: the pool,
the paragraphs taken from each of its splits, the trainer's config (its seed, and its epochs, which
``budget: steps`` scales to the pool), every phase's seed, the splits seen so far, and the stage's folder
and the model it continues from in the run directory (the rest of the format: `collapse.rundir`). The
runner, `--plan`, the compute estimate and the evaluation read it; none of them derives a pool again.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.train.config import TrainConfig


@dataclass(frozen=True)
class StagePlan:
    """Everything stage `stage` does, fixed before it runs. Paths are relative to the run directory."""

    stage: int
    pool: tuple[tuple[int, int], ...]          # the (split, generation) pairs M_i trains on
    paragraphs: tuple[tuple[int, ...], ...]    # per pool entry: the paragraph indices of its split trained on
    train: TrainConfig                         # the trainer's config: the task's, with the stage's seed and
                                               # epochs (scaled to the pool under budget: steps)
    subsample_seed: int | None                 # accumulate-subsample: the seed that picked `paragraphs`
    regenerate_seeds: tuple[int, ...]          # per pool entry: the seed of its split's rewrite
    seen: tuple[int, ...]                      # splits trained on by stages 0..i (KR-seen)
    splits: int                                # KR is evaluated on splits 0..splits-1

    @property
    def epochs(self) -> int:
        return self.train.epochs

    def regenerate_seed(self, k: int) -> int:
        """The seed of M_i's rewrite of split k."""
        return self.regenerate_seeds[self.regenerate.index(k)]

    @property
    def regenerate(self) -> tuple[int, ...]:
        """The splits M_i rewrites: every split of its pool, each into its next generation."""
        return tuple(k for k, _ in self.pool)

    @property
    def real_share(self) -> float:
        """The share of the pool's splits that are real text (generation 0)."""
        return real_share(self.pool)

    @property
    def size(self) -> int:
        """Paragraphs trained on."""
        return sum(map(len, self.paragraphs))

    @property
    def folder(self) -> str:
        return f"stage_{self.stage}"

    @property
    def previous_model(self) -> str | None:
        """The model M_i continues from: M_{i-1}'s directory, or None for the base model."""
        return None if self.stage == 0 else f"stage_{self.stage - 1}/model"

    def record(self) -> list[dict]:
        """What M_i trains on, as train.json and metrics.json record it."""
        return [{"split": k, "generation": g, "paragraphs": len(chosen)}
                for (k, g), chosen in zip(self.pool, self.paragraphs)]


def plan(task: CollapseTask, split_sizes: list[int]) -> list[StagePlan]:
    """One StagePlan per stage of `task`, given each split's paragraph count."""
    seen: set[int] = set()
    out = []
    for i in range(task.stages):
        train_on = pool(i, task.mode)
        seen.update(k for k, _ in train_on)
        chosen = {k: list(range(split_sizes[k])) for k, _ in train_on}
        sub_seed = None
        if task.mode == "accumulate-subsample":
            sub_seed = stage_seed(task.seed, i, "subsample")
            chosen = subsample({k: len(v) for k, v in chosen.items()}, task.subsample or split_sizes[0], sub_seed)
        out.append(StagePlan(
            stage=i, pool=tuple(train_on), paragraphs=tuple(tuple(chosen[k]) for k, _ in train_on),
            train=task.stage_train(seed=stage_seed(task.seed, i, "train"), share=split_share(task, i, split_sizes)),
            subsample_seed=sub_seed,
            regenerate_seeds=tuple(stage_seed(task.seed, i, "regenerate", k) for k, _ in train_on),
            seen=tuple(sorted(seen)), splits=task.stages))
    return out


def stage_seed(seed: int, stage: int, what: str, k: int = 0) -> int:
    """An independent, reproducible seed for one piece of one stage (training, regenerating split k, ...)."""
    digest = hashlib.sha256(f"{seed}/{stage}/{what}/{k}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def pool(stage: int, mode: str) -> list[tuple[int, int]]:
    """(split, generation) pairs available to train stage `stage`."""
    if mode == "replace":
        return [(0, stage)]
    if mode == "clean":  # the control: the accumulate schedule with every split kept real
        return [(k, 0) for k in range(stage + 1)]
    return [(k, stage - k) for k in range(stage + 1)]


def split_share(task: CollapseTask, stage: int, split_sizes: list[int]) -> float:
    """One split's paragraphs over the pool that stage `stage` trains on (its splits, or `subsample`
    paragraphs of them), given each split's paragraph count: what ``budget: steps`` scales the epochs by
    (`CollapseTask.stage_train`)."""
    pool_size = sum(split_sizes[k] for k, _ in pool(stage, task.mode))
    if task.mode == "accumulate-subsample":
        pool_size = min(task.subsample or split_sizes[0], pool_size)
    return split_sizes[0] / max(1, pool_size)


def subsample(counts: dict[int, int], size: int, seed: int) -> dict[int, list[int]]:
    """Which paragraph indices of each split to train on when the pool is cut to `size` paragraphs."""
    items = [(k, j) for k in sorted(counts) for j in range(counts[k])]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(items, min(size, len(items))))
    out: dict[int, list[int]] = {k: [] for k in counts}
    for k, j in chosen:
        out[k].append(j)
    return out


def real_share(train_on) -> float:
    return sum(1 for _, g in train_on if g == 0) / max(1, len(train_on))
