"""Regeneration: M_i rewrites a split, block by block, batched with a KV cache.

Each paragraph is tokenized; its first `prompt` text tokens (at most half of them) are kept
verbatim, because nothing precedes them to continue from. Every later block of `block` tokens is
replaced by the model's continuation of at most `context` preceding tokens (and at most the model's
window: a longer paragraph is rewritten all the same), always producing exactly as many tokens as it
replaces (end-of-text is banned), so lengths stay put from stage to stage.

Two block modes:

* ``sequential``: the context of block j is the *already regenerated* text (blocks 0..j-1 of the
  output). The paragraph is one continuous generation; when it outgrows `context`, the cache is
  rebuilt from the last `context - block` tokens at a block boundary.
* ``original``: the context of block j is the text as it was *before* this regeneration, and every
  block gets exactly `block` new tokens (the authors' `src/generate.py`, `generate_dataset`). All blocks of all paragraphs are
  independent rows of one batch. Seams between blocks can break sentences. A block whose context is
  its paragraph's whole prefix continues the KV cache of one forward pass over the paragraph, shared
  by all its blocks, so a paragraph's text is read once, not once per block.

Decoding is sampling (temperature, top-p, optional repetition penalty) with the Gumbel-max trick
(argmax of logits minus the log of Exp(1) noise: one kernel, no `multinomial`), greedy (the argmax
itself: the model's mode, with the same optional repetition penalty), or beam search
with repetition penalty through Hugging Face `generate` (the paper's beam 5, penalty 3.0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import time
from dataclasses import dataclass, field

import torch

from fortifai_bench.collapse.config import RegenerateSettings
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.encode import model_window
from fortifai_bench.models import cache_argument


@dataclass
class Regenerated:
    """The rewritten texts, their token ids (special prefix included) and which tokens are new."""

    texts: list[str]
    ids: list[list[int]]
    generated: list[list[bool]]
    new_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _special_prefix(ids: list[int], special: set[int]) -> int:
    n = 0
    while n < len(ids) and ids[n] in special:
        n += 1
    return n


def _banned_ids(tokenizer) -> list[int]:
    eos = tokenizer.eos_token_id
    ids = eos if isinstance(eos, list) else [eos]
    return sorted({i for i in ids + [tokenizer.pad_token_id, tokenizer.bos_token_id] if i is not None})


def row_generator(seed: int, key) -> torch.Generator:
    """The sampling noise of one paragraph (or one block of it): seeded by (seed, key) alone, so a row's
    draws do not depend on which rows share its batch, the batch size or the number of processes."""
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)


def regenerate(model, tokenizer, texts: list[str], settings: RegenerateSettings, *, seed: int = 0,
               keys: list | None = None, progress: bool = False, desc: str = "regenerate",
               shared_prefix: bool = True) -> Regenerated:
    """Rewrite `texts` with `model` (see module doc). `keys` (default: the positions) name the texts for
    their per-paragraph sampling seeds: the same (seed, key, text, model) gives the same rewrite whatever
    else is in the batch, up to float differences between batched matmuls of different shapes.
    `shared_prefix`: in `original` mode, continue one forward pass over each paragraph (`_regenerate_original`);
    False reads every block's context anew (the same tokens up to float rounding: for benchmarks)."""
    start = time.perf_counter()
    settings = _fit_window(settings, model, tokenizer)
    special = set(tokenizer.all_special_ids)
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    plans = []  # (ids, first regenerated position)
    for ids in encoded:
        n_special = _special_prefix(ids, special)
        n_text = len(ids) - n_special
        keep = min(settings.prompt, n_text // 2) if n_text > 1 else n_text
        plans.append((ids, n_special + keep))
    keys = list(range(len(texts))) if keys is None else list(keys)
    if len(keys) != len(texts):
        raise ValueError(f"regenerate: {len(keys)} keys for {len(texts)} texts")
    was_training = model.training
    model.eval()
    try:
        if settings.mode == "sequential":
            gens = [row_generator(seed, k) for k in keys]
            out_ids = _regenerate_sequential(model, tokenizer, plans, settings, gens, progress, desc)
        else:
            out_ids = _regenerate_original(model, tokenizer, plans, settings, (seed, keys), progress, desc,
                                           shared_prefix)
    finally:
        model.train(was_training)
    generated = [[j >= first for j in range(len(ids))] for (ids, first) in plans]
    n_special = [_special_prefix(ids, special) for ids, _ in plans]
    out_texts = [tokenizer.decode(ids[k:], skip_special_tokens=True) for ids, k in zip(out_ids, n_special)]
    new = sum(len(ids) - first for ids, first in plans)
    return Regenerated(out_texts, out_ids, generated, new, time.perf_counter() - start)


def _fit_window(settings: RegenerateSettings, model, tokenizer) -> RegenerateSettings:
    """`settings` with its context cut to the model's window: no row the model sees is longer than the
    window, so a paragraph of any length is rewritten (its blocks continue the last `context` tokens)."""
    window = model_window(model, tokenizer)
    if settings.block >= window:  # a block needs at least one token of context within the window
        raise FortifaiError(f"regenerate.block={settings.block} must be smaller than the model's "
                            f"{window}-token window")
    return settings if settings.context <= window else dataclasses.replace(settings, context=window)


# ----------------------------------------------------------------------------------------------- modes

def _batches(order: list[int], size: int):
    for s in range(0, len(order), size):
        yield order[s : s + size]


def _regenerate_sequential(model, tokenizer, plans, settings, gens, progress, desc):
    from tqdm.auto import tqdm

    out = [list(ids[:first]) for ids, first in plans]
    remaining = [len(ids) - first for ids, first in plans]
    # Similar lengths together: rows that finish early generate tokens that are thrown away.
    order = sorted(range(len(plans)), key=lambda i: (remaining[i], len(out[i])))
    bar = tqdm(total=sum(remaining), desc=desc, unit="tok", disable=not progress, leave=False)
    for rows in _batches(order, settings.batch_size):
        while True:
            need = max(remaining[r] for r in rows)
            if need == 0:
                break
            longest = max(len(out[r]) for r in rows)
            if longest + need <= settings.context:
                n_new, contexts = need, [out[r] for r in rows]  # fits: one continuous generation
            else:
                # Rebuild the cache from the last (context - block) tokens, then one block.
                n_new = min(settings.block, need)
                contexts = [out[r][-(settings.context - n_new):] for r in rows]
            new = _generate(model, tokenizer, contexts, n_new, settings, [gens[r] for r in rows])
            for r, toks in zip(rows, new.tolist()):
                take = min(n_new, remaining[r])
                out[r].extend(toks[:take])
                remaining[r] -= take
                bar.update(take)
    bar.close()
    return out


def _regenerate_original(model, tokenizer, plans, settings, seed_keys, progress, desc, shared_prefix=True):
    from tqdm.auto import tqdm

    jobs = []  # (paragraph, start, length): one row per block, context from the input text
    for p, (ids, first) in enumerate(plans):
        for s in range(first, len(ids), settings.block):
            jobs.append((p, s, min(settings.block, len(ids) - s)))
    out = [list(ids) for ids, _ in plans]
    seed, keys = seed_keys
    gens = [row_generator(seed, f"{keys[p]}/{s}") for p, s, _ in jobs]  # one per block: blocks run in parallel
    reach = settings.context - settings.block  # the most original text a block continues
    bar = tqdm(total=sum(j[2] for j in jobs), desc=desc, unit="tok", disable=not progress, leave=False)

    def run(rows, states=None):
        contexts = [plans[jobs[j][0]][0][max(0, jobs[j][1] - reach) : jobs[j][1]] for j in rows]
        cache = None if states is None else _prefix_cache([states[jobs[j][0]] for j in rows],
                                                          [jobs[j][1] - 1 for j in rows])
        new = _generate(model, tokenizer, contexts, max(jobs[j][2] for j in rows), settings, [gens[j] for j in rows],
                        cache)
        for j, toks in zip(rows, new.tolist()):
            p, s, n = jobs[j]
            out[p][s : s + n] = toks[:n]
            bar.update(n)

    # A block whose context is its paragraph's whole prefix continues the KV cache of ONE forward pass over the
    # paragraph, shared by all its blocks, instead of re-reading that prefix: a paragraph of L tokens costs L
    # context positions, not about L^2 / (2 block). Paragraphs go in groups, longest with longest, so that only
    # one group's keys and values are held at a time. Blocks past `reach` (a paragraph longer than the
    # window) read their own sliding context, as before. Beam search is HF `generate`'s: no shared prefix.
    shared = shared_prefix and settings.decoding != "beam" and shares_prefix(model.config)
    prefix = [j for j, (_, s, _) in enumerate(jobs) if shared and 1 < s <= reach]
    rest = sorted(set(range(len(jobs))) - set(prefix), key=lambda j: min(jobs[j][1], reach))
    by_length = sorted({jobs[j][0] for j in prefix}, key=lambda p: len(plans[p][0]))
    for group in _batches(by_length, settings.batch_size):
        mine = set(group)
        rows = sorted((j for j in prefix if jobs[j][0] in mine), key=lambda j: jobs[j][1])
        states = _prefix_states(model, {p: plans[p][0][: max(jobs[j][1] for j in rows if jobs[j][0] == p) - 1]
                                        for p in group})
        for batch in _batches(rows, settings.batch_size):
            run(batch, states)
    for batch in _batches(rest, settings.batch_size):
        run(batch)
    bar.close()
    return out


def shares_prefix(config) -> bool:
    """Whether a model of this config regenerates `original` blocks from a shared prefix: its KV cache a
    `DynamicCache` of plain per-layer keys and values whose rows can be cut out and put back together
    (transformers 5), and no sliding-window layer (Gemma 3's, Mistral's)."""
    from transformers import DynamicCache

    types = getattr(config, "layer_types", None) or []
    return hasattr(DynamicCache(), "layers") and not getattr(config, "sliding_window", None) \
        and all(t == "full_attention" for t in types)


@torch.inference_mode()
def _prefix_states(model, prefixes: dict[int, list[int]]) -> dict[int, list[tuple]]:
    """Per paragraph, every layer's (keys, values) over its prefix, from one right-padded forward pass."""
    device = next(model.parameters()).device
    order = list(prefixes)
    width = max(len(prefixes[p]) for p in order)
    ids = torch.zeros(len(order), width, dtype=torch.long)
    mask = torch.zeros(len(order), width, dtype=torch.long)
    for i, p in enumerate(order):
        ids[i, : len(prefixes[p])] = torch.tensor(prefixes[p], dtype=torch.long)
        mask[i, : len(prefixes[p])] = 1
    name = cache_argument(model)
    res = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True, logits_to_keep=1)
    layers = [(layer.keys, layer.values) for layer in getattr(res, name).layers]
    return {p: [(k[i], v[i]) for k, v in layers] for i, p in enumerate(order)}


