"""The lm-eval side of the KR tasks (kr_facts, kr_wikitext, kr_imagination, kr_file): questions, metrics, provenance.

Every KR subtask YAML says `class: !function utils.KRTask` (tasks/kr/_kr_base.yaml). lm-eval builds it with
its config; `KRTask.download` asks for the questions with the task's metadata: the YAML's, merged with
`--metadata '{...}'` and the model arguments (`pretrained=...`), so unknown keys are ignored here, plus the
subtask's `dataset_kwargs` (`kr_source`, `kr_split`).

- `kr_facts`: the shipped set of the facts corpus; `kr_wikitext`, `kr_imagination`: rules-generated sets,
  built once and cached. All three come from the one resolver, `fortifai_bench.kr.sets.kr_set`.
  Metadata: `data_dir` (else `FORTIFAI_DATA_DIR`, else the Hugging Face Hub), `part`.
- `kr_file`: any question file, in the package's JSONL or the authors' JSON list,
  `--metadata '{"path": FILE}'`: one task, or a group of one subtask per split when the file has splits; or
  a collapse run's own questions on its own cut, `--metadata '{"run": RUN}'` (`kr.lm_eval_runs`).

Results carry, per subtask, `configs[<task>]["metadata"]["kr_provenance"]`: where the questions come from
(file and sha256, or corpus, part, data folder and cache file), generator, number of questions, the set's
length bias in characters and, when the model's tokenizer loads, in its tokens. Metrics per subtask (and
size-weighted in the groups): `acc`, `acc_norm`, `acc_mutual_info` (calibrated: each choice's log-likelihood
minus its log-likelihood without the context), `true_longer` (share of items whose true continuation has more
characters) and `chance_shorter` (the accuracy of always picking the shorter continuation: where `acc` of a
model that knows nothing tends to sit on a length-biased set).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from fortifai_bench import __version__
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.lm_eval_runs import for_subtask, run_kr
from fortifai_bench.kr.quality import length_bias
from fortifai_bench.kr.schema import find_duplicates, read_questions
from fortifai_bench.kr.sets import file_provenance, kr_set

log = logging.getLogger(__name__)

N_SPLITS = 6  # the collapse protocol's N+1 splits (stages: 6); subtasks kr_*_split0..5
WIKITEXT = "wikitext-2-raw-v1"
IMAGINATION = "imagination-of-web"
SOURCES = ("facts", "wikitext", "imagination", "file")
CORPUS_OF = {"facts": "facts", "wikitext": WIKITEXT, "imagination": IMAGINATION}
METRICS = ("acc", "acc_norm", "acc_mutual_info", "true_longer", "chance_shorter")


def questions_for(source: str, *, data_dir=None, part=None) -> list:
    """All questions of a named KR task source (facts, wikitext, imagination), splits as in its subtasks."""
    return load_kr(source, data_dir=data_dir, part=part)[0]


def wikitext_questions(data_dir=None, part=None, n_splits: int = N_SPLITS) -> list:
    """The rules-generated KR questions of WikiText-2 (kr_wikitext's set)."""
    return kr_set(WIKITEXT, part, n_splits, data_dir=data_dir).questions


def load_kr(kr_source: str = "facts", kr_split: int | None = None, data_dir=None, part=None, path=None,
            tokenizer=None, duplicates: str = "once", run=None, **_metadata) -> tuple[list, dict]:
    """(questions of one split, or all when kr_split is None; provenance) for a KR task source.
    `duplicates` (kr_file): "once" scores every distinct question once, "as_in_file" every item of the file.
    `run` (kr_file): a collapse run's folder, whose questions are scored as the run scored them."""
    if kr_source == "file":
        questions, provenance = _file_questions(path, duplicates, run)
    elif kr_source in CORPUS_OF:
        kr = kr_set(CORPUS_OF[kr_source], part or None, N_SPLITS, data_dir=data_dir)
        questions, provenance = kr.questions, kr.provenance
    else:
        raise FortifaiError(f"unknown KR task source {kr_source!r}; known: {', '.join(SOURCES)}")
    if tokenizer is not None:  # the whole set's bias in the model's tokens (each subtask reports its own in chars)
        provenance = {**provenance, "length_bias": _token_bias(provenance["sha256"], tokenizer, tuple(questions))}
    if kr_split is not None:
        questions = [q for q in questions if q.split == int(kr_split)]
        provenance = {**provenance, "split": int(kr_split), "split_questions": len(questions)}
    if not questions:
        raise FortifaiError(f"kr_{kr_source}: no questions in split {kr_split}")
    return questions, provenance


_TOKEN_BIAS: dict = {}


def _token_bias(sha256: str, tokenizer, questions: tuple) -> dict:
    """length_bias with tokens, once per (set, tokenizer) and process: six subtasks share one set."""
    key = (sha256, getattr(tokenizer, "name_or_path", id(tokenizer)), len(questions))
    if key not in _TOKEN_BIAS:
        _TOKEN_BIAS[key] = length_bias(questions, tokenizer)
    return _TOKEN_BIAS[key]


FILE_DUPLICATES = ("once", "as_in_file")


def _file_questions(path, duplicates: str = "once", run=None) -> tuple[list, dict]:
    if run and path:
        raise FortifaiError("kr_file: give --metadata path (a question file) or run (a collapse run), not both")
    if run:  # every item as the run scored it, on its cut
        questions, record = run_kr(str(run))
        provenance = {**file_provenance(record["kr_file"], questions), "run": record, "weighting": "as_in_run"}
        return [q.__class__(**q.to_dict()) for q in questions], provenance
    if not path:
        raise FortifaiError("kr_file needs the question file, --metadata '{\"path\": \"my_kr.jsonl\"}', or a "
                            "collapse run, --metadata '{\"run\": \"RUN\"}'")
    if duplicates not in FILE_DUPLICATES:
        raise FortifaiError(f"kr_file: --metadata duplicates must be one of {', '.join(FILE_DUPLICATES)} "
                            f"(once: each distinct question once; as_in_file: every item, the authors' weighting), "
                            f"got {duplicates!r}")
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise FortifaiError(f"kr_file: question file {path} not found")
    questions, provenance = _read_file(str(path.resolve()), path.stat().st_mtime_ns, duplicates)
    return [q.__class__(**q.to_dict()) for q in questions], dict(provenance)


@functools.lru_cache(maxsize=8)
def _read_file(path: str, _mtime_ns: int, duplicates: str) -> tuple:
    """A file's questions as scored, and their provenance: the file's duplicate report (`duplicates`: items,
    distinct questions, the repeated ones and their share) and which weighting was scored. Any readable file
    with scorable questions runs: the project's quality rules (`kr stats`) describe it, they drop nothing."""
    items = read_questions(path, duplicates="as_in_file")
    distinct, report = find_duplicates(items)
    questions = distinct if duplicates == "once" else items
    if report.copies:
        log.warning("kr_file %s: %s; scoring %s", path, report.format(),
                    "each distinct question once (--metadata duplicates=as_in_file: every item, the authors' "
                    "weighting)" if duplicates == "once" else "every item as in the file (duplicates=as_in_file)")
    provenance = {**file_provenance(path, questions), "duplicates": report.to_dict(), "weighting": duplicates,
                  "items_in_file": report.items}
    return tuple(questions), provenance


def kr_dataset(kr_source: str = "facts", kr_split: int | None = None, **metadata):
    """{"test": Dataset} of one split's lm-eval documents (what KRTask.download loads)."""
    import datasets

    questions, _ = load_kr(kr_source, kr_split, **metadata)
    return {"test": datasets.Dataset.from_list(to_docs(questions))}


def to_docs(questions) -> list[dict]:
    """lm-eval documents: `context` is the prompt, `choices` = [true, false], the target is index 0."""
    return [{"id": q.id, "split": q.split, "context": q.context, "choices": [q.true, q.false]} for q in questions]


def process_results(doc, results) -> dict:
    """Per-document metrics (see the module docstring). `results`: (log-likelihood, is_greedy) of the two
    choices after the context, then of the two without it (lm-eval adds those for acc_mutual_info)."""
    lls = [ll for ll, _ in results]
    true, false = doc["choices"]
    cond = lls[:2]
    # `>=`: lm-eval's argmax gives ties to the first choice, the true one; the same numbers as its own acc.
    out = {"acc": float(cond[0] >= cond[1]),
           "acc_norm": float(cond[0] / max(1, len(true)) >= cond[1] / max(1, len(false))),
           "true_longer": float(len(true) > len(false)),
           "chance_shorter": 1.0 if len(true) < len(false) else 0.5 if len(true) == len(false) else 0.0}
    if len(lls) == 4:
        out["acc_mutual_info"] = float(cond[0] - lls[2] >= cond[1] - lls[3])
    return out


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str):
    """The model's tokenizer for the token-level length bias, or None when it does not load (the bias in
    characters is still recorded)."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # a Hub name offline, a custom model: token counts are a bonus, not a need
        log.info("KR provenance: no tokenizer from %s (%s); length bias in characters only", name, exc)
        return None


def _model_tokenizer(metadata: dict):
    name = metadata.get("tokenizer") or metadata.get("pretrained")
    return _tokenizer(name) if isinstance(name, str) and name else None


# ------------------------------------------------------------------------------------------ few-shot pool
#
# `--num_fewshot K` draws K solved questions into every prompt. Drawn from the scored split itself, a shot can
# hold the very fact it asks (a question of the same paragraph, or the same text cut at another place: 11 of
# 100 prompts of kr_facts_split0 at K=3). Every KR task therefore names `fewshot_split: fewshot` (_kr_base.yaml),
# a pool that shares no fact with any KR set: the facts corpus's `pretrain` part, whose entities are disjoint
# from the main part's by construction, and fictional, so in no WikiText or user file.

FEWSHOT_PARAGRAPHS = 40  # paragraphs of facts:pretrain whose questions form the pool (525 questions)


@functools.lru_cache(maxsize=1)
def fewshot_pool() -> tuple:
    """The few-shot pool's questions (built once by the one KR-set resolver and cached like any KR set)."""
    return tuple(kr_set("facts", "pretrain", 1, paragraphs_per_split=FEWSHOT_PARAGRAPHS).questions)


