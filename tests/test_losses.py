"""The losses: values and gradients against naive formulations, masking, normalization, loss specs."""

from __future__ import annotations

import importlib
import math
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses import (
    CE,
    IGNORE_INDEX,
    TCE,
    CheckedLoss,
    Focal,
    load_loss,
    parse_loss_args,
    shift_labels,
    target_logprobs,
    token_logprobs,
)

# ----------------------------------------------------------------------------- helpers


def make_batch(seed: int, batch: int = 2, seq: int = 7, vocab: int = 11, ignore_frac: float = 0.25, scale: float = 3.0):
    """Random logits (leaf, requires grad) and labels with some positions set to -100."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, seq, vocab, generator=g) * scale).requires_grad_()
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    labels[torch.rand(batch, seq, generator=g) < ignore_frac] = IGNORE_INDEX
    return logits, labels


def naive_logp(logits: torch.Tensor, labels: torch.Tensor):
    """The authors' formulation: full log_softmax, shift, gather. Returns flat (logp, valid)."""
    logp_all = F.log_softmax(logits[..., :-1, :].float(), dim=-1)
    targets = labels[..., 1:]
    valid = targets != IGNORE_INDEX
    logp = logp_all.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return logp[valid], valid.sum()


def naive_ce(logits, labels):
    logp, n = naive_logp(logits, labels)
    return -logp.sum() / n


def naive_tce(logits, labels, gamma, normalize="all"):
    logp, n = naive_logp(logits, labels)
    keep = torch.where(logp.detach().exp() <= gamma, 1.0, 0.0)
    denom = keep.sum().clamp_min(1) if normalize == "kept" else n
    return -(logp * keep).sum() / denom


def naive_focal(logits, labels, gamma, detach_weight=False):
    logp, n = naive_logp(logits, labels)
    p = logp.detach().exp() if detach_weight else logp.exp()
    return -(((1 - p) ** gamma) * logp).sum() / n


def value_and_grad(fn, logits, labels):
    x = logits.detach().clone().requires_grad_()
    out = fn(x, labels)
    loss = out.loss if hasattr(out, "loss") else out
    loss.backward()
    return loss.detach(), x.grad


# ----------------------------------------------------------------------------- values


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), gamma=st.floats(1.0, 10.0), normalize=st.sampled_from(["all", "kept"]))
def test_tce_with_gamma_at_least_one_equals_ce(seed, gamma, normalize):
    logits, labels = make_batch(seed)
    tce, g_tce = value_and_grad(TCE(gamma, normalize), logits, labels)
    ce, g_ce = value_and_grad(CE(), logits, labels)
    # and CE itself equals torch's cross-entropy on the shifted pair
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
    assert abs(tce.item() - ce.item()) <= 1e-6
    assert abs(ce.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    assert torch.equal(g_tce, g_ce)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), detach=st.booleans())
def test_focal_with_gamma_zero_equals_ce(seed, detach):
    logits, labels = make_batch(seed)
    focal, g_focal = value_and_grad(Focal(0.0, detach_weight=detach), logits, labels)
    ce, g_ce = value_and_grad(CE(), logits, labels)
    assert abs(focal.item() - ce.item()) <= 1e-6
    torch.testing.assert_close(g_focal, g_ce, rtol=0, atol=1e-7)


def test_ce_matches_torch_cross_entropy_with_all_tokens_ignored_but_one():
    logits, labels = make_batch(3)
    labels[:] = IGNORE_INDEX
    labels[1, 4] = 5  # scored at position (1, 3)
    loss = CE()(logits, labels).loss
    expected = -F.log_softmax(logits[1, 3], -1)[5]
    assert abs(loss.item() - expected.item()) < 1e-6


def test_all_tokens_ignored_gives_zero_loss_not_nan():
    logits, labels = make_batch(4)
    labels[:] = IGNORE_INDEX
    for loss in (CE(), TCE(0.9), TCE(0.9, "kept"), Focal(2.0)):
        out = loss(logits, labels)
        assert out.loss.item() == 0.0
        assert out.stats["masked_fraction"].item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- masking


