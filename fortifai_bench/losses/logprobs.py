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
zeros as its gradient, so on a CPU the backward pass writes the zeros and skips that row's softmax: beyond
writing the gradient, TCE's backward costs in proportion to the tokens it keeps. Every row's gradient is bitwise what computing it gives
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
        for a, b, live in _runs(g):
            # No upstream gradient: zeros, each signed as computing it gives (-g; at the target -g + g = +0).
            # (Only a row of inf/NaN logits differs: computing it gave NaN.)
            if not live:
                grad[a:b] = -g[a:b, None]
                grad[a:b].scatter_(1, targets[a:b, None], 0.0)
                continue
            for s in range(a, b, ctx.chunk):
                e = min(s + ctx.chunk, b)
                if grad.dtype == torch.float32:
                    _row_grad(logits[s:e], targets[s:e], lse[s:e], g[s:e], out=grad[s:e])
                else:
                    grad[s:e] = _row_grad(logits[s:e], targets[s:e], lse[s:e], g[s:e])
        return grad, None, None


def _runs(g: torch.Tensor) -> list[tuple[int, int, bool]]:
    """Runs ``(start, end, live)`` of rows that all need their softmax (upstream gradient not 0) or none does.
    Off the CPU, one run of every row: there a kernel launch per run would cost more than the arithmetic it
    saves, and computing a row whose upstream gradient is 0 gives its zeros all the same."""
    n = g.shape[0]
    if n == 0:
        return []
    if g.device.type != "cpu":
        return [(0, n, True)]
    live = g != 0
    cuts = (live[1:] != live[:-1]).nonzero().squeeze(1).add(1).tolist()
    bounds, flags = [0, *cuts, n], live.tolist()
    return [(a, b, flags[a]) for a, b in zip(bounds, bounds[1:])]


def _row_grad(x, targets, lse, g, out=None):
    """``g * d logp_y / dz = g * (onehot(y) - softmax(z))`` for the rows of ``x``, in fp32 (into ``out`` if
    given): the float operations of the kernel before issue 31, in the same order, so that its gradients are
    bitwise those of computing every row."""
    block = torch.sub(x.float(), lse[:, None], out=out)
    block.exp_().mul_(-g[:, None])
    return block.scatter_add_(1, targets[:, None], g[:, None])


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