# ---------------------------------------------------------------------------------- lm-eval's logits cache


def logits_cache_victims(pairs, tokenizer) -> list[int]:
    """Indices of the (context, continuation) requests whose log-likelihood lm-eval's HFLM reads from the wrong
    positions under `logits_cache=True`, its default, for a model with this tokenizer (lm-eval 0.4.13).

    HFLM._loglikelihood_tokens groups requests whose context + continuation[:-1] tokens are the same (Collator
    group_by="contexts"), runs the member with the longest continuation, and scores every member with
    `torch.gather(logits, 2, cont_toks)` on that member's continuation logits: the first len(cont) positions,
    where a member with a shorter continuation needs the last ones. Members as long as the longest are right
    (the two choices of one question that differ in their last token: what the cache is for); a shorter one
    is wrong. In a KR set that is a question whose context + continuation is another's cut at a later place
    (nested questions on one sentence). Tokenized as lm-eval does: its own `TemplateLM._encode_pair`."""
    from types import SimpleNamespace

    from lm_eval.api.model import TemplateLM

    def encode(text, add_special_tokens=None):
        return tokenizer.encode(text) if add_special_tokens is None else tokenizer.encode(
            text, add_special_tokens=add_special_tokens)

    shim = SimpleNamespace(backend="causal", tok_encode=encode)
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for i, (context, continuation) in enumerate(pairs):
        if context == "":  # HFLM.loglikelihood: the prefix token stands for an empty context
            cont = encode(continuation, add_special_tokens=False)
            ctx, cont = ([prefix], cont) if prefix != cont[0] else (cont[:1], cont[1:])
        else:
            ctx, cont = TemplateLM._encode_pair(shim, context, continuation)
        groups.setdefault(tuple(ctx + cont[:-1]), []).append((i, len(cont)))
    victims = []
    for members in groups.values():
        longest = max(n for _, n in members)
        victims += [i for i, n in members if n < longest]
    return sorted(victims)


