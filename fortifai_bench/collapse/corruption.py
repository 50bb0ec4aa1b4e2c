"""Where a loss puts its gradient: on the tokens regeneration corrupted, on the faithful ones, or on real text?

TCE's claim (ForTIFAI, abstract and Sec. 2.1.1 / Fig. 1) is that a model is more confident on text it
generated than on real text, so masking confident tokens keeps the gradient off model-written data. Every
token a stage trains on gets a class (`token_classes`):

* *fresh*: a token of real text (generation 0 of its split);
* *faithful* / *corrupted*: a token of a regenerated paragraph that does / does not lie in a block matching
  the original paragraph (difflib's matching blocks over token ids: insertions shift positions, they do
  not corrupt what follows);
* on a facts corpus (`corpora.facts`: every paragraph records its facts and their true values), a token of
  a fact's *value* is also marked by whether the text states the true value (`stated_values`: the
  sentence is found by its template, whichever variant, and the value it states is compared with the
  corpus's). difflib's "corrupted" marks where the rewrite differs from the memorised original, which on
  a facts corpus is mostly where the model was unsure; "stated false" is the error itself.

Two measures of the loss's mask, in two model states:

* `trained` (authoritative): the mask the loss applied in every training step of the stage (train mode,
  the step's own dropout draw), tallied per class by the trainer (`train.tally.TokenTally`) and summarised
  by `trained_summary`: kept rate, mean confidence p_t and share above gamma per class, and the kept rate
  per epoch. No extra forward pass, no random draw.
* `start` / `end` (`gradient_split`): one extra forward pass over the stage's regenerated and fresh text
  with M_{i-1} (the model that starts the stage) and M_i (the one that ends it), in EVAL mode (dropout
  off). Dropout changes what TCE masks (issue 26: a faithful kept rate of 0.18 in eval mode against
  0.28-0.31 over dropout draws), so these are labelled `"mode": "eval"` and bracket the trained mask.
"""

from __future__ import annotations

import difflib
import re

import torch

from fortifai_bench.collapse.probs import token_logps
from fortifai_bench.corpora.facts import CATEGORIES, SLOT, TEMPLATES
from fortifai_bench.losses import TCE, Loss

# A token's class, as the trainer tallies it (train.data carries them, train.loop counts them): its source
# plus, for a fact's value on a facts corpus, whether the text states the true value. 0: no class (padding).
FRESH, FAITHFUL, CORRUPTED = 1, 2, 3
VALUE_TRUE, VALUE_FALSE = 4, 8
SOURCES = {"corrupted": CORRUPTED, "faithful": FAITHFUL, "fresh": FRESH}
DEFAULT_GAMMA = 0.9  # the share above this is reported for a loss without a threshold (the paper's tce:0.9)


def faithful_mask(original: list[int], rewritten: list[int]) -> list[bool]:
    """True for each token of `rewritten` that lies in a block matching `original`."""
    keep = [False] * len(rewritten)
    matcher = difflib.SequenceMatcher(a=original, b=rewritten, autojunk=False)
    for _, start, n in matcher.get_matching_blocks():
        keep[start : start + n] = [True] * n
    return keep


def threshold(loss) -> float:
    """The confidence above which a loss masks a token (TCE's gamma), else `DEFAULT_GAMMA`."""
    inner = getattr(loss, "loss", loss)
    return float(inner.gamma) if isinstance(inner, TCE) and inner.gamma < 1 else DEFAULT_GAMMA


# ------------------------------------------------------------------------------------------ facts

def stated_values(meta: dict, text: str) -> list[tuple[int, int, bool] | None]:
    """For each fact of a facts paragraph (`meta`: its entity, kind and facts), where `text` states a value
    for it and whether that value is the true one: (start, end, true), or None when no sentence of the
    fact's templates (any variant of its kind) names the entity and the attribute in `text`. A value of
    its slot's form is looked for first, in every variant; then any word or name ("Rabra became a baker
    in 1889" states a false work place)."""
    out = []
    for f in meta.get("facts", []):
        found = None
        for loose in (False, True):
            for pattern in _patterns(meta["kind"], f["attribute"], f["slot"], meta["entity"], loose):
                m = pattern.search(text)
                if m:
                    found = (m.start("value"), m.end("value"), m.group("value") == f["value"])
                    break
            if found:
                break
        out.append(found)
    return out


