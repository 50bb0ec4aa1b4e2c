"""Algorithm 1 of the ForTIFAI paper: which data trains each stage, and what each stage measures.

The real corpus is cut into N+1 splits D_0..D_N. D_k^(g) is split k after g regenerations. For
stage i = 0..N: train M_i (continuing from M_{i-1}; M_{-1} is the base M_0 spec) on the stage's
training data, then let M_i regenerate every split that the next stage trains on, and evaluate M_i.

Modes (what stage i trains on):

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
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.errors import FortifaiError


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


def schedule(stages: int, mode: str) -> list[dict]:
    """Per stage: the (split, generation) pairs it trains on and the splits it regenerates afterwards."""
    plan = []
    for i in range(stages):
        train_on = pool(i, mode)
        plan.append({"stage": i, "train": train_on, "regenerate": [k for k, _ in train_on]})
    return plan


def split_share(task: CollapseTask, stage: int, split_sizes: list[int]) -> float:
    """One split's paragraphs over the pool that stage `stage` trains on (its splits, or `subsample`
    paragraphs of them), given each split's paragraph count: what ``budget: steps`` scales the epochs by
    (`CollapseTask.stage_train`). The run, its plan and its compute estimate all ask this."""
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


def format_plan(task: CollapseTask, *, compute: bool = True, devices: int = 1, params: float | None = None,
                device_tflops: float | None = None) -> str:
    """The schedule as text (`fortifai-bench collapse --plan`), then a compute estimate (`collapse.compute`)
    when the corpus can be read here; no model weights are loaded."""
    lines = [f"{task.task} v{task.version}: {task.stages} stages, mode {task.mode}, corpus {task.corpus}"
             f" ({task.corpus_part}), model {task.model.name}"]
    per = task.paragraphs_per_split
    t = task.train
    chunks = t.micro_chunks(devices)
    scaled = " (one split; scaled to the pool: budget steps)" if task.budget == "steps" else ""
    lines.append(f"splits: {task.stages} x {per if per else '(corpus cut evenly)'} paragraphs; "
                 f"train {t.epochs} epochs{scaled}, lr {t.lr:g}, batch {t.batch_size * t.grad_accum} blocks of "
                 f"{t.block_size} "
                 f"tokens per step ({devices} device{'s' if devices > 1 else ''} x "
                 f"{chunks * t.grad_accum} pass{'es' if chunks * t.grad_accum > 1 else ''} of "
                 f"{-(-t.batch_size // devices // chunks)} blocks)")
    r = task.regenerate
    dec = {"beam": f"beam {r.num_beams}, repetition penalty {r.repetition_penalty:g}",
           "greedy": "greedy (argmax)",
           "sample": f"sampling, temperature {r.temperature:g}, top-p {r.top_p:g}"}[r.decoding]
    lines.append(f"regenerate: {r.mode} blocks of {r.block} tokens, context {r.context}, prompt {r.prompt}, {dec}")
    for row in schedule(task.stages, task.mode):
        parts = [f"D_{k}^({g})" for k, g in row["train"]]
        real = sum(1 for _, g in row["train"] if g == 0) / len(row["train"])
        size = ""
        if task.mode == "accumulate-subsample":
            n = task.subsample or per
            size = f" -> subsample {n} paragraphs" if n else " -> subsample one split's worth"
        regen = ", ".join(f"D_{k}^({g + 1})" for k, g in row["train"])
        epochs = task.stage_train(0, share=split_share(task, row["stage"], [per or 1] * task.stages)).epochs
        lines.append(f"stage {row['stage']}: train M_{row['stage']} on [{', '.join(parts)}]{size} "
                     f"(real {real:.0%}, {epochs} epochs); then regenerate {regen}; evaluate KR on splits "
                     f"0..{task.stages - 1}")
    if compute:
        from fortifai_bench.collapse.compute import estimate, format_estimate

        try:
            est = estimate(task, params)
        except FortifaiError as exc:  # the schedule stands without the corpus; say why the rest is missing
            lines.append(f"compute: not estimated here ({exc})")
        else:
            lines += format_estimate(est, devices, device_tflops)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- data

@dataclass
class Data:
    """The protocol's real data: splits of paragraphs, held-out texts, and KR questions per split."""

    splits: list[list]                 # list of lists of corpora.Paragraph
    heldout: list[str]
    questions: list                    # kr.Question, each with .split set to the protocol's split
    kr_source: str | None