def _cache_off(metadata: dict) -> bool:
    value = metadata.get("logits_cache", True)  # model_args reach the task metadata as parsed values
    return value is False or str(value).strip().lower() in ("false", "0", "no")


def check_logits_cache(task_name: str, metadata: dict, pairs) -> dict:
    """What `logits_cache` does to this task's requests, for its results (`kr_logits_cache`); warns when it
    corrupts some. Needs the model's tokenizer (from `pretrained=` or `tokenizer=`); a model passed to lm-eval
    as an object is not checked, and the record says so."""
    if _cache_off(metadata):
        return {"logits_cache": False, "requests": len(pairs), "affected": 0}
    tokenizer = _model_tokenizer(metadata)
    if tokenizer is None:
        return {"logits_cache": "unknown", "checked": False,
                "note": "no tokenizer from the model arguments: with logits_cache=True (lm-eval's default) nested "
                        "questions may be scored wrongly; pass logits_cache=False"}
    victims = logits_cache_victims(pairs, tokenizer)
    if victims:
        log.warning("%s: lm-eval's logits_cache=True (its default) reads %d of %d requests from the wrong "
                    "positions (a question whose context + continuation is another's cut elsewhere): add "
                    "logits_cache=False to --model_args for exact KR scores", task_name, len(victims), len(pairs))
    return {"logits_cache": True, "requests": len(pairs), "affected": len(victims)}