def confident_batch():
    """Logits where some targets have p > 0.9 (TCE masks them) and others p < 0.9."""
    logits, labels = make_batch(7, batch=2, seq=9, vocab=13, ignore_frac=0.0, scale=1.0)
    with torch.no_grad():
        for b, t in [(0, 0), (0, 3), (1, 5), (1, 7)]:  # position t predicts labels[b, t+1]
            logits[b, t, labels[b, t + 1]] += 20.0
    return logits, labels, {(0, 0), (0, 3), (1, 5), (1, 7)}


def test_tce_masked_tokens_get_exactly_zero_gradient():
    logits, labels, confident = confident_batch()
    out = TCE(0.9)(logits, labels)
    out.loss.backward()
    grad = logits.grad
    for b in range(2):
        for t in range(8):
            row = grad[b, t]
            if (b, t) in confident:
                assert torch.count_nonzero(row) == 0, (b, t)
            else:
                assert torch.count_nonzero(row) > 0, (b, t)
    assert torch.count_nonzero(grad[:, -1]) == 0  # the last position has no next token
    assert out.stats["masked_fraction"].item() == pytest.approx(4 / 16)


def test_ignored_tokens_never_count():
    logits, labels = make_batch(11, ignore_frac=0.4)
    ignored_rows = torch.cat([labels[:, 1:] == IGNORE_INDEX, torch.ones(2, 1, dtype=torch.bool)], dim=1)
    assert ignored_rows.any() and (~ignored_rows).any()
    for loss in (CE(), TCE(0.9), TCE(0.5, "kept"), Focal(2.0), Focal(1.5, True)):
        base, grad = value_and_grad(loss, logits, labels)
        assert torch.count_nonzero(grad[ignored_rows]) == 0
        # changing the logits where nothing is scored changes nothing
        moved = logits.detach().clone()
        moved[ignored_rows] = torch.randn_like(moved[ignored_rows]) * 50
        other, grad2 = value_and_grad(loss, moved, labels)
        assert other.item() == base.item()
        torch.testing.assert_close(grad2[~ignored_rows], grad[~ignored_rows], rtol=0, atol=0)


def test_tce_normalizations():
    logits, labels, confident = confident_batch()
    n_real, n_kept = 16, 16 - len(confident)
    logp, _ = naive_logp(logits, labels)
    kept_sum = -(logp * (logp.exp() <= 0.9)).sum().item()
    all_ = TCE(0.9, "all")(logits, labels).loss.item()
    kept = TCE(0.9, "kept")(logits, labels).loss.item()
    assert all_ == pytest.approx(kept_sum / n_real, rel=1e-6)  # divides by every real token
    assert kept == pytest.approx(kept_sum / n_kept, rel=1e-6)  # divides by the unmasked ones
    assert kept / all_ == pytest.approx(n_real / n_kept, rel=1e-6)


def test_tce_default_normalization_is_the_authors():
    assert TCE().normalize == "all" and TCE().gamma == 0.9


# ----------------------------------------------------------------------------- gradients