def _patterns(kind: str, attribute: str, slot: str, name: str, loose: bool = False) -> list[re.Pattern]:
    """Regular expressions of every template variant of `kind` that states `attribute`, the entity named as
    the corpus names it, the value captured as `value` in its slot's form (digits for a year or number, a
    word for a place, profession or product, two capitalised words for a person or company; so that one
    variant never reads another's value: "born in 1843 in Dravia" is no place "1843"), or with `loose`
    any word or name; any other slot as text up to the sentence's end, which may be the text's end."""
    ref = name.split()[-1] if kind == "person" else name  # as corpora.facts writes later sentences
    value = (r"[A-Za-z0-9]+(?: [A-Z][a-z]+)?" if loose else
             r"[A-Z][a-z]+ [A-Z][a-z]+" if slot in ("rel:person", "rel:company") else
             r"[A-Za-z]+" if slot in CATEGORIES or slot.startswith("rel:") else r"\d+")
    out = []
    for _, variants in TEMPLATES.get(kind, []):
        for template in variants:
            if f"{{{attribute}:" not in template:
                continue
            parts, pos = [], 0
            for m in SLOT.finditer(template):
                parts.append(re.escape(template[pos : m.start()]))
                a = m.group(1)
                parts.append(re.escape(name) if a == "name" else re.escape(ref) if a == "Ref"
                             else f"(?P<value>{value})" if a == attribute else r"[^.]+?")
                pos = m.end()
            tail = template[pos:]
            parts.append(re.escape(tail[:-1]) + r"(?:\.|$)" if tail.endswith(".") else re.escape(tail))
            out.append(re.compile("".join(parts)))
    return out


# ------------------------------------------------------------------------------------------ token classes

def token_classes(tokenizer, original, text: str, generation: int) -> tuple[list[int], dict]:
    """The class of every token of `text` as `tokenizer(text)` encodes it (see module doc), and how many of
    the paragraph's facts the text states true, false, or not at all. `original` is the real paragraph
    (`corpora.Paragraph`) that `text` is generation `generation` of."""
    ids = tokenizer(text)["input_ids"]
    if generation == 0:
        classes = [FRESH] * len(ids)
    else:
        classes = [FAITHFUL if ok else CORRUPTED for ok in faithful_mask(tokenizer(original.text)["input_ids"], ids)]
    counts = {"true": 0, "false": 0, "missing": 0}
    meta = original.meta or {}
    if "facts" not in meta or "kind" not in meta:
        return classes, counts
    if generation == 0:
        spans = [(f["start"], f["end"], True) for f in meta["facts"]]
    else:
        spans = stated_values(meta, text)
    for s in spans:
        counts["missing" if s is None else "true" if s[2] else "false"] += 1
    try:
        offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer: no offsets, no value tokens
        return classes, counts
    for s in spans:
        if s is None:
            continue
        start, end, true = s
        for t, (a, b) in enumerate(offsets):
            if a < end and b > start and classes[t] < VALUE_TRUE:
                classes[t] += VALUE_TRUE if true else VALUE_FALSE
    return classes, counts


# ------------------------------------------------------------------------------------------ the mask as trained

def trained_summary(tally, gamma: float, facts: dict | None = None) -> dict:
    """`gradient.trained` from the trainer's tally (`train.tally.TokenTally`): per source class (corrupted,
    faithful, fresh) and, on a facts corpus, per value class (`by_fact`: regenerated values stated true
    or false, values of fresh real text), the tokens trained on (counted once per epoch), the share the
    loss kept, their mean confidence p_t and share above `gamma`, in train mode; and the kept rate per
    epoch. `facts`: the facts the regenerated paragraphs state true, false, or not at all."""
    n = tally.p_sum.numel()
    codes = range(n)

    def cell(members) -> dict | None:
        members = [c for c in members if c < n]
        counts = tally.counts[members].sum(dim=0) if members else torch.zeros(2, tally.counts.shape[-1])
        tokens = int(counts.sum())
        if not tokens:
            return None
        above = int(counts[:, round(gamma * counts.shape[-1]):].sum())  # bin b holds p in (b/B, (b+1)/B]
        return {"tokens": tokens, "kept_rate": int(counts[1].sum()) / tokens,
                "mean_p": float(tally.p_sum[members].sum()) / tokens, "share_above_gamma": above / tokens}

    def by_epoch(members) -> list[float | None]:
        members = [c for c in members if c < n]
        e = tally.epochs[:, members].sum(dim=1)
        return [int(k) / int(t) if int(t) else None for k, t in zip(e[:, 1], e.sum(dim=1))]

    source = {name: [c for c in codes if c % 4 == s] for name, s in SOURCES.items()}
    out = {"mode": "train", "gamma": gamma, **{name: cell(m) for name, m in source.items()},
           "by_epoch": {name: by_epoch(m) for name, m in source.items() if cell(m) is not None}}
    value = {"true": [c for c in codes if c & VALUE_TRUE and c % 4 in (FAITHFUL, CORRUPTED)],
             "false": [c for c in codes if c & VALUE_FALSE and c % 4 in (FAITHFUL, CORRUPTED)],
             "fresh": [c for c in codes if c & (VALUE_TRUE | VALUE_FALSE) and c % 4 == FRESH]}
    if any(c & (VALUE_TRUE | VALUE_FALSE) for c in codes):
        out["by_fact"] = {name: cell(m) for name, m in value.items()}
    if facts is not None:
        out["facts_stated"] = facts
    return out