def _task_classes():
    """KRTask and KRFile, defined on first use so that importing this module does not import lm-eval."""
    from lm_eval.api.task import ConfigurableTask

    class KRTask(ConfigurableTask):
        """One KR (sub)task: a two-way multiple choice whose documents and provenance come from `load_kr`."""

        def __init__(self, config=None):
            cfg = {k: v for k, v in (config or {}).items() if k != "class"}
            cfg["process_results"] = process_results
            super().__init__(config=cfg)

        def download(self, dataset_kwargs=None, **kwargs) -> None:
            import datasets

            metadata = dict(self.config.metadata or {})
            tokenizer = _model_tokenizer(metadata)
            questions, provenance = load_kr(**{**metadata, **(dataset_kwargs or {}), "tokenizer": tokenizer})
            self.dataset = {"test": datasets.Dataset.from_list(to_docs(questions)),
                            "fewshot": datasets.Dataset.from_list(to_docs(fewshot_pool()))}
            # The results JSON dumps every task's config: its metadata is where provenance travels.
            self.config.metadata = {**metadata, "kr_provenance": provenance, "fortifai_bench_version": __version__}
            kr_run = for_subtask(self.config.task, metadata, provenance)  # the model's run, if it is a run's
            if kr_run is not None:
                self.config.metadata["kr_run"] = kr_run

        def build_all_requests(self, **kwargs) -> None:
            """lm-eval's requests, then the logits-cache check on them (with their few-shot contexts)."""
            super().build_all_requests(**kwargs)
            self.config.metadata = {**self.config.metadata, "kr_logits_cache": check_logits_cache(
                self.config.task, self.config.metadata, [inst.args for inst in self.instances])}

    class KRFile:
        """`kr_file`: lm-eval builds a `class:` task by calling the class with the task's config. A file with
        no splits answers with one KRTask named kr_file; one with splits, with a group kr_file of subtasks
        kr_file_split<k> whose size-weighted mean is KR-total."""

        def __new__(cls, config=None):
            return build_kr_file(KRTask, config or {})

        def __init__(self, config=None):  # lm-eval passes `config` only to a class whose __init__ takes it
            pass

    return KRTask, KRFile


def build_kr_file(task_class, config: dict):
    from lm_eval.api.group import Group
    from lm_eval.config.group import GroupConfig

    metadata = dict(config.get("metadata") or {})
    questions, _ = _file_questions(metadata.get("path"), metadata.get("duplicates", "once"), metadata.get("run"))
    splits = sorted({q.split for q in questions})
    base = {k: v for k, v in config.items() if k not in ("class", "task", "dataset_kwargs")}
    if splits == [-1]:
        return task_class(config={**base, "task": "kr_file", "dataset_kwargs": {"kr_source": "file"}})
    group = Group.from_config(GroupConfig(
        group="kr_file", task=[_split_task(k) for k in splits], metadata=metadata,
        aggregate_metric_list=[{"metric": m, "aggregation": "mean", "weight_by_size": True} for m in METRICS]))
    for k in splits:
        group.add(task_class(config={**base, "task": _split_task(k),
                                     "dataset_kwargs": {"kr_source": "file", "kr_split": k}}))
    return group


def _split_task(k: int) -> str:
    return "kr_file_unassigned" if k == -1 else f"kr_file_split{k}"


def __getattr__(name):
    if name in ("KRTask", "KRFile"):
        classes = dict(zip(("KRTask", "KRFile"), _task_classes()))
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
