"""Does TCE's `normalize="all"` make the training step smaller than CE's? Under AdamW, measured. (A measurement,
not a test; about a minute on one CPU thread.)

The TCE docstring once claimed that dividing by every real token (the authors' choice) makes the step "~25x
smaller" on memorized data, where TCE(0.9) masks ~96% of the tokens. That holds for the *gradient*; AdamW divides
each coordinate's first moment by the root of its second moment, so a loss scaled by a constant c gives the same
update up to `eps`. This script measures both halves on the project's tiny GPT-2:

A. the same loss scaled by 1 and by 1/25, from one state, same batches: how far apart are AdamW's updates?
B. the real losses on memorized text: TCE(0.9) normalize=all vs normalize=kept vs CE, from one memorized state,
   same batches: masked fraction, gradient norm and the size of the AdamW update (one step, and after all steps).

    python benchmarks/tce_step_size.py [--threads 1] [--paragraphs 32] [--memorize-epochs 40] [--steps 8]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def batches(tok, texts, batch_size):
    out = []
    for i in range(0, len(texts), batch_size):
        b = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
        out.append((b, b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)))
    return out


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def run_steps(model, loss_fn, data, *, lr, scale=1.0, clip=None, eps=1e-8):
    """AdamW (the trainer's optimizer, weight decay 0) over `data`; returns per-step update norms, the total
    update, and the first step's gradient norm and masked fraction."""
    model = copy.deepcopy(model)
    model.train()
    torch.manual_seed(1)  # the same dropout masks in every run, so runs differ only by their loss
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, eps=eps)
    start = flat(model)
    steps, grad_norm, masked = [], None, None
    for b, labels in data:
        before = flat(model)
        out = loss_fn(model(**b).logits, labels)
        opt.zero_grad()
        (out.loss * scale).backward()
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        steps.append(flat(model) - before)
        if grad_norm is None:
            grad_norm, masked = norm, float(out.stats["masked_fraction"])
    return {"steps": steps, "total": flat(model) - start, "grad_norm": grad_norm, "masked": masked}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paragraphs", type=int, default=32)
    ap.add_argument("--memorize-epochs", type=int, default=150)
    ap.add_argument("--steps", type=int, default=8, help="AdamW steps measured from the memorized state")
    ap.add_argument("--lr", type=float, default=5e-3, help="the collapse task's train.lr")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.losses import load_loss
    from fortifai_bench.models import TinyConfig, build_tiny

    t0 = time.perf_counter()
    texts = get_corpus("facts").texts()[: args.paragraphs]
    model, tok = build_tiny(texts, TinyConfig(vocab_size=1024, n_layer=2, n_embd=64, n_head=2), seed=0)
    ce = load_loss("ce")
    data = batches(tok, texts, batch_size=8)

    fresh = copy.deepcopy(model)
    # Memorize the paragraphs with CE, so that TCE(0.9) masks most tokens (the docstring's setting).
    mem = run_steps(model, ce, data * args.memorize_epochs, lr=args.lr)
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            n = p.numel()
            p.add_(mem["total"][offset:offset + n].view_as(p))
            offset += n
    probe = data * ((args.steps + len(data) - 1) // len(data))
    probe = probe[: args.steps]

    print(f"tiny GPT-2, {sum(p.numel() for p in model.parameters())} parameters; {len(texts)} facts paragraphs "
          f"memorized with CE for {args.memorize_epochs} epochs; AdamW lr {args.lr}, eps 1e-8, {args.steps} steps")
    print("A. the same loss (CE) scaled by 1 and by 1/25 (norm ratio = 1/25-scaled over unscaled):")
    for state, m in (("fresh", fresh), ("memorized", model)):
        for clip in (None, 1.0):
            one = run_steps(m, ce, probe, lr=args.lr, clip=clip)
            small = run_steps(m, ce, probe, lr=args.lr, scale=1 / 25, clip=clip)
            print(f"   {state:9s} clip {str(clip):4s}: gradient norm ratio {small['grad_norm'] / one['grad_norm']:.4f}; "
                  f"update norm ratio first step {small['steps'][0].norm().item() / one['steps'][0].norm().item():.4f}"
                  f" (relative difference {rel(small['steps'][0], one['steps'][0]):.2e}), after {args.steps} steps "
                  f"{small['total'].norm().item() / one['total'].norm().item():.4f} "
                  f"(relative difference {rel(small['total'], one['total']):.2e})")

    print("B. TCE(0.9) normalize=all vs normalize=kept vs CE, from the memorized state:")
    results = {}
    for name, fn in (("ce", ce), ("tce all", load_loss("tce:0.9")), ("tce kept", load_loss("tce:0.9", normalize="kept"))):
        results[name] = r = run_steps(model, fn, probe, lr=args.lr, clip=1.0)
        print(f"   {name:9s} masked {r['masked']:.3f}  grad norm {r['grad_norm']:.4f}  first-step update norm "
              f"{r['steps'][0].norm().item():.4e}  total update norm {r['total'].norm().item():.4e}")
    a, k, c = results["tce all"], results["tce kept"], results["ce"]
    print(f"   all/kept: gradient norm {a['grad_norm'] / k['grad_norm']:.4f}, first-step update "
          f"{a['steps'][0].norm().item() / k['steps'][0].norm().item():.4f} (relative difference "
          f"{rel(a['steps'][0], k['steps'][0]):.2e}), total update {a['total'].norm().item() / k['total'].norm().item():.4f}")
    print(f"   all/ce:   gradient norm {a['grad_norm'] / c['grad_norm']:.4f}, first-step update "
          f"{a['steps'][0].norm().item() / c['steps'][0].norm().item():.4f}, total update "
          f"{a['total'].norm().item() / c['total'].norm().item():.4f}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
