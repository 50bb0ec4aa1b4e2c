"""The collapse protocol's real data (`load_data`: splits, held-out text, KR questions per split) and its
schedule as text (`format_plan`, `fortifai-bench collapse --plan`).

What each stage trains on, regenerates and is evaluated on is `collapse.plan` (the modes are described
there); this module reads the corpus and KR set that the plan is made for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from fortifai_bench.collapse.compute import estimate, format_estimate, recorded_data, recorded_note
from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.collapse.plan import StagePlan, plan
from fortifai_bench.corpora import get_corpus
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.schema import read_questions
from fortifai_bench.kr.sets import cut, kr_set, on_splits


def format_plan(task: CollapseTask, *, compute: bool = True, devices: int = 1, params: float | None = None,
                device_tflops: float | None = None, masks: bool = True) -> str:
    """The schedule as text (`fortifai-bench collapse --plan`), then a compute estimate (`collapse.compute`;
    `masks`: for a loss whose mask is measured) when the corpus can be read here; no model weights are loaded.
    The epochs shown are those of the real split sizes when the corpus can be read (else every split is taken
    to hold `paragraphs_per_split`)."""
    data, missing, notes = plan_data(task)
    sizes = [len(s) for s in data.splits] if data is not None else [task.paragraphs_per_split or 1] * task.stages
    stages = plan(task, sizes)
    lines = _header(task, devices) + [_stage_line(task, p) for p in stages]
    if compute:
        try:
            if data is None:
                raise missing
            est = estimate(task, stages, data, params, notes, measure=device_tflops is None, masks=masks)
        except FortifaiError as exc:  # the schedule stands without the corpus; say why the rest is missing
            lines.append(f"compute: not estimated here ({exc})")
        else:
            lines += format_estimate(est, devices, device_tflops)
    return "\n".join(lines)


def plan_data(task: CollapseTask) -> tuple["Data | None", FortifaiError | None, list[str]]:
    """The task's data for --plan: without the KR set when only that fails (a note says why); when the
    corpus cannot be read here, its recorded size (`compute.recorded_data`) with a note; else None and the
    error."""
    try:
        return load_data(task), None, []
    except FortifaiError as exc:
        if task.eval.kr is None:
            recorded = recorded_data(task)
            return (recorded, None, [recorded_note(task)]) if recorded is not None else (None, exc, [])
        note = f"KR scoring not counted: {exc}"
    try:
        return load_data(dataclasses.replace(task, eval=dataclasses.replace(task.eval, kr=None))), None, [note]
    except FortifaiError as exc:
        recorded = recorded_data(task)
        return (recorded, None, [recorded_note(task)]) if recorded is not None else (None, exc, [])


def _header(task: CollapseTask, devices: int) -> list[str]:
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
    return lines


def _stage_line(task: CollapseTask, p: StagePlan) -> str:
    parts = [f"D_{k}^({g})" for k, g in p.pool]
    size = ""
    if task.mode == "accumulate-subsample":
        n = task.subsample or task.paragraphs_per_split
        size = f" -> subsample {n} paragraphs" if n else " -> subsample one split's worth"
    regen = ", ".join(f"D_{k}^({g + 1})" for k, g in p.pool)
    scored = "split 0" if task.eval.kr_splits == "first" else f"splits 0..{p.splits - 1}"
    return (f"stage {p.stage}: train M_{p.stage} on [{', '.join(parts)}]{size} "
            f"(real {p.real_share:.0%}, {p.epochs} epochs); then regenerate {regen}; evaluate KR on {scored}")


# ---------------------------------------------------------------------------------------------- data

@dataclass
class Data:
    """The protocol's real data: splits of paragraphs, held-out texts, and KR questions per split."""

    splits: list[list]                 # list of lists of corpora.Paragraph
    heldout: list[str]
    questions: list                    # kr.Question, each with .split set to the protocol's split
    kr_source: str | None


def load_data(task: CollapseTask) -> Data:
    corpus = get_corpus(task.corpus, part=task.corpus_part)
    n, per = task.stages, task.paragraphs_per_split
    need = n * per if per else n
    if len(corpus) < need:
        what = f"the {need} that {n} stages x {per} paragraphs per split need" if per else f"the {n} stages"
        raise FortifaiError(f"corpus {task.corpus} ({task.corpus_part}) has {len(corpus)} paragraphs, "
                            f"fewer than {what} (one split per stage)")

    # One place cuts a corpus into splits (kr.sets.cut): the protocol, every lm-eval KR task and `kr build`.
    reserve = 0 if per or task.eval.heldout_part is not None else task.eval.heldout_paragraphs
    bounds = cut(corpus, n, per, reserve).split_bounds(n)
    splits = [list(corpus.paragraphs[a:b]) for a, b in bounds]
    heldout = _heldout(task, corpus, bounds[-1][1])
    questions, source = _questions(task, bounds, reserve)
    return Data(splits, heldout, questions, source)


def _heldout(task: CollapseTask, corpus, used: int) -> list[str]:
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
    kr = task.eval.kr
    if kr is None:
        return [], None
    if kr == "auto":
        found = kr_set(task.corpus, task.corpus_part, task.stages, paragraphs_per_split=task.paragraphs_per_split,
                       reserve=reserve)
        if [tuple(b) for b in found.bounds] != [tuple(b) for b in bounds]:
            raise FortifaiError(f"KR set of {task.corpus}: cut {found.bounds} differs from the protocol's {bounds}")
        return found.questions, found.provenance["file"]
    path = Path(kr).expanduser()
    if not path.is_file():
        raise FortifaiError(f"eval.kr: KR question file {path} not found")

    kept = on_splits(read_questions(path), bounds)
    if not kept:
        raise FortifaiError(f"{path}: no question is about a paragraph of the {len(bounds)} splits "
                            f"(paragraphs {bounds[0][0]}..{bounds[-1][1] - 1})")
    return kept, str(path)
