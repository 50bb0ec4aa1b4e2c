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
their gradient, a loss therefore holds one chunk (``chunk_tokens x vocab``), not the full
``log_softmax`` that ``F.log_softmax(...).gather(...)`` keeps alive. Because the gradient of any
function of ``logp_t`` is ``dL/dlogp_t * (onehot - softmax)``, CE, TCE and Focal (with or without a
detached weight) all get exact gradients from the same kernel. The KR scorer and the stage evaluation
use `target_logprobs` too.
"""

from __future__ import annotations

import torch

from fortifai_bench.errors import FortifaiError

IGNORE_INDEX = -100
CHUNK_TOKENS = 1024  # rows of the softmax held at once; 1024 x 128,256 x 4 B = 0.5 GB at Llama 3 scale


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
        grad = torch.empty_like(logits)
        g = grad_out.float()
        for s in range(0, logits.shape[0], ctx.chunk):
            e = s + ctx.chunk
            # d logp_y / d z = onehot(y) - softmax(z); scaled by the upstream gradient g.
            block = torch.sub(logits[s:e].float(), lse[s:e, None]).exp_().mul_(-g[s:e, None])
            block.scatter_add_(1, targets[s:e, None], g[s:e, None])
            grad[s:e] = block
        return grad, None, None


def shift_labels(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets aligned with the logits: position t is scored on token t+1; the last position on nothing."""
    pad = torch.full_like(labels[..., :1], ignore_index)
    return torch.cat([labels[..., 1:], pad], dim=-1)


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """log p(targets) for logits ``[..., V]`` and aligned integer targets ``[...]`` (no shifting), in float32:
    the one per-token log-probability of the package (losses, the KR scorer, the stage evaluation), chunked
    so that no second vocabulary-sized tensor is kept (see module doc)."""
    flat = logits.reshape(-1, logits.shape[-1])
    if not flat.is_contiguous():
        flat = flat.contiguous()
    return _TargetLogProb.apply(flat, targets.reshape(-1), chunk).view(targets.shape)


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX, chunk: int = CHUNK_TOKENS
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
