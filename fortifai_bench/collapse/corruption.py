"""Where a loss puts its gradient: on the tokens regeneration corrupted, or on the faithful ones?

TCE's claim (ForTIFAI, Sec. 3) is that self-generated text is what the model is confident in, so masking
confident tokens keeps the gradient off model-written data. This measures it directly. For every
regenerated paragraph a stage trains on, each token is *faithful* if it lies in a block that matches the
original paragraph (difflib's matching blocks over token ids: insertions shift positions, they do not
corrupt what follows) and *corrupted* otherwise. The loss's own mask (`Loss.reduce` returns which tokens
got gradient) then says how its gradient splits between the two.
"""

from __future__ import annotations

import difflib

import torch

from fortifai_bench.losses import token_logprobs


def faithful_mask(original: list[int], rewritten: list[int]) -> list[bool]:
    """True for each token of `rewritten` that lies in a block matching `original`."""
    keep = [False] * len(rewritten)
    matcher = difflib.SequenceMatcher(a=original, b=rewritten, autojunk=False)
    for _, start, n in matcher.get_matching_blocks():
        keep[start : start + n] = [True] * n
    return keep


@torch.no_grad()
def _kept(model, loss, rows: list[list[int]], batch_size: int) -> list[list[bool]] | None:
    """Which target tokens of each row `loss` gives gradient (kept[t] is about token t + 1), or None when
    the loss does not report a mask (it overrides `forward` or is a plain function)."""
    device = next(model.parameters()).device
    out: list[list[bool]] = []
    for s in range(0, len(rows), batch_size):
        batch = rows[s : s + batch_size]
        width = max(len(r) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for j, r in enumerate(batch):
            ids[j, : len(r)] = torch.tensor(r)
            labels[j, : len(r)] = torch.tensor(r)
        mask = (labels != -100).long()
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp, valid = token_logprobs(logits, labels.to(device))
        try:
            _, kept = loss.reduce(logp, valid)
        except (NotImplementedError, TypeError, AttributeError):
            return None
        kept = (kept.bool() & valid).view(len(batch), width).cpu()
        out += [kept[j, : len(r) - 1].tolist() for j, r in enumerate(batch)]
    return out


def gradient_split(model, tokenizer, loss, pairs: list[tuple[str, str]], batch_size: int = 32,
                   fresh: list[tuple[str, str]] = ()) -> dict | None:
    """For (original, regenerated) text pairs: the share of corrupted tokens, and how the loss's kept
    (gradient-bearing) tokens split between corrupted and faithful ones. With `fresh` (the stage's real
    split, each text paired with itself) also `fresh_kept_rate`: the share of real tokens the loss keeps.
    None when there are no pairs."""
    if not pairs:
        return None
    out = _split(model, tokenizer, loss, pairs, batch_size)
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
