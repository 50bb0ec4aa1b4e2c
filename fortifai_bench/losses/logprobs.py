"""The one per-token log-probability of the package: ``log p(target)``, chunked over the tokens.

The convention, decided here for every loss
-------------------------------------------
A loss is called as ``loss(logits, labels) -> LossOutput`` with

* ``logits``: the model's output, shape ``[..., T, V]`` (any float dtype; computed in fp32),
* ``labels``: shape ``[..., T]``, in the Hugging Face convention: the *input ids themselves*, not
  shifted, with positions that must not count set to ``-100`` (``IGNORE_INDEX``).

The loss shifts the *labels* left by one (position t is scored on token t+1) and never slices the
logits, so no copy of the ``tokens x vocab`` tensor is made. The same holds for plain functions
``f(logits, labels) -> Tensor`` given as a loss spec: they receive the same unshifted pair.

Memory
------
Every built-in loss is a function of one number per token, the log-probability of the correct
token ``logp_t``. `token_logprobs` computes it with a custom autograd function that walks over the
tokens in chunks: the forward pass keeps only a log-sum-exp per token, and the backward pass
recomputes the softmax chunk by chunk straight into the logits' gradient. Beyond the logits and
their gradient, a loss therefore holds one chunk (`chunk_rows` x vocab), not the full
``log_softmax`` that ``F.log_softmax(...).gather(...)`` keeps alive. Because the gradient of any
function of ``logp_t`` is ``dL/dlogp_t * (onehot - softmax)``, CE, TCE and Focal (with or without a
detached weight) all get exact gradients from the same kernel. The KR scorer and the stage evaluation
use `target_logprobs` too.

Time
----
A token whose upstream gradient ``dL/dlogp_t`` is 0 (one TCE masks, an ignored position) has a row of
zeros as its gradient, so the backward pass writes the zeros and skips that row's softmax: TCE's backward
costs in proportion to the tokens it keeps. Every row's gradient is bitwise what computing it gives
(`tests/test_losses.py`); figures against ``F.cross_entropy`` are in BENCHMARKS.md (`benchmarks/bench_losses.py`).
"""

from __future__ import annotations

import torch

from fortifai_bench.errors import FortifaiError

IGNORE_INDEX = -100
# Elements of the softmax held at once. On a CPU a chunk that fits a core's cache (2 MiB of fp32: 4 rows at
# Llama 3's 128,256 words) makes the sub/exp/mul passes cache hits, so what goes to memory is one read of the
# logits and one write of their gradient; chunks of 1,024 rows (0.5 GB) streamed each pass through memory
# (BENCHMARKS.md, Losses). An accelerator wants large chunks (few kernel launches): 2**27 is 1,024 rows.
CHUNK_ELEMENTS = {"cpu": 2**19}
CHUNK_ELEMENTS_DEFAULT = 2**27


def chunk_rows(logits: torch.Tensor) -> int:
    """Rows of a ``[N, V]`` logits matrix per chunk on its device (see CHUNK_ELEMENTS)."""
    budget = CHUNK_ELEMENTS.get(logits.device.type, CHUNK_ELEMENTS_DEFAULT)
    return max(1, budget // max(1, logits.shape[-1]))


class _TargetLogProb(torch.autograd.Function):
    """log p(target) per row of a ``[N, V]`` logits matrix, chunked over rows (see module doc)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        out = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, chunk):
            x = logits[s : s + chunk].float()
            lse[s : s + chunk] = torch.logsumexp(x, dim=-1)
            out[s : s + chunk] = x.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        g = grad_out.float()
        grad = torch.empty_like(logits)
        live = g != 0
        _zero_rows(grad, targets, g, (~live).nonzero().squeeze(1))
        rows = live.nonzero().squeeze(1)
        for s in range(0, rows.numel(), ctx.chunk):
            index = rows[s : s + ctx.chunk]
            a, b = index[0].item(), index[-1].item() + 1
            if b - a > index.numel():  # masked rows in between: gather the live ones
                block = _row_grad(logits.index_select(0, index), targets[index], lse[index], g[index])
                grad.index_copy_(0, index, block.to(grad.dtype))
            elif grad.dtype == torch.float32:  # a run of rows: straight into the gradient
                _row_grad(logits[a:b], targets[a:b], lse[a:b], g[a:b], out=grad[a:b])
            else:
                grad[a:b] = _row_grad(logits[a:b], targets[a:b], lse[a:b], g[a:b])
        return grad, None, None


def _row_grad(x, targets, lse, g, out=None):
    """``g * d logp_y / dz = g * (onehot(y) - softmax(z))`` for the rows of ``x``, in fp32 (into ``out`` if
    given): the same float operations in the same order on every path, so the gradient is bitwise the same
    whichever path a row takes."""
    block = torch.sub(x.float(), lse[:, None], out=out)
    block.exp_().mul_(-g[:, None])
    return block.scatter_add_(1, targets[:, None], g[:, None])


def _zero_rows(grad, targets, g, index):
    """Rows whose upstream gradient is 0 (TCE's masked tokens, ignored positions) skip the softmax: their
    gradient is zero, with the signs of zero that ``exp(z - lse) * -g`` and the target's ``+ g`` give, so the
    result is bitwise that of computing them (for finite logits; a row of inf/NaN logits that gets no gradient
    gets zeros, where computing it gave NaN)."""
    if index.numel() == 0:
        return
    grad.index_copy_(0, index, (-g[index, None]).to(grad.dtype).expand(-1, grad.shape[1]))
    grad[index, targets[index]] = 0.0  # -g + g is +0 whatever the sign of g


def shift_labels(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets aligned with the logits: position t is scored on token t+1; the last position on nothing."""
    pad = torch.full_like(labels[..., :1], ignore_index)
    return torch.cat([labels[..., 1:], pad], dim=-1)


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """log p(targets) for logits ``[..., V]`` and aligned integer targets ``[...]`` (no shifting), in float32:
    the one per-token log-probability of the package (losses, the KR scorer, the stage evaluation), chunked
    so that no second vocabulary-sized tensor is kept (see module doc)."""
    flat = logits.reshape(-1, logits.shape[-1])
    if not flat.is_contiguous():
        flat = flat.contiguous()
    return _TargetLogProb.apply(flat, targets.reshape(-1), chunk or chunk_rows(flat)).view(targets.shape)


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(logp, valid)``, both flat ``[N]``: log p of each next token, and which tokens count.

    ``logp`` is 0 where ``valid`` is False, and no gradient flows there.
    """
    if logits.shape[:-1] != labels.shape:
        raise FortifaiError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree: expected [..., T, V] and [..., T]"
        )
    targets = shift_labels(labels, ignore_index).reshape(-1)
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    logp = target_logprobs(logits.reshape(-1, logits.shape[-1]), safe, chunk)
    return torch.where(valid, logp, torch.zeros_like(logp)), valid