def _prefix_cache(states: list[list[tuple]], lengths: list[int]):
    """A batch's KV cache, left-padded as `_left_pad` pads its contexts: row r holds the first `lengths[r]`
    positions of its paragraph's keys and values (every context token but the last, which the first decoding
    step feeds)."""
    from transformers import DynamicCache

    width = max(lengths)
    if width == 0:
        return None
    layers = []
    for layer in range(len(states[0])):
        k0, v0 = states[0][layer]
        keys = k0.new_zeros(len(states), k0.shape[0], width, k0.shape[2])
        values = v0.new_zeros(len(states), v0.shape[0], width, v0.shape[2])
        for r, (state, n) in enumerate(zip(states, lengths)):
            keys[r, :, width - n :] = state[layer][0][:, :n]
            values[r, :, width - n :] = state[layer][1][:, :n]
        layers.append((keys, values))
    return DynamicCache(layers)


# ----------------------------------------------------------------------------------------------- decoding

def _left_pad(contexts: list[list[int]], pad_id: int):
    width = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for i, c in enumerate(contexts):
        ids[i, width - len(c):] = torch.tensor(c, dtype=torch.long)
        mask[i, width - len(c):] = 1
    return ids, mask


def _generate(model, tokenizer, contexts, n_new, settings: RegenerateSettings, gens, cache=None) -> torch.Tensor:
    """`n_new` tokens continuing each context: a ``[len(contexts), n_new]`` tensor. `cache`: the KV cache of
    every context but its last token, left-padded alike (`_prefix_cache`), when their prefixes ran already."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = _left_pad(contexts, pad_id)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    banned = _banned_ids(tokenizer)
    if settings.decoding == "beam":
        return _beam(model, ids, mask, n_new, settings, banned, pad_id)
    return _sample(model, ids, mask, n_new, settings, banned, gens, cache)


@torch.inference_mode()
def _sample(model, ids, mask, n_new, settings: RegenerateSettings, banned, gens, cache=None) -> torch.Tensor:
    batch = ids.shape[0]
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    seen = None
    if settings.repetition_penalty != 1.0:
        seen = torch.zeros(batch, vocab, dtype=torch.bool, device=ids.device)
        seen.scatter_(1, ids, mask.bool())
    out = torch.empty(batch, n_new, dtype=torch.long, device=ids.device)
    # the first step reads the whole context, or with a cache of all but its last token, that token alone
    step_ids, step_pos = (ids, positions) if cache is None else (ids[:, -1:], positions[:, -1:])
    for t in range(n_new):
        logits, cache = _step(model, step_ids, mask, step_pos, cache)
        logits[:, banned] = float("-inf")
        if seen is not None:  # the CTRL / HF rule: shrink positive logits, grow negative ones
            pen = torch.where(logits > 0, logits / settings.repetition_penalty, logits * settings.repetition_penalty)
            logits = torch.where(seen, pen, logits)
        logits = logits / settings.temperature
        if settings.top_p < 1.0:
            logits = _top_p(logits, settings.top_p)
        if settings.decoding == "greedy":  # the mode: what the paper's confidence gap is about (Sec. 3)
            tok = logits.argmax(-1)
        else:
            noise = torch.empty_like(logits, device="cpu")
            for r, g in enumerate(gens):  # each row its own stream (see row_generator)
                noise[r].exponential_(1.0, generator=g)
            tok = (logits - noise.to(logits.device).log()).argmax(-1)  # Gumbel-max: a sample from softmax(logits)
        out[:, t] = tok
        if seen is not None:
            seen[torch.arange(batch), tok] = True
        step_ids = tok[:, None]
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
    return out.cpu()


def _step(model, ids, mask, positions, cache):
    """One decoding step with the KV cache: the last position's logits and the new cache. transformers 5
    names the cache `cache` (`past_key_values` is deprecated there); older releases only know the old name."""
    if type(model) not in _FORWARD_ARGS:
        params = inspect.signature(model.forward).parameters
        name = cache_argument(model)
        _FORWARD_ARGS[type(model)] = (name, {"logits_to_keep": 1} if "logits_to_keep" in params else {})
    name, extra = _FORWARD_ARGS[type(model)]
    res = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra, **{name: cache})
    return res.logits[:, -1, :].float(), getattr(res, name)


_FORWARD_ARGS: dict = {}  # model class -> (cache argument name, extra keyword arguments)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, idx = logits.sort(-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix whose mass reaches top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, idx, sorted_logits)


@torch.inference_mode()
def _beam(model, ids, mask, n_new, settings: RegenerateSettings, banned, pad_id) -> torch.Tensor:
    res = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=n_new, min_new_tokens=n_new,
        num_beams=settings.num_beams, repetition_penalty=settings.repetition_penalty, do_sample=False,
        suppress_tokens=banned, pad_token_id=pad_id, early_stopping=False,
    )
    return res[:, ids.shape[1]:].cpu()