# ------------------------------------------------------------------------------------------ eval-mode passes

def _kept(model, loss, rows: list[list[int]], batch_size: int) -> list[list[bool]] | None:
    """Which target tokens of each row `loss` gives gradient (kept[t] is about token t + 1), from the model's
    log-probability of each (`probs.token_logps`: batched longest with longest, in windows where a row is
    longer than the model's), or None when the loss does not report a mask (it overrides `forward` or is a
    plain function). A loss that keeps every token whatever the model predicts (CE, focal:
    `Loss.keeps_every_token`) keeps them without a forward pass: the same answer its `reduce` gives, at no
    cost (BENCHMARKS: the two passes were a third of a CE stage)."""
    promise = getattr(loss, "keeps_every_token", None)
    if callable(promise) and promise():
        return [[True] * (len(r) - 1) for r in rows]
    if type(loss).reduce is Loss.reduce:  # forward alone, or a plain function: no mask to read
        return None
    logps = token_logps(model, rows, batch_size)
    width = max((len(x) for x in logps), default=0)
    logp = torch.zeros(len(rows), width)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for j, x in enumerate(logps):
        logp[j, : len(x)], valid[j, : len(x)] = x, True
    try:
        with torch.no_grad():
            _, kept = loss.reduce(logp.view(-1), valid.view(-1))
    except (NotImplementedError, TypeError, AttributeError):
        return None
    kept = (kept.bool() & valid.view(-1)).view(len(rows), width)
    return [kept[j, : len(x)].tolist() for j, x in enumerate(logps)]


def gradient_split(model, tokenizer, loss, pairs: list[tuple[str, str]], batch_size: int = 32,
                   fresh: list[tuple[str, str]] = ()) -> dict | None:
    """For (original, regenerated) text pairs, with `model` in EVAL mode (dropout off; see module doc): the
    share of corrupted tokens, and how the loss's kept (gradient-bearing) tokens split between corrupted
    and faithful ones. With `fresh` (the stage's real split, each text paired with itself) also
    `fresh_kept_rate`: the share of real tokens the loss keeps. None when there are no pairs."""
    if not pairs:
        return None
    out = {"mode": "eval", **_split(model, tokenizer, loss, pairs, batch_size)}
    if fresh and out.get("loss_reports_mask"):
        out["fresh_kept_rate"] = _split(model, tokenizer, loss, list(fresh), batch_size)["faithful_kept_rate"]
    return out


def _split(model, tokenizer, loss, pairs: list[tuple[str, str]], batch_size: int) -> dict:
    was_training = model.training
    model.eval()
    rows = [tokenizer(new)["input_ids"] for _, new in pairs]
    faithful = [faithful_mask(tokenizer(old)["input_ids"], r) for (old, _), r in zip(pairs, rows)]
    kept = _kept(model, getattr(loss, "loss", loss), rows, batch_size)
    model.train(was_training)
    bad = [not fs[t + 1] for fs in faithful for t in range(len(fs) - 1)]  # about each target token
    n, n_bad = len(bad), sum(bad)
    out = {"tokens": n, "corrupted_share": n_bad / n if n else None, "loss_reports_mask": kept is not None}
    if kept is None or not n:
        return out
    flat = [k for ks in kept for k in ks]
    n_kept = sum(flat)
    kept_bad = sum(1 for b, k in zip(bad, flat) if b and k)
    kept_good = n_kept - kept_bad
    out.update({
        "kept_share": n_kept / n,                                            # of all regenerated tokens
        "kept_corrupted_share": kept_bad / n_kept if n_kept else None,      # of the gradient-bearing tokens
        "corrupted_kept_rate": kept_bad / n_bad if n_bad else None,         # how much corruption it trains on
        "faithful_kept_rate": kept_good / (n - n_bad) if n - n_bad else None,
    })
    return out
