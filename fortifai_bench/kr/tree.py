"""The fast KR scoring path: one row per question, `context + true[:-1] + false[:-1]`, under a two-branch
(tree) 4D attention mask, so every token a question needs runs once.

`tree_mode` decides, once per model class and attention implementation and by scoring a few items both ways
against the KV-cache path (`kvcache.batch_shared`), whether a model honours such a mask and how only the
scored positions reach its vocabulary projection; `tree_fits` whether a batch is small enough for it.
"""

from __future__ import annotations

import torch

from fortifai_bench.kr.encode import Item
from fortifai_bench.kr.kvcache import batch_shared


_TREE_MAX_ELEMENTS = 2**25  # a batch's 4D mask (rows x length^2) above this: the KV-cache path (memory)
_TREE_OK: dict = {}  # (model class, attention implementation) -> its `tree_mode` (None: KV-cache path)


def tree_len(it: Item) -> int:
    return len(it.ctx) + len(it.conts[0]) + len(it.conts[1]) - 2


def tree_fits(batch: list[Item], max_length: int) -> bool:
    longest = max(tree_len(it) for it in batch)
    return longest <= max_length and len(batch) * longest * longest <= _TREE_MAX_ELEMENTS


def _tree_inputs(batch: list[Item], pad_id: int, dtype: torch.dtype | None):
    """Left-padded rows `context + true[:-1] + false[:-1]`, their positions and the tree's 4D mask: additive
    in `dtype`, or boolean (True: may attend) when `dtype` is None.

    Segments: 0 pad, 1 context, 2 true, 3 false. A token sees the earlier tokens of its row except that the
    false branch does not see the true one; the false branch's positions restart where the context ends, as
    if the true branch were not there. A padded position sees only itself (a fully masked row would be NaN).
    """
    n, width = len(batch), max(tree_len(it) for it in batch)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    seg = torch.zeros((n, width), dtype=torch.int8)
    for i, it in enumerate(batch):
        (t, f), c = it.conts, len(it.ctx)
        start = width - tree_len(it)
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


def _tree_logps(rows: torch.Tensor, batch: list[Item], project) -> list[tuple[list[float], list[float]]]:
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
def batch_tree(model, batch: list[Item], pad_id: int, device, keep: str) -> list[tuple[list[float], list[float]]]:
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


def tree_mode(model, items: list[Item], pad_id: int, device, keep_logits: bool) -> str | None:
    """How this model scores tree rows ("hidden", "mask", "last" or "all": `batch_tree`), or None when it does
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
    probe = sorted(items, key=tree_len)[-4:]  # the longest: most positions, padding inside the batch
    ref = batch_shared(model, probe, pad_id, device, keep_logits)
    for mode in (("hidden", "mask", "last") if keep_logits else ("all",)):
        try:
            got = batch_tree(model, probe, pad_id, device, mode)
        except (RuntimeError, TypeError, ValueError, IndexError, AttributeError):  # e.g. no hidden states
            continue
        if all(len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-4
               for g, r in zip(got, ref) for a, b in zip(g, r)):
            _TREE_OK[key] = mode
            break
    return _TREE_OK[key]
