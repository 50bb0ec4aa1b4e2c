"""The KR scorer's one-row-per-question path (a two-branch tree mask) and its fallbacks."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel

from fortifai_bench.kr import encode, kvcache
from fortifai_bench.kr import tree as kr_tree
from fortifai_bench.kr.encode import Item
from fortifai_bench.kr.scoring import score
# the exactness tests' hand-made questions and models (module fixtures)
from test_kr_score import _questions, gpt2_tiny, llama_tiny  # noqa: F401


def _items(model, tokenizer, n=40):
    return encode.encode_items(_questions(n), tokenizer, encode.model_window(model, tokenizer))


@pytest.mark.parametrize("which", ["gpt2_tiny", "llama_tiny"])
def test_tree_rows_equal_the_kv_cache_path_token_by_token(which, request):
    model, tokenizer = request.getfixturevalue(which)
    items = _items(model, tokenizer)
    pad = tokenizer.pad_token_id
    mode = kr_tree.tree_mode(model, items, pad, torch.device("cpu"), True)
    assert mode == "hidden"  # both honour the 4D mask and project with their output embedding
    for s in range(0, len(items), 7):  # mixed lengths inside a batch: left padding is exercised
        batch = items[s : s + 7]
        for m in ("hidden", "mask", "last"):
            tree = kr_tree.batch_tree(model, batch, pad, torch.device("cpu"), m)
            ref = kvcache.batch_shared(model, batch, pad, torch.device("cpu"), True)
            for (tt, tf), (rt, rf) in zip(tree, ref):
                assert len(tt) == len(rt) and len(tf) == len(rf)
                assert max(abs(a - b) for a, b in zip(tt + tf, rt + rf)) < 1e-4


class _OwnMask(GPT2LMHeadModel):
    """A model that builds its own causal mask whatever it is given (as older or custom code does)."""

    def forward(self, input_ids=None, attention_mask=None, cache=None, **kwargs):
        if attention_mask is not None and attention_mask.ndim == 4:
            attention_mask = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs)


def test_a_model_that_ignores_the_tree_mask_gets_the_kv_cache_path(gpt2_tiny):
    model, tokenizer = gpt2_tiny
    own = _OwnMask(model.config).eval()
    own.load_state_dict(model.state_dict())
    items = _items(own, tokenizer)
    assert kr_tree.tree_mode(own, items, tokenizer.pad_token_id, torch.device("cpu"), True) is None
    qs = _questions(40)
    got, naive = score(own, tokenizer, qs, batch_size=7), score(own, tokenizer, qs, batch_size=7, shared_context=False)
    assert max(abs(a - b) for a, b in zip(got.logp_true + got.logp_false, naive.logp_true + naive.logp_false)) < 1e-4


def test_rows_too_long_or_too_many_use_the_kv_cache_path():
    item = Item(list(range(100)), (list(range(20)), list(range(30))))  # a row of 148 tokens
    assert kr_tree.tree_fits([item] * 4, max_length=512)
    assert not kr_tree.tree_fits([item] * 4, max_length=147)  # longer than the model's window
    assert not kr_tree.tree_fits([item] * (kr_tree._TREE_MAX_ELEMENTS // 148**2 + 1), max_length=512)


def test_tree_mask_layout():
    item = Item([5, 6], ([7, 8], [9, 10, 11]))  # row: ctx 5 6 | true 7 | false 9 10, one pad in a batch of 2
    long = Item([5, 6, 6], ([7, 8], [9, 10, 11]))
    ids, pos, mask = kr_tree._tree_inputs([item, long], pad_id=0, dtype=torch.float32)
    assert ids[0].tolist() == [0, 5, 6, 7, 9, 10]
    assert pos[0, 1:].tolist() == [0, 1, 2, 2, 3]  # the false branch restarts where the context ends
    seen = (mask[0, 0] == 0).int().tolist()
    assert seen == [[1, 0, 0, 0, 0, 0],   # padding sees only itself
                    [0, 1, 0, 0, 0, 0],
                    [0, 1, 1, 0, 0, 0],
                    [0, 1, 1, 1, 0, 0],   # true: context + itself
                    [0, 1, 1, 0, 1, 0],   # false: context, not the true branch
                    [0, 1, 1, 0, 1, 1]]
    _, _, allowed = kr_tree._tree_inputs([item, long], pad_id=0, dtype=None)  # the boolean mask (sdpa)
    assert allowed.dtype == torch.bool and torch.equal(allowed, mask == 0)