def load_data(task: CollapseTask) -> Data:
    from fortifai_bench.corpora import get_corpus

    corpus = get_corpus(task.corpus, part=task.corpus_part)
    n, per = task.stages, task.paragraphs_per_split
    need = n * per if per else n
    if len(corpus) < need:
        what = f"the {need} that {n} stages x {per} paragraphs per split need" if per else f"the {n} stages"
        raise FortifaiError(f"corpus {task.corpus} ({task.corpus_part}) has {len(corpus)} paragraphs, "
                            f"fewer than {what} (one split per stage)")
    from fortifai_bench.kr.sets import cut

    # One place cuts a corpus into splits (kr.sets.cut): the protocol, every lm-eval KR task and `kr build`.
    reserve = 0 if per or task.eval.heldout_part is not None else task.eval.heldout_paragraphs
    bounds = cut(corpus, n, per, reserve).split_bounds(n)
    splits = [list(corpus.paragraphs[a:b]) for a, b in bounds]
    heldout = _heldout(task, corpus, bounds[-1][1])
    questions, source = _questions(task, bounds, reserve)
    return Data(splits, heldout, questions, source)


def _heldout(task: CollapseTask, corpus, used: int) -> list[str]:
    from fortifai_bench.corpora import get_corpus

    k = task.eval.heldout_paragraphs
    if k == 0:
        return []
    if task.eval.heldout_part is None:
        texts = corpus.texts()[used : used + k]
        if len(texts) < k:
            raise FortifaiError(f"eval.heldout_paragraphs={k}: corpus {task.corpus} ({task.corpus_part}) has only "
                                f"{len(corpus) - used} paragraphs after the splits; set eval.heldout_part")
        return texts
    part = get_corpus(task.corpus, part=task.eval.heldout_part)
    if len(part) < k:
        raise FortifaiError(f"eval.heldout_paragraphs={k} but {task.corpus} part {task.eval.heldout_part} has "
                            f"{len(part)} paragraphs")
    pre = task.model.pretrain
    if task.model.name == "tiny" and pre and pre.corpus == task.corpus and pre.part == task.eval.heldout_part:
        n_pre = len(part) if pre.paragraphs is None else pre.paragraphs
        if n_pre + k > len(part):
            raise FortifaiError(f"held-out text overlaps the pretraining text: model.pretrain.paragraphs={n_pre} + "
                                f"eval.heldout_paragraphs={k} > {len(part)} paragraphs in part {pre.part}")
    return part.texts()[len(part) - k:]


def _questions(task: CollapseTask, bounds, reserve: int = 0):
    """KR questions mapped onto the protocol's splits by paragraph index; others are dropped. `kr: auto`
    asks the one KR-set resolver (`kr.sets.kr_set`: the corpus's shipped set, or one built once with its
    generator and cached), so every corpus has a set; a path is read as given."""
    from fortifai_bench.kr import read_questions
    from pathlib import Path

    kr = task.eval.kr
    if kr is None:
        return [], None
    if kr == "auto":
        from fortifai_bench.kr.sets import kr_set

        found = kr_set(task.corpus, task.corpus_part, task.stages, paragraphs_per_split=task.paragraphs_per_split,
                       reserve=reserve)
        if [tuple(b) for b in found.bounds] != [tuple(b) for b in bounds]:
            raise FortifaiError(f"KR set of {task.corpus}: cut {found.bounds} differs from the protocol's {bounds}")
        return found.questions, found.provenance["file"]
    path = Path(kr).expanduser()
    if not path.is_file():
        raise FortifaiError(f"eval.kr: KR question file {path} not found")
    split_of = {}
    for k, (a, b) in enumerate(bounds):
        split_of.update({p: k for p in range(a, b)})
    kept = []
    for q in read_questions(path):
        if q.paragraph in split_of:
            q.split = split_of[q.paragraph]
            kept.append(q)
    if not kept:
        raise FortifaiError(f"{path}: no question is about a paragraph of the {len(bounds)} splits "
                            f"(paragraphs {bounds[0][0]}..{bounds[-1][1] - 1})")
    return kept, str(path)


def real_share(train_on: list[tuple[int, int]]) -> float:
    return sum(1 for _, g in train_on if g == 0) / max(1, len(train_on))


def isfinite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))
