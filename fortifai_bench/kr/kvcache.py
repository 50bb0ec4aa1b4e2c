"""The two KR scoring paths that need no custom attention mask, both per-token log-probabilities of an `Item`'s
two continuations: `batch_shared` (each context once, its KV cache repeated for the two continuations; the
fallback of the tree path and its reference) and `batch_naive` (lm-eval's way: one sequence per choice).
"""

from __future__ import annotations

import torch

from fortifai_bench.kr.encode import Item
from fortifai_bench.losses.logprobs import target_logprobs
from fortifai_bench.models import cache_argument


def _repeat_cache(cache, repeats: int):
    if hasattr(cache, "batch_repeat_interleave"):  # transformers Cache objects
        cache.batch_repeat_interleave(repeats)
        return cache
    # legacy tuple-of-tuples cache: ((k, v), ...) with batch first
    return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)


def _token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for each position: the package's one helper (`losses.target_logprobs`, chunked)."""
    return target_logprobs(logits, targets)


@torch.inference_mode()
def batch_shared(model, batch: list[Item], pad_id: int, device, keep_logits: bool) -> list[tuple[list[float], list[float]]]:
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
        # A padded slot gets position 0: a short continuation beside a long one would otherwise be padded
        # to positions past the window when its context fills it (the slots are masked and never read).
        cpos = (ctx_len[:, None] + torch.arange(t_max, device=device)[None, :]) * cmask
        full_mask = torch.cat([mask.repeat_interleave(2, dim=0), cmask], dim=1)
        out2 = model(input_ids=cids, attention_mask=full_mask, position_ids=cpos, use_cache=True,
                     **{cache_argument(model): cache})
        lp = _token_logps(out2.logits, targets).cpu()
        rest = [lp[r, : len(c) - 1].tolist() for r, c in enumerate(conts)]
    first = first_lp.cpu().tolist()
    per_row = [[first[r]] + rest[r] for r in range(2 * n)]
    return [(per_row[2 * i], per_row[2 * i + 1]) for i in range(n)]


@torch.inference_mode()
def batch_naive(model, batch: list[Item], pad_id: int, device) -> list[tuple[list[float], list[float]]]:
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
