"""A model's log-probability of every next token of a text: one definition for the stage evaluation (Fig. 1's
confidence, perplexity: `collapse.evaluate`) and the mask measure around training (`collapse.corruption`).

A text longer than the model's window is scored in windows of the window's length, each starting half a window
after the previous one and scoring only the tokens the previous did not (Hugging Face's "perplexity of
fixed-length models", stride = window / 2): every token past the first window is conditioned on its last
window/2 .. window-1 tokens, left-truncated, instead of on all of them. Pieces are batched longest with
longest, each batch right-padded to its longest.
"""

from __future__ import annotations

import torch

from fortifai_bench.kr.encode import model_window
from fortifai_bench.losses import target_logprobs


def token_logps(model, sequences: list[list[int]], batch_size: int = 32) -> list[torch.Tensor]:
    """log p(token t | tokens < t) for t = 1..len-1 of every sequence: a float32 tensor per sequence."""
    return [torch.cat([part for _, part in parts]) for parts in _scored(model, sequences, batch_size)]


def token_probs(model, sequences: list[list[int]], batch_size: int = 32) -> list[list[float]]:
    """p(token t | tokens < t) for t = 1..len-1 of every sequence."""
    return [[p for _, part in parts for p in part.exp().tolist()] for parts in _scored(model, sequences, batch_size)]


@torch.inference_mode()
def _scored(model, sequences: list[list[int]], batch_size: int) -> list[list[tuple[int, torch.Tensor]]]:
    """Per sequence, (first scored token, log-probabilities) of each of its windows, in order."""
    device = next(model.parameters()).device
    pieces = _windows(sequences, model_window(model))  # (sequence, start, first scored, end)
    out: list[list[tuple[int, torch.Tensor]]] = [[] for _ in sequences]
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][3] - pieces[i][1])
    for s in range(0, len(order), batch_size):
        rows = [pieces[i] for i in order[s : s + batch_size]]
        width = max(end - start for _, start, _, end in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, (r, start, _, end) in enumerate(rows):
            ids[j, : end - start] = torch.tensor(sequences[r][start:end])
            mask[j, : end - start] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = target_logprobs(logits[:, :-1], ids[:, 1:].to(device)).cpu()  # the package's one helper
        for j, (r, start, first, end) in enumerate(rows):
            out[r].append((first, logp[j, first - start - 1 : max(end - start - 1, 0)]))
    return [sorted(parts, key=lambda part: part[0]) for parts in out]


def _windows(sequences: list[list[int]], window: int) -> list[tuple[int, int, int, int]]:
    """(sequence, start, first scored token, end): the slices `_scored` runs, none longer than `window`; a
    sequence that fits is one slice scoring tokens 1..len-1."""
    stride = max(window // 2, 1)
    pieces = []
    for r, seq in enumerate(sequences):
        pieces.append((r, 0, 1, min(len(seq), window)))
        first = window
        while first < len(seq):
            end = min(first + stride, len(seq))
            pieces.append((r, end - window, first, end))
            first = end
    return pieces
