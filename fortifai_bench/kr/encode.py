"""KR questions into token ids exactly as lm-eval's HFLM encodes a `multiple_choice` request.

The context and the whole `context + " " + continuation` are encoded with the tokenizer's defaults (the
tiny tokenizer prepends BOS), and the continuation's tokens are `whole[len(context_tokens):]`; a question
becomes an `Item` (its context tokens and both continuations'), cut to the model's window as lm-eval cuts:
a context too long for the window loses its first tokens (`Item.cut` says how many).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fortifai_bench.errors import FortifaiError

TARGET_DELIMITER = " "  # lm-eval's default target_delimiter, used by our task YAMLs
_SEQLEN_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
_DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM default when neither config nor tokenizer says


@dataclass(frozen=True)
class Item:
    ctx: list[int]
    conts: tuple[list[int], list[int]]  # true, false
    cut: int = 0  # context tokens dropped on the left to fit the model's window (lm-eval drops them too)


def question_field(question: Any, name: str):
    if isinstance(question, dict):
        return question[name]
    return getattr(question, name)


def model_window(model, tokenizer=None) -> int:
    """The most tokens `model` takes in one sequence (lm-eval's HFLM `max_length`): the config's
    n_positions / max_position_embeddings / n_ctx, else the tokenizer's model_max_length, else 2048."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        for attr in _SEQLEN_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 10**9:
        return tml
    return _DEFAULT_MAX_LENGTH


class _Encoder:
    """lm-eval's HFLM `tok_encode` / `_encode_pair` for a causal model, batched where it is the same."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_str = tokenizer.decode(self.prefix_id) if self.prefix_id is not None else None

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        # HFLM encodes with the tokenizer's defaults, except that a text already starting with the prefix
        # token's string gets no added special tokens.
        unique = list(dict.fromkeys(texts))  # questions about one fact share their context and true text
        by_text = dict(zip(unique, self._ids(unique))) if texts else {}
        out = [by_text[text] for text in texts]
        for i, text in enumerate(texts):
            if self.prefix_str and text.startswith(self.prefix_str):
                out[i] = self.tok.encode(text, add_special_tokens=False)
        return [list(x) for x in out]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """`tokenizer(texts)["input_ids"]`. For a fast tokenizer with no truncation or padding set, straight
        from its Rust backend: the same ids, without the Python conversion of every encoding into masks
        and offsets that `__call__` adds (3x the cost of the encoding itself on KR items; issue 14)."""
        backend = getattr(self.tok, "backend_tokenizer", None) if getattr(self.tok, "is_fast", False) else None
        if backend is not None and backend.truncation is None and backend.padding is None:
            return [e.ids for e in backend.encode_batch(texts, add_special_tokens=True)]
        return self.tok(texts)["input_ids"]

    def pairs(self, contexts: list[str], *choices: list[str]) -> list[list[tuple[list[int], list[int]]]]:
        """(context_tokens, continuation_tokens) for each (context, " " + continuation) request, one list
        per list of continuations in `choices` (the contexts are encoded once for all of them)."""
        moved_ctx, spaces = [], []
        for ctx in contexts:
            n_spaces = len(ctx) - len(ctx.rstrip())
            # lm-eval moves the context's trailing spaces into the continuation
            moved_ctx.append(ctx[:-n_spaces] if n_spaces else ctx)
            spaces.append(ctx[len(ctx) - n_spaces:])
        ctx_enc = self.encode_many(moved_ctx)
        return [self._pairs(moved_ctx, [s + c for s, c in zip(spaces, conts)], ctx_enc) for conts in choices]

    def _pairs(self, moved_ctx, moved_cont, ctx_enc):
        whole_enc = self.encode_many([c + d for c, d in zip(moved_ctx, moved_cont)])
        pairs = []
        for ctx, cont, c_enc, w_enc in zip(moved_ctx, moved_cont, ctx_enc, whole_enc):
            if ctx == "":  # lm-eval conditions an empty context on the prefix token
                cont_enc = self.tok.encode(cont, add_special_tokens=False)
                if cont_enc and cont_enc[0] == self.prefix_id:
                    pairs.append((cont_enc[:1], cont_enc[1:]))
                else:
                    pairs.append(([self.prefix_id], cont_enc))
            else:
                pairs.append((c_enc, w_enc[len(c_enc):]))
        return pairs


def encode_items(questions: Sequence[Any], tokenizer, max_length: int) -> list[Item]:
    enc = _Encoder(tokenizer)
    contexts = [str(question_field(q, "context")) for q in questions]
    trues = [TARGET_DELIMITER + str(question_field(q, "true")) for q in questions]
    falses = [TARGET_DELIMITER + str(question_field(q, "false")) for q in questions]
    pt, pf = enc.pairs(contexts, trues, falses)
    items = []
    for i, ((ctx_t, cont_t), (ctx_f, cont_f)) in enumerate(zip(pt, pf)):
        qid = question_field(questions[i], "id")
        if ctx_t != ctx_f:  # cannot happen for a non-empty context: both are encode(context)
            raise FortifaiError(f"question {qid}: its two choices tokenize to different contexts")
        if not cont_t or not cont_f:
            raise FortifaiError(f"question {qid}: a continuation tokenizes to nothing")
        longest = max(len(cont_t), len(cont_f))
        if longest > max_length:
            raise FortifaiError(f"question {qid}: a continuation of {longest} tokens exceeds the model's "
                                f"{max_length}-token window")
        # lm-eval keeps the last max_length+1 tokens of context+continuation; with a shared context we cut
        # it to fit the longer continuation (identical to lm-eval for it, a few tokens more for the other).
        keep = max_length + 1 - longest
        items.append(Item(ctx_t[-keep:], (cont_t, cont_f), max(0, len(ctx_t) - keep)))
    return items
