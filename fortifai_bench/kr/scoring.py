"""A fast in-process KR scorer that gives lm-eval's `multiple_choice` answers.

lm-eval scores each choice as its own sequence `context + " " + continuation`; a KR question has two
choices that share the context, so lm-eval runs the context twice and projects every position onto the
vocabulary. Here each question is ONE row, `context + true[:-1] + false[:-1]`, with a 4D attention mask in
which the false continuation does not see the true one and restarts its positions where the context ends
(a two-branch tree), so every token the question needs runs once; rows are sorted by length, so little is
padded, and only the positions that predict continuation tokens are projected onto the vocabulary.
A model whose attention does not honour a custom 4D mask (checked once per model class on a few items,
against the path below) or a row too long for it uses the KV-cache path instead: the contexts of a batch
run once (left-padded, cache kept), the cache is repeated for the two continuations. Tokenization follows lm-eval's HFLM exactly: the context and the whole
`context + " " + continuation` are encoded with the tokenizer's defaults (the tiny tokenizer prepends
BOS), and the continuation's tokens are `whole[len(context_tokens):]`.

Methods (a named choice, never a silent one):
- `sum` (lm-eval's `acc`): the true continuation wins when its summed log-likelihood is at least the
  false one's (ties go to the true one, as lm-eval's argmax picks the first choice).
- `mean_shorter` (the paper's code): mean per-token log-probability over the first n tokens of each
  continuation, n = the shorter continuation's token count.
`acc_norm` is always lm-eval's: summed log-likelihood divided by the continuation's length in characters.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.metrics import bootstrap_ci
from fortifai_bench.models import cache_argument

METHODS = ("sum", "mean_shorter")
TARGET_DELIMITER = " "  # lm-eval's default target_delimiter, used by our task YAMLs
_SEQLEN_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
_DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM default when neither config nor tokenizer says


@dataclass
class ScoreResult:
    """Per-question log-likelihoods and the accuracies derived from them (lists are in input order)."""

    method: str
    ids: list[str]
    splits: list[int]
    logp_true: list[float]  # summed log-likelihood of the true continuation (lm-eval's number)
    logp_false: list[float]
    correct: list[bool]  # by the method's rule
    correct_norm: list[bool]  # lm-eval's acc_norm rule (divided by length in characters)
    tokens_true: list[int] = field(repr=False)
    tokens_false: list[int] = field(repr=False)
    acc: float = float("nan")
    acc_norm: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))

    def by_split(self) -> dict[int, float]:
        """Accuracy (method's rule) per split, e.g. {0: 0.98, 1: 0.97, ...}; KR-split-k."""
        totals: dict[int, list[int]] = {}
        for split, ok in zip(self.splits, self.correct):
            t = totals.setdefault(int(split), [0, 0])
            t[0] += int(ok)
            t[1] += 1
        return {k: hits / n for k, (hits, n) in sorted(totals.items())}

    def correct_bits(self) -> str:
        """Correctness as a '0110...' string in input order (compact per-item record for results.json)."""
        return "".join("1" if ok else "0" for ok in self.correct)


@dataclass(frozen=True)
class _Item:
    ctx: list[int]
    conts: tuple[list[int], list[int]]  # true, false


def _field(question: Any, name: str):
    if isinstance(question, dict):
        return question[name]
    return getattr(question, name)


def _max_length(model, tokenizer) -> int:
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        for attr in _SEQLEN_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 10**9:
        return tml
    return _DEFAULT_MAX_LENGTH


class _Encoder:
    """lm-eval's HFLM `tok_encode` / `_encode_pair` for a causal model, batched where it is the same."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_str = tokenizer.decode(self.prefix_id) if self.prefix_id is not None else None

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        # HFLM encodes with the tokenizer's defaults, except that a text already starting with the prefix
        # token's string gets no added special tokens.
        unique = list(dict.fromkeys(texts))  # questions about one fact share their context and true text
        by_text = dict(zip(unique, self._ids(unique))) if texts else {}
        out = [by_text[text] for text in texts]
        for i, text in enumerate(texts):
            if self.prefix_str and text.startswith(self.prefix_str):
                out[i] = self.tok.encode(text, add_special_tokens=False)
        return [list(x) for x in out]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """`tokenizer(texts)["input_ids"]`. For a fast tokenizer with no truncation or padding set, straight
        from its Rust backend: the same ids, without the Python conversion of every encoding into masks
        and offsets that `__call__` adds (3x the cost of the encoding itself on KR items; issue 14)."""
        backend = getattr(self.tok, "backend_tokenizer", None) if getattr(self.tok, "is_fast", False) else None
        if backend is not None and backend.truncation is None and backend.padding is None:
            return [e.ids for e in backend.encode_batch(texts, add_special_tokens=True)]
        return self.tok(texts)["input_ids"]

    def pairs(self, contexts: list[str], *choices: list[str]) -> list[list[tuple[list[int], list[int]]]]:
        """(context_tokens, continuation_tokens) for each (context, " " + continuation) request, one list
        per list of continuations in `choices` (the contexts are encoded once for all of them)."""
        moved_ctx, spaces = [], []
        for ctx in contexts:
            n_spaces = len(ctx) - len(ctx.rstrip())
            # lm-eval moves the context's trailing spaces into the continuation
            moved_ctx.append(ctx[:-n_spaces] if n_spaces else ctx)
            spaces.append(ctx[len(ctx) - n_spaces:])
        ctx_enc = self.encode_many(moved_ctx)
        return [self._pairs(moved_ctx, [s + c for s, c in zip(spaces, conts)], ctx_enc) for conts in choices]

    def _pairs(self, moved_ctx, moved_cont, ctx_enc):
        whole_enc = self.encode_many([c + d for c, d in zip(moved_ctx, moved_cont)])
        pairs = []
        for ctx, cont, c_enc, w_enc in zip(moved_ctx, moved_cont, ctx_enc, whole_enc):
            if ctx == "":  # lm-eval conditions an empty context on the prefix token
                cont_enc = self.tok.encode(cont, add_special_tokens=False)
                if cont_enc and cont_enc[0] == self.prefix_id:
                    pairs.append((cont_enc[:1], cont_enc[1:]))
                else:
                    pairs.append(([self.prefix_id], cont_enc))
            else:
                pairs.append((c_enc, w_enc[len(c_enc):]))
        return pairs


def _encode(questions: Sequence[Any], tokenizer, max_length: int) -> list[_Item]:
    enc = _Encoder(tokenizer)
    contexts = [str(_field(q, "context")) for q in questions]
    trues = [TARGET_DELIMITER + str(_field(q, "true")) for q in questions]
    falses = [TARGET_DELIMITER + str(_field(q, "false")) for q in questions]
    pt, pf = enc.pairs(contexts, trues, falses)
    items = []
    for i, ((ctx_t, cont_t), (ctx_f, cont_f)) in enumerate(zip(pt, pf)):
        qid = _field(questions[i], "id")
        if ctx_t != ctx_f:  # cannot happen for a non-empty context: both are encode(context)
            raise FortifaiError(f"question {qid}: its two choices tokenize to different contexts")
        if not cont_t or not cont_f:
            raise FortifaiError(f"question {qid}: a continuation tokenizes to nothing")
        longest = max(len(cont_t), len(cont_f))
        if longest > max_length:
            raise FortifaiError(f"question {qid}: a continuation of {longest} tokens exceeds the model's "
                                f"{max_length}-token window")
        # lm-eval keeps the last max_length+1 tokens of context+continuation; with a shared context we cut
        # it to fit the longer continuation (identical to lm-eval for it, a few tokens more for the other).
        keep = max_length + 1 - longest
        items.append(_Item(ctx_t[-keep:], (cont_t, cont_f)))
    return items


def _accepts(model, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _repeat_cache(cache, repeats: int):
    if hasattr(cache, "batch_repeat_interleave"):  # transformers Cache objects
        cache.batch_repeat_interleave(repeats)
        return cache
    # legacy tuple-of-tuples cache: ((k, v), ...) with batch first
    return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)


def _token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for each position: the package's one helper (`losses.target_logprobs`, chunked)."""
    from fortifai_bench.losses import target_logprobs

    return target_logprobs(logits, targets)


@torch.inference_mode()
def _batch_shared(model, batch: list[_Item], pad_id: int, device, keep_logits: bool) -> list[tuple[list[float], list[float]]]:
    """Per-token log-probabilities of both continuations of each item: context once, KV cache reused."""
    n = len(batch)
    c_max = max(len(it.ctx) for it in batch)
    ids = torch.full((n, c_max), pad_id, dtype=torch.long)
    mask = torch.zeros((n, c_max), dtype=torch.long)
    for i, it in enumerate(batch):  # left padding: every context ends at the last column
        ids[i, c_max - len(it.ctx):] = torch.tensor(it.ctx)
        mask[i, c_max - len(it.ctx):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": 1} if keep_logits else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs)
    first_logits = out.logits[:, -1, :]  # predicts the first token of each continuation
    conts = [c for it in batch for c in it.conts]  # rows 2i (true), 2i+1 (false)
    first_tok = torch.tensor([c[0] for c in conts], device=device)
    first_lp = _token_logps(first_logits.repeat_interleave(2, dim=0), first_tok)

    t_max = max(len(c) for c in conts) - 1
    rest = [[] for _ in conts]
    if t_max > 0:
        cache = _repeat_cache(getattr(out, cache_argument(model)), 2)
        cids = torch.full((2 * n, t_max), pad_id, dtype=torch.long)
        cmask = torch.zeros((2 * n, t_max), dtype=torch.long)
        targets = torch.zeros((2 * n, t_max), dtype=torch.long)
        for r, c in enumerate(conts):  # input: continuation minus its last token; target: shifted by one
            cids[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
            cmask[r, : len(c) - 1] = 1
            targets[r, : len(c) - 1] = torch.tensor(c[1:], dtype=torch.long)
        cids, cmask, targets = cids.to(device), cmask.to(device), targets.to(device)
        ctx_len = mask.sum(-1).repeat_interleave(2)
        cpos = ctx_len[:, None] + torch.arange(t_max, device=device)[None, :]
        full_mask = torch.cat([mask.repeat_interleave(2, dim=0), cmask], dim=1)
        out2 = model(input_ids=cids, attention_mask=full_mask, position_ids=cpos, use_cache=True,
                     **{cache_argument(model): cache})
        lp = _token_logps(out2.logits, targets).cpu()
        rest = [lp[r, : len(c) - 1].tolist() for r, c in enumerate(conts)]
    first = first_lp.cpu().tolist()
    per_row = [[first[r]] + rest[r] for r in range(2 * n)]
    return [(per_row[2 * i], per_row[2 * i + 1]) for i in range(n)]


_TREE_MAX_ELEMENTS = 2**25  # a batch's 4D mask (rows x length^2) above this: the KV-cache path (memory)
_TREE_OK: dict = {}  # (model class, attention implementation) -> its `_tree_mode` (None: KV-cache path)


def _tree_len(it: _Item) -> int:
    return len(it.ctx) + len(it.conts[0]) + len(it.conts[1]) - 2


def _tree_fits(batch: list[_Item], max_length: int) -> bool:
    longest = max(_tree_len(it) for it in batch)
    return longest <= max_length and len(batch) * longest * longest <= _TREE_MAX_ELEMENTS


def _tree_inputs(batch: list[_Item], pad_id: int, dtype: torch.dtype | None):
    """Left-padded rows `context + true[:-1] + false[:-1]`, their positions and the tree's 4D mask: additive
    in `dtype`, or boolean (True: may attend) when `dtype` is None.

    Segments: 0 pad, 1 context, 2 true, 3 false. A token sees the earlier tokens of its row except that the
    false branch does not see the true one; the false branch's positions restart where the context ends, as
    if the true branch were not there. A padded position sees only itself (a fully masked row would be NaN).
    """
    n, width = len(batch), max(_tree_len(it) for it in batch)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    seg = torch.zeros((n, width), dtype=torch.int8)
    for i, it in enumerate(batch):
        (t, f), c = it.conts, len(it.ctx)
        start = width - _tree_len(it)
        ids[i, start:] = torch.tensor(it.ctx + t[:-1] + f[:-1], dtype=torch.long)
        pos[i, start:] = torch.cat([torch.arange(c + len(t) - 1), torch.arange(c, c + len(f) - 1)])
        seg[i, start : start + c] = 1
        seg[i, start + c : start + c + len(t) - 1] = 2
        seg[i, start + c + len(t) - 1 :] = 3
    q, k = seg[:, :, None], seg[:, None, :]
    allowed = torch.ones(width, width, dtype=torch.bool).tril() & (k != 0) & ~((q == 3) & (k == 2))
    allowed |= torch.eye(width, dtype=torch.bool)
    if dtype is None:
        return ids, pos, allowed[:, None]
    mask = torch.zeros((n, 1, width, width), dtype=dtype).masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return ids, pos, mask


_CE_CHUNK = 1024  # positions projected onto the vocabulary at a time: their logits stay in cache for the loss
# (1,024 x a 4,096-word vocabulary: 16 MB; 10% faster than 4,096 positions on WikiText items, BENCHMARKS.md)


def _tree_logps(rows: torch.Tensor, batch: list[_Item], project) -> list[tuple[list[float], list[float]]]:
    """Per-token log-probabilities from each item's scored positions (items one after another, `rows`:
    their logits, or their final hidden states with `project` the output embedding).

    An item's t + f - 1 scored positions: the context's last token (predicts both first tokens), then the
    true branch (predicts true[1:]), then the false branch (predicts false[1:]); the first position is
    scored again, at the end, for the false continuation's first token. Cross-entropy is a fused
    log-softmax and gather (25% faster than logsumexp on CPU), in chunks so each chunk's logits are still
    in cache when the loss reads them (another 25% on head + loss, measured on the tiny model).
    """
    targets, firsts, first_false, at = [], [], [], 0
    for it in batch:
        t, f = it.conts
        targets += t + f[1:]
        firsts.append(at)
        first_false.append(f[0])
        at += len(t) + len(f) - 1
    device = rows.device
    rows = torch.cat([rows, rows[torch.tensor(firsts, device=device)]])
    targets = torch.tensor(targets + first_false, device=device)
    parts = []
    for s in range(0, len(rows), _CE_CHUNK):
        logits = project(rows[s : s + _CE_CHUNK]) if project is not None else rows[s : s + _CE_CHUNK]
        parts.append(-torch.nn.functional.cross_entropy(logits.float(), targets[s : s + _CE_CHUNK], reduction="none"))
    lp = torch.cat(parts).cpu().tolist()
    out, at = [], 0
    for i, it in enumerate(batch):
        t, f = it.conts
        out.append((lp[at : at + len(t)], [lp[-len(batch) + i]] + lp[at + len(t) : at + len(t) + len(f) - 1]))
        at += len(t) + len(f) - 1
    return out


@torch.inference_mode()
def _batch_tree(model, batch: list[_Item], pad_id: int, device, keep: str) -> list[tuple[list[float], list[float]]]:
    """Per-token log-probabilities of both continuations of each item: one row per item (see module doc).

    `keep`: how only the scored positions reach the vocabulary projection: "hidden" (the final hidden
    states, projected here by the output embedding), "mask" (a boolean ``logits_to_keep``, transformers
    >= 5), "last" (an integer ``logits_to_keep``: the last positions of every row, then selected), or "all"
    (a model without ``logits_to_keep``: every position, then selected).
    """
    dtype = next(model.parameters()).dtype
    if getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa":
        dtype = None  # sdpa takes a boolean mask as is: on CPU faster than an additive one (BENCHMARKS.md)
    elif not dtype.is_floating_point:
        dtype = torch.float32
    ids, pos, mask = _tree_inputs(batch, pad_id, dtype)
    scored = torch.tensor([len(it.conts[0]) + len(it.conts[1]) - 1 for it in batch])
    width, last = ids.shape[1], int(scored.max())
    wanted = torch.arange(width)[None, :] >= (width - scored)[:, None]  # the last `scored` positions of a row
    kwargs = {"hidden": {"logits_to_keep": 1, "output_hidden_states": True},
              "mask": {"logits_to_keep": wanted.to(device)}, "last": {"logits_to_keep": last}}.get(keep, {})
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                use_cache=False, **kwargs)
    if keep == "hidden":
        return _tree_logps(out.hidden_states[-1][wanted.to(device)], batch, model.get_output_embeddings())
    if keep == "mask":
        return _tree_logps(out.logits, batch, None)
    # rows x positions x vocabulary -> the scored positions, in row order
    return _tree_logps(out.logits[:, -last:][wanted[:, -last:].to(device)], batch, None)


def _tree_mode(model, items: list[_Item], pad_id: int, device, keep_logits: bool) -> str | None:
    """How this model scores tree rows ("hidden", "mask", "last" or "all": `_batch_tree`), or None when it does
    not honour a custom 4D mask and position ids: decided by scoring a few items both ways.

    transformers passes a 4D mask through unchanged for eager and sdpa attention; flash attention takes
    only padding masks, and older or custom models may rebuild their own mask, so this is checked, once
    per model class and attention implementation, rather than assumed.
    """
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    key = (type(model), impl)
    if key in _TREE_OK:
        return _TREE_OK[key]
    _TREE_OK[key] = None
    if impl not in (None, "eager", "sdpa"):
        return None
    probe = sorted(items, key=_tree_len)[-4:]  # the longest: most positions, padding inside the batch
    ref = _batch_shared(model, probe, pad_id, device, keep_logits)
    for mode in (("hidden", "mask", "last") if keep_logits else ("all",)):
        try:
            got = _batch_tree(model, probe, pad_id, device, mode)
        except (RuntimeError, TypeError, ValueError, IndexError, AttributeError):  # e.g. no hidden states
            continue
        if all(len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-4
               for g, r in zip(got, ref) for a, b in zip(g, r)):
            _TREE_OK[key] = mode
            break
    return _TREE_OK[key]


@torch.inference_mode()
def _batch_naive(model, batch: list[_Item], pad_id: int, device) -> list[tuple[list[float], list[float]]]:
    """lm-eval's way: each choice its own right-padded sequence context + continuation (reference path)."""
    seqs = [(it.ctx, c) for it in batch for c in it.conts]
    length = max(len(a) + len(b) - 1 for a, b in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for r, (a, b) in enumerate(seqs):
        inp = (a + b)[:-1]
        ids[r, : len(inp)] = torch.tensor(inp)
        mask[r, : len(inp)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    rows = []
    for r, (a, b) in enumerate(seqs):
        start = len(a) - 1
        tgt = torch.tensor(b, device=logits.device)
        rows.append(_token_logps(logits[r, start : start + len(b)], tgt).cpu().tolist())
    return [(rows[2 * i], rows[2 * i + 1]) for i in range(len(batch))]


def _order(items: list[_Item], batch_size: int, shared: bool, tree: bool = False) -> list[int]:
    """Longest first (like lm-eval), by the key that pads least: every padded token costs a full pass.

    Per-sequence scoring pads context + continuation; tree rows pad their whole length. The KV-cache
    path pads the context (pass 1) and the continuations (pass 2, two rows per question) separately, so
    the cheaper of the two orders (by context, by continuation) is taken, computed from the lengths alone.
    """
    idx = range(len(items))
    if tree:
        return sorted(idx, key=lambda i: _tree_len(items[i]), reverse=True)
    if not shared:
        return sorted(idx, key=lambda i: len(items[i].ctx) + max(map(len, items[i].conts)), reverse=True)

    def cost(order):
        total = 0
        for s in range(0, len(order), batch_size):
            b = [items[i] for i in order[s : s + batch_size]]
            total += len(b) * (max(len(it.ctx) for it in b) + 2 * max(len(c) for it in b for c in it.conts))
        return total

    by_ctx = sorted(idx, key=lambda i: (len(items[i].ctx), max(map(len, items[i].conts))), reverse=True)
    by_cont = sorted(idx, key=lambda i: (max(map(len, items[i].conts)), len(items[i].ctx)), reverse=True)
    return min(by_ctx, by_cont, key=cost)


def _decide(method: str, lp_t: list[float], lp_f: list[float]) -> bool:
    if method == "sum":
        return math.fsum(lp_t) >= math.fsum(lp_f)
    n = min(len(lp_t), len(lp_f))
    return math.fsum(lp_t[:n]) / n >= math.fsum(lp_f[:n]) / n


def score(
    model,
    tokenizer,
    questions: Iterable[Any],
    *,
    batch_size: int = 64,
    method: str = "sum",
    progress: bool = False,
    shared_context: bool = True,
) -> ScoreResult:
    """Score KR questions (objects or dicts with id, split, context, true, false) with a causal LM.

    `shared_context=False` runs lm-eval's per-sequence computation instead (same numbers, slower); it is
    also used automatically for a model whose forward takes no position_ids or KV cache.
    """
    if method not in METHODS:
        raise FortifaiError(f"unknown scoring method {method!r}: expected one of {', '.join(METHODS)}")
    if batch_size < 1:
        raise FortifaiError(f"batch_size must be at least 1, got {batch_size}")
    questions = list(questions)
    if not questions:
        raise FortifaiError("no questions to score")
    from fortifai_bench import threads

    threads.refresh()  # a long CLI run (a collapse stage ends here) adapts its thread count to the load now
    max_length = _max_length(model, tokenizer)
    items = _encode(questions, tokenizer, max_length)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    shared = shared_context and _accepts(model, "position_ids") and _accepts(model, cache_argument(model))
    keep_logits = _accepts(model, "logits_to_keep")

    per_token: list[tuple[list[float], list[float]] | None] = [None] * len(items)
    was_training = model.training
    model.eval()
    try:
        from tqdm.auto import tqdm

        tree = _tree_mode(model, items, pad_id, device, keep_logits) if shared else None
        # Longest first (like lm-eval): padding stays small and an out-of-memory error shows at once.
        order = _order(items, batch_size, shared, tree)
        starts = range(0, len(order), batch_size)
        for s in tqdm(starts, desc="KR scoring", unit="batch", disable=not progress):
            idx = order[s : s + batch_size]
            batch = [items[i] for i in idx]
            if tree and _tree_fits(batch, max_length):
                rows = _batch_tree(model, batch, pad_id, device, tree)
            elif shared:
                rows = _batch_shared(model, batch, pad_id, device, keep_logits)
            else:
                rows = _batch_naive(model, batch, pad_id, device)
            for i, row in zip(idx, rows):
                per_token[i] = row
    finally:
        model.train(was_training)

    logp_t = [math.fsum(r[0]) for r in per_token]
    logp_f = [math.fsum(r[1]) for r in per_token]
    correct = [_decide(method, r[0], r[1]) for r in per_token]
    len_t = [len(str(_field(q, "true"))) or 1 for q in questions]
    len_f = [len(str(_field(q, "false"))) or 1 for q in questions]
    correct_norm = [lt / nt >= lf / nf for lt, lf, nt, nf in zip(logp_t, logp_f, len_t, len_f)]
    return ScoreResult(
        method=method,
        ids=[str(_field(q, "id")) for q in questions],
        splits=[int(_field(q, "split")) for q in questions],
        logp_true=logp_t,
        logp_false=logp_f,
        correct=correct,
        correct_norm=correct_norm,
        tokens_true=[len(r[0]) for r in per_token],
        tokens_false=[len(r[1]) for r in per_token],
        acc=sum(correct) / len(correct),
        acc_norm=sum(correct_norm) / len(correct_norm),
        ci=bootstrap_ci([float(c) for c in correct]),
    )