CASES = {
    "ce": (CE(), naive_ce),
    "tce_all": (TCE(0.6), lambda x, y: naive_tce(x, y, 0.6)),
    "tce_kept": (TCE(0.6, "kept"), lambda x, y: naive_tce(x, y, 0.6, "kept")),
    "focal": (Focal(2.0), lambda x, y: naive_focal(x, y, 2.0)),
    "focal_detached": (Focal(2.0, detach_weight=True), lambda x, y: naive_focal(x, y, 2.0, True)),
    "focal_half": (Focal(0.5), lambda x, y: naive_focal(x, y, 0.5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_custom_gradient_equals_autograd_of_naive_formulation(name, seed):
    ours, naive = CASES[name]
    logits, labels = make_batch(seed, batch=3, seq=6, vocab=17)
    v1, g1 = value_and_grad(ours, logits, labels)
    v2, g2 = value_and_grad(naive, logits, labels)
    assert v1.item() == pytest.approx(v2.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3, 5, 1024])
def test_chunking_does_not_change_logprobs_or_gradients(chunk):
    logits, labels = make_batch(5, batch=3, seq=8, vocab=19)
    x = logits.detach().clone().requires_grad_()
    logp, valid = token_logprobs(x, labels, chunk=chunk)
    (logp * torch.linspace(-1, 2, logp.numel())).sum().backward()
    y = logits.detach().clone().requires_grad_()
    ref = torch.cat([F.log_softmax(y, -1).gather(-1, labels.clamp_min(0)[..., 1:, None]).squeeze(-1),
                     torch.zeros(3, 1)], dim=1).reshape(-1)
    ref = torch.where(valid, ref, torch.zeros_like(ref))
    (ref * torch.linspace(-1, 2, ref.numel())).sum().backward()
    torch.testing.assert_close(logp, ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)


class _KernelBeforeIssue31(torch.autograd.Function):
    """`logprobs._TargetLogProb` as it was before it skipped rows with no gradient (commit b72b51b), verbatim:
    the reference the new kernel's gradients must equal bit for bit."""

    @staticmethod
    def forward(ctx, logits, targets, chunk):
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
    def backward(ctx, grad_out):
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        g = grad_out.float()
        for s in range(0, logits.shape[0], ctx.chunk):
            e = s + ctx.chunk
            block = torch.sub(logits[s:e].float(), lse[s:e, None]).exp_().mul_(-g[s:e, None])
            block.scatter_add_(1, targets[s:e, None], g[s:e, None])
            grad[s:e] = block
        return grad, None, None


def _old_token_logprobs(logits, labels):
    """`token_logprobs` through the old kernel at its old chunk (1,024 rows)."""
    targets = shift_labels(labels).reshape(-1)
    valid = targets != IGNORE_INDEX
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    logp = _KernelBeforeIssue31.apply(logits.reshape(-1, logits.shape[-1]), safe, 1024)
    return torch.where(valid, logp, torch.zeros_like(logp)), valid


def _bits(t):
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab", [11, 2**17 + 3])  # one chunk for all rows; 3 rows a chunk (CPU)
@pytest.mark.parametrize("masked", [0.0, 0.5, 0.9, 1.0])
def test_skipping_masked_rows_keeps_the_gradients_bitwise(dtype, vocab, masked):
    logits, labels = make_batch(31, batch=2, seq=9, vocab=vocab, ignore_frac=0.2)
    logits = logits.detach().to(dtype)
    old_x = logits.clone().requires_grad_()
    logp, valid = _old_token_logprobs(old_x, labels)
    # gamma at the quantile that masks the wanted share of the real tokens
    p = logp.detach()[valid].exp()
    gamma = 2.0 if masked == 0 else (p.min().item() * 0.5 if masked == 1 else p.quantile(1 - masked).item())
    loss = TCE(gamma)
    old_loss, _ = loss.reduce(logp, valid)
    old_loss.backward()
    new_x = logits.clone().requires_grad_()
    out = loss(new_x, labels)
    out.loss.backward()
    assert out.stats["masked_fraction"].item() == pytest.approx(masked, abs=0.1)
    assert torch.equal(_bits(out.loss.detach()), _bits(old_loss.detach()))
    assert torch.equal(_bits(new_x.grad), _bits(old_x.grad))  # every bit, the sign of each zero included


@pytest.mark.parametrize("chunk", [None, 1, 2, 5])
def test_skipping_rows_with_zero_upstream_gradient_of_either_sign_is_bitwise(chunk):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 23, generator=g) * 4
    targets = torch.randint(0, 23, (40,), generator=g)
    upstream = torch.randn(40, generator=g)
    upstream[torch.rand(40, generator=g) < 0.6] = 0.0
    upstream[::7] = -0.0
    old_x, new_x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    _KernelBeforeIssue31.apply(old_x, targets, 1024).backward(upstream)
    target_logprobs(new_x, targets, chunk).backward(upstream)
    assert torch.equal(_bits(new_x.grad), _bits(old_x.grad))


def test_bfloat16_logits_get_fp32_logprobs_and_bf16_gradient():
    logits, labels = make_batch(2)
    x = logits.detach().to(torch.bfloat16).requires_grad_()
    out = CE()(x, labels)
    out.loss.backward()
    assert out.loss.dtype == torch.float32
    assert x.grad.dtype == torch.bfloat16
    assert out.loss.item() == pytest.approx(naive_ce(x.detach().float(), labels).item(), rel=1e-3)


def test_stats_are_the_masked_fraction_and_mean_probability_of_the_correct_token():
    logits, labels = make_batch(9)
    logp, n = naive_logp(logits, labels)
    stats = TCE(0.3)(logits, labels).stats
    assert stats["mean_p_correct"].item() == pytest.approx(logp.exp().mean().item(), rel=1e-5)
    assert stats["masked_fraction"].item() == pytest.approx((logp.exp() > 0.3).float().mean().item(), rel=1e-6)
    assert not stats["mean_p_correct"].requires_grad
    assert CE()(logits, labels).stats["masked_fraction"].item() == 0.0


def test_mismatched_shapes_are_an_error():
    logits, labels = make_batch(1)
    with pytest.raises(FortifaiError, match="disagree"):
        CE()(logits, labels[:, :-1])


# ----------------------------------------------------------------------------- specs


def test_short_names():
    assert isinstance(load_loss("ce").loss, CE)
    tce = load_loss("tce:0.8").loss
    assert isinstance(tce, TCE) and tce.gamma == 0.8 and tce.normalize == "all"
    assert load_loss("tce").loss.gamma == 0.9
    assert load_loss("tce:0.7", normalize="kept").loss.normalize == "kept"
    focal = load_loss("focal:2").loss
    assert isinstance(focal, Focal) and focal.gamma == 2.0
    assert load_loss("focal", gamma=1, detach_weight=True).loss.detach_weight is True
    assert load_loss("tce:0.8").describe() == {
        "spec": "tce:0.8", "target": "fortifai_bench.losses:TCE", "args": {"gamma": 0.8, "normalize": "all"}}


@pytest.mark.parametrize("spec,match", [
    ("ce:2", "takes no value"),
    ("tce:-1", "gamma must be > 0"),
    ("tce:0.9", None),
    ("focal:-1", "gamma must be >= 0"),
    ("nonsense", "expected a short name"),
])
def test_short_name_errors(spec, match):
    if match is None:
        load_loss(spec)
        return
    with pytest.raises(FortifaiError, match=match):
        load_loss(spec)


def test_bad_keyword_arguments_name_the_spec():
    with pytest.raises(FortifaiError, match="'tce:0.9'.*bad arguments"):
        load_loss("tce:0.9", gamm=0.3)


def test_parse_loss_args():
    assert parse_loss_args("gamma=0.8,normalize=kept") == {"gamma": 0.8, "normalize": "kept"}
    assert parse_loss_args(["gamma=2", "detach_weight=true"]) == {"gamma": 2, "detach_weight": True}
    assert parse_loss_args(None) == {}
    with pytest.raises(FortifaiError, match="key=value"):
        parse_loss_args("gamma")


USER_LOSSES = '''
import torch
from fortifai_bench.losses import Loss, LossOutput, CE

class Scaled(Loss):
    """CE times a factor: a user's Loss subclass with keyword arguments."""
    def __init__(self, factor=1.0):
        self.factor = factor
    def reduce(self, logp, valid):
        return -self.factor * logp.sum() / valid.sum().clamp_min(1), valid
    def config(self):
        return {"factor": self.factor}

def plain(logits, labels, scale=1.0):
    """A plain function on the unshifted (logits, labels) pair."""
    return scale * torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))

def vector(logits, labels):
    return logits.sum(-1).mean(-1)

def nan(logits, labels):
    return logits.sum() * float("nan")

def detached(logits, labels):
    return torch.tensor(1.0)

def boom(logits, labels):
    raise ValueError("broken on purpose")

class Callable:
    """Not a Loss subclass: any class whose instances are called like a plain function."""
    def __init__(self, scale=1.0):
        self.scale = scale
    def __call__(self, logits, labels):
        return plain(logits, labels, self.scale)

NOT_CALLABLE = 3
INSTANCE = CE()

class OnlyForward(Loss):
    """Overrides forward alone (needs the full logits), as the Loss docs allow."""
    def forward(self, logits, labels):
        return LossOutput(logits.logsumexp(-1).mean())

class BareReduce(Loss):
    """reduce returning the loss alone: every real token counts as kept."""
    def reduce(self, logp, valid):
        return -logp.sum() / valid.sum().clamp_min(1)

class FloatReduce(Loss):
    def reduce(self, logp, valid):
        return 0.5, valid

def python_float(logits, labels):
    return 0.5

def as_output(logits, labels):
    return LossOutput(plain(logits, labels), {"mine": torch.tensor(1.0)})

class BadConfig(CE):
    def config(self):
        return {"device": torch.device("cpu")}
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A loss module written into a fresh folder, importable from the working directory."""
    name = f"user_losses_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_LOSSES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return name


def _source_sha256(module: str) -> str:
    """A user's module is recorded with the sha256 of its file (the fixture writes it in the working folder)."""
    import hashlib

    return hashlib.sha256(Path(f"{module}.py").read_bytes()).hexdigest()


def test_module_class_with_kwargs(user_module):
    logits, labels = make_batch(12)
    loss = load_loss(f"{user_module}:Scaled", factor=2.0)
    out = loss(logits, labels)
    assert out.loss.item() == pytest.approx(2 * naive_ce(logits, labels).item(), rel=1e-6)
    assert set(out.stats) == {"masked_fraction", "mean_p_correct"}
    assert loss.describe() == {"spec": f"{user_module}:Scaled", "target": f"{user_module}:Scaled",
                               "args": {"factor": 2.0}, "source_sha256": _source_sha256(user_module)}


def test_module_loss_instance(user_module):
    logits, labels = make_batch(13)
    out = load_loss(f"{user_module}:INSTANCE")(logits, labels)
    assert out.loss.item() == pytest.approx(naive_ce(logits, labels).item(), rel=1e-6)


def test_plain_function_with_kwargs_and_stats(user_module):
    logits, labels = make_batch(14)
    loss = load_loss(f"{user_module}:plain", scale=3.0)
    out = loss(logits, labels)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(3 * naive_ce(logits, labels).item(), rel=1e-5)
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0
    logp, _ = naive_logp(logits, labels)
    assert out.stats["mean_p_correct"].item() == pytest.approx(logp.exp().mean().item(), rel=1e-5)
    assert loss.describe()["args"] == {"scale": 3.0}


def test_callable_class_with_kwargs(user_module):
    logits, labels = make_batch(18)
    loss = load_loss(f"{user_module}:Callable", scale=2.0)
    assert loss(logits, labels).loss.item() == pytest.approx(2 * naive_ce(logits, labels).item(), rel=1e-5)
    assert loss.describe() == {"spec": f"{user_module}:Callable", "target": f"{user_module}:Callable",
                               "args": {"scale": 2.0}, "source_sha256": _source_sha256(user_module)}


@pytest.mark.parametrize("attr,match", [
    ("vector", "expected a scalar"),
    ("nan", "nan"),
    ("detached", "no gradient path"),
    ("boom", "raised ValueError: broken on purpose"),
])
def test_misbehaving_losses_name_the_spec(user_module, attr, match):
    logits, labels = make_batch(15)
    spec = f"{user_module}:{attr}"
    loss = load_loss(spec)
    with pytest.raises(FortifaiError, match=match) as info:
        loss(logits, labels)
    assert repr(spec) in str(info.value)
    assert "\n" not in str(info.value)


def test_inf_is_not_finite(user_module, tmp_path):
    logits, labels = make_batch(16)
    with torch.no_grad():
        logits[0, 0, 0] = math.inf
    with pytest.raises(FortifaiError, match="not finite"):
        load_loss("ce")(logits, labels)


@pytest.mark.parametrize("spec,match", [
    ("no_such_module_xyz:Loss", "cannot import 'no_such_module_xyz'"),
    ("{mod}:Missing", "has no attribute 'Missing'"),
    ("{mod}:NOT_CALLABLE", "not callable"),
])
def test_bad_specs_name_the_spec(user_module, spec, match):
    spec = spec.format(mod=user_module)
    with pytest.raises(FortifaiError, match=match) as info:
        load_loss(spec)
    assert repr(spec) in str(info.value)


def test_checked_loss_wraps_a_raw_tensor_result():
    loss = CheckedLoss("raw", CE(), {})
    logits, labels = make_batch(17)
    assert loss(logits, labels).loss.dim() == 0


# ----------------------------------------------------------------------------- the Loss contract, bad arguments


def test_a_subclass_may_override_forward_alone(user_module):
    logits, labels = make_batch(19)
    out = load_loss(f"{user_module}:OnlyForward")(logits, labels)
    assert out.loss.item() == pytest.approx(logits.logsumexp(-1).mean().item(), rel=1e-6)
    out.loss.backward()
    assert logits.grad is not None


def test_a_plain_function_may_return_a_loss_output(user_module):
    logits, labels = make_batch(22)
    out = load_loss(f"{user_module}:as_output")(logits, labels)
    assert out.loss.item() == pytest.approx(naive_ce(logits, labels).item(), rel=1e-5) and set(out.stats) == {"mine"}


def test_reduce_may_return_the_loss_alone(user_module):
    logits, labels = make_batch(20)
    out = load_loss(f"{user_module}:BareReduce")(logits, labels)
    assert out.loss.item() == pytest.approx(naive_ce(logits, labels).item(), rel=1e-6)
    assert out.stats["masked_fraction"].item() == 0.0


@pytest.mark.parametrize("attr", ["FloatReduce", "python_float"])
def test_a_python_float_is_reported_as_such(user_module, attr):
    logits, labels = make_batch(21)
    with pytest.raises(FortifaiError, match=r"returned a Python float \(0\.5\), expected a scalar Tensor"):
        load_loss(f"{user_module}:{attr}")(logits, labels)


def test_arguments_json_cannot_hold_are_refused_at_load(user_module):
    with pytest.raises(FortifaiError, match="cannot be recorded as JSON"):
        load_loss(f"{user_module}:BadConfig")


def test_an_instance_takes_no_arguments(user_module):
    with pytest.raises(FortifaiError, match="an instance takes no loss arguments"):
        load_loss(f"{user_module}:INSTANCE", gamma=2)


@pytest.mark.parametrize("spec,kwargs,match", [
    ("tce", {"gamma": "abc"}, r"'tce': TCE gamma must be a number, got 'abc' \(str\)"),
    ("tce", {"gamma": True}, "TCE gamma must be a number"),
    ("tce", {"gamma": float("nan")}, "finite"),
    ("tce", {"normalize": 3}, "normalize must be 'all' or 'kept'"),
    ("focal", {"gamma": [2]}, "Focal gamma must be a number"),
    ("focal", {"gamma": float("inf")}, "finite"),
    ("focal", {"detach_weight": "false"}, "detach_weight must be true or false"),
    ("tce:0.9", {"gamma": 0.8}, "gamma given twice"),
    ("tce:abc", {}, "the value after ':' is gamma, a number"),
])
def test_built_in_arguments_of_the_wrong_type(spec, kwargs, match):
    with pytest.raises(FortifaiError, match=match):
        load_loss(spec, **kwargs)


def test_parse_loss_args_refuses_bad_yaml_duplicates_and_mappings():
    with pytest.raises(FortifaiError, match=r"--loss-args gamma='\[1': invalid YAML value"):
        parse_loss_args("gamma=[1")
    with pytest.raises(FortifaiError, match="invalid YAML value"):
        parse_loss_args("gamma=!!python/object/apply:os.system [x]")
    with pytest.raises(FortifaiError, match="gamma given twice"):
        parse_loss_args(["gamma=1", "gamma=2"])
    with pytest.raises(FortifaiError, match="a mapping is not a loss argument"):
        parse_loss_args("gamma={a: 1}")


CTOR_RAISES = """
from fortifai_bench.losses import Loss
class Picky(Loss):
    def __init__(self, cap=1.0):
        if cap > 0.5:
            raise ValueError(f"cap {cap} is too large")
        self.cap = cap
    def reduce(self, logp, valid):
        return -logp.sum(), valid
"""


def test_a_constructor_raising_anything_names_the_spec_and_arguments(tmp_path, monkeypatch):
    (tmp_path / "picky_losses.py").write_text(CTOR_RAISES)
    monkeypatch.chdir(tmp_path)
    importlib.invalidate_caches()
    with pytest.raises(FortifaiError, match=r"'picky_losses:Picky': Picky\(cap=2\) raised ValueError: cap 2 is too large"):
        load_loss("picky_losses:Picky", cap=2)
    assert load_loss("picky_losses:Picky", cap=0.1).describe()["target"] == "picky_losses:Picky"


IMPORT_PROBE = """
import json, sys
before = list(sys.path)
from fortifai_bench.losses import load_loss
loss = load_loss("probe_losses:Halved")
after = list(sys.path)
import colorsys  # the working folder holds a colorsys.py too: the standard library's must win
print(json.dumps({"same_path": before == after, "colorsys": colorsys.__file__,
                  "helper": loss.loss.helper_value}))
"""

PROBE_LOSSES = """
from fortifai_bench.losses import CE
import probe_helper  # a sibling module in the user's folder

class Halved(CE):
    helper_value = probe_helper.VALUE
"""


def test_a_user_module_leaves_sys_path_and_the_folder_as_they_were(tmp_path):
    """`--loss probe_losses:Halved` from the folder holding it, as an installed script would run it (no
    working folder on sys.path): it imports its sibling, but afterwards sys.path is as before, an unrelated
    module of the same name as one in that folder comes from the standard library, and no __pycache__ is left."""
    import json
    import subprocess
    import sys

    (tmp_path / "probe_losses.py").write_text(PROBE_LOSSES)
    (tmp_path / "probe_helper.py").write_text("VALUE = 42\n")
    (tmp_path / "colorsys.py").write_text("raise RuntimeError('the working folder shadowed the stdlib')\n")
    # -I: isolated mode, no working folder on sys.path (like a console script), no PYTHON* variables
    proc = subprocess.run([sys.executable, "-I", "-c", IMPORT_PROBE], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["same_path"] and result["helper"] == 42
    assert not result["colorsys"].startswith(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colorsys.py", "probe_helper.py", "probe_losses.py"]


def test_a_module_calling_sys_exit_on_import_is_one_error(tmp_path, monkeypatch):
    (tmp_path / "exiting_losses.py").write_text("import sys\nsys.exit(7)\n")
    monkeypatch.chdir(tmp_path)
    importlib.invalidate_caches()
    with pytest.raises(FortifaiError, match=r"cannot import 'exiting_losses': it called sys.exit\(7\)"):
        load_loss("exiting_losses:Loss")
    import sys

    assert "exiting_losses" not in sys.modules
