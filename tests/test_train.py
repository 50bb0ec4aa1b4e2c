"""The reference trainer: it learns, is reproducible, keeps the best epoch, refuses bad input, runs under DDP."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest
import torch

from fortifai_bench import train as train_module
from fortifai_bench.cli.train import main as train_main
from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses import CE, Loss
from fortifai_bench.models import TinyConfig, build_tiny, load_model, save_model
from fortifai_bench.train import TrainConfig, evaluate, pack, tokenize, train

SMALL = TinyConfig(vocab_size=512, n_layer=2, n_embd=64, n_head=2, n_positions=64)


def fact_texts(n: int, seed: int = 0) -> list[str]:
    """Made-up facts in a few templates: the template words become easy, the names and numbers not."""
    rng = random.Random(seed)
    syll = ["ka", "lo", "mir", "ven", "tor", "sa", "bel", "quin", "ra", "dor", "ei", "zu"]

    def name():
        return "".join(rng.choice(syll) for _ in range(rng.randint(2, 3))).capitalize()

    templates = [
        "Mount {a} is a mountain in {b}. It is {n} metres high.",
        "{a} is a river in {b}. It is {n} kilometres long.",
        "The city of {a} lies in {b}. It was founded in {n}.",
    ]
    return [rng.choice(templates).format(a=name(), b=name(), n=rng.randint(100, 2999)) for _ in range(n)]


TEXTS = fact_texts(96)
VAL = fact_texts(16, seed=1)


def small_model(seed: int = 0, dropout: bool = True):
    model, tokenizer = build_tiny(TEXTS + VAL, SMALL, seed=seed)
    if not dropout:  # for comparisons across process counts, where dropout masks differ
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            setattr(model.config, key, 0.0)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model, tokenizer


def fast(**kw) -> TrainConfig:
    base = dict(epochs=3, lr=3e-3, batch_size=8, block_size=32, warmup=0.1, seed=0)
    return TrainConfig(**{**base, **kw})


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- learning


def test_training_lowers_the_loss_and_logs_each_epoch():
    model, tokenizer = small_model()
    result = train(model, tokenizer, TEXTS, "ce", fast(epochs=3), val_texts=VAL, progress=False)
    h = result.history
    assert [row["epoch"] for row in h] == [1, 2, 3]
    assert set(h[0]) >= {"epoch", "train_loss", "val_loss", "masked_fraction", "mean_p_correct", "tokens_per_s"}
    assert h[-1]["train_loss"] < h[0]["train_loss"] - 0.5
    assert h[-1]["val_loss"] < h[0]["val_loss"]
    assert h[-1]["val_loss"] < math.log(len(tokenizer))  # better than uniform over the vocabulary
    assert h[-1]["mean_p_correct"] > h[0]["mean_p_correct"]
    assert all(row["masked_fraction"] == 0 for row in h)  # CE masks nothing
    assert all(row["tokens_per_s"] > 0 and row["tokens"] > 0 for row in h)
    assert result.best_epoch == min(h, key=lambda r: r["val_loss"])["epoch"]
    assert not result.model.training
    assert result.loss == {"spec": "ce", "target": "fortifai_bench.losses:CE", "args": {}}


def test_tce_masks_confident_tokens_as_the_model_learns():
    model, tokenizer = small_model()
    result = train(model, tokenizer, TEXTS, "tce:0.9", fast(epochs=5, lr=1e-2, batch_size=4, schedule="constant"),
                   val_texts=VAL, progress=False)
    h = result.history
    assert h[0]["masked_fraction"] == 0  # nothing is predicted with p > 0.9 at first
    assert h[-1]["masked_fraction"] > 0.05  # template words are, once learned
    assert result.loss["args"] == {"gamma": 0.9, "normalize": "all"}


def test_same_seed_gives_bit_identical_weights_and_other_seed_differs():
    runs = []
    for seed in (0, 0, 1):
        model, tokenizer = small_model(seed=0)  # same initial weights; dropout stays on
        runs.append(train(model, tokenizer, TEXTS, "tce:0.9", fast(epochs=2, seed=seed, grad_accum=2), progress=False))
    assert same_weights(runs[0].model, runs[1].model)
    strip = [{k: v for k, v in row.items() if k not in ("tokens_per_s", "seconds")} for row in runs[0].history]
    assert strip == [{k: v for k, v in row.items() if k not in ("tokens_per_s", "seconds")} for row in runs[1].history]
    assert not same_weights(runs[0].model, runs[2].model)


class AscendAfter(Loss):
    """CE for the first `n` calls, then gradient *ascent* on CE: validation loss gets worse every later epoch."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def reduce(self, logp, valid):
        self.calls += 1
        loss, kept = CE().reduce(logp, valid)
        return (loss if self.calls <= self.n else -loss), kept


def test_best_checkpoint_is_kept_loaded_and_saved(tmp_path):
    model, tokenizer = small_model()
    config = fast(epochs=3, lr=1e-3)
    n_blocks = len(pack(tokenize(tokenizer, TEXTS), config.block_size, 0))
    per_epoch = math.ceil(n_blocks / config.batch_size)
    result = train(model, tokenizer, TEXTS, AscendAfter(per_epoch), config, val_texts=VAL,
                   out_dir=tmp_path / "run", progress=False)
    vals = [row["val_loss"] for row in result.history]
    assert vals[0] < vals[1] < vals[2]
    assert result.best_epoch == 1 and result.best_val_loss == vals[0]
    val_blocks = pack(tokenize(tokenizer, VAL), config.block_size, 0)
    assert evaluate(result.model, val_blocks, 8) == pytest.approx(vals[0], rel=1e-6)
    saved, _ = load_model(tmp_path / "run")
    assert same_weights(saved, result.model)
    log = json.loads((tmp_path / "run" / "train.json").read_text())
    assert log["best_epoch"] == 1 and len(log["history"]) == 3 and log["config"]["epochs"] == 3
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporaries left behind


def test_loss_given_as_a_plain_function():
    def ce(logits, labels):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())

    model, tokenizer = small_model()
    result = train(model, tokenizer, TEXTS[:48], ce, fast(epochs=1, val_fraction=0.0), progress=False)
    assert result.loss["spec"] == "ce" and result.loss["target"].endswith(":test_loss_given_as_a_plain_function.<locals>.ce")
    assert math.isfinite(result.history[0]["train_loss"]) and result.history[0]["mean_p_correct"] > 0


def test_no_validation_keeps_the_last_epoch():
    model, tokenizer = small_model()
    result = train(model, tokenizer, TEXTS, "ce", fast(epochs=2, val_fraction=0.0), progress=False)
    assert result.best_epoch == 2 and result.best_val_loss is None
    assert all(row["val_loss"] is None for row in result.history)


def test_val_fraction_holds_out_whole_texts_deterministically():
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a = train_module.split_texts(TEXTS, 0.25, gen())
    b = train_module.split_texts(TEXTS, 0.25, gen())
    assert a == b and len(a[1]) == 24 and len(a[0]) == 72
    assert sorted(a[0] + a[1]) == sorted(TEXTS)


# ----------------------------------------------------------------------------- packing


def test_pack_pads_the_tail_and_masks_it():
    blocks = pack(list(range(1, 11)), 4, pad_id=99)
    assert blocks.ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 99, 99]]
    assert blocks.mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
    _, _, labels = blocks.batch(torch.tensor([1, 2]))
    assert labels.tolist() == [[5, 6, 7, 8], [9, 10, -100, -100]]
    ids, mask, labels = blocks.batch(torch.tensor([2]))  # padding past the longest row is cut off
    assert ids.tolist() == [[9, 10]] and mask.tolist() == [[1, 1]] and labels.tolist() == [[9, 10]]
    assert len(pack(list(range(9)), 4, 0)) == 2  # a one-token tail has no target: dropped


def test_tokenize_keeps_bos_and_separates_texts_without_it():
    import copy

    from tokenizers import processors

    _, tokenizer = small_model()
    texts = ["Mount Kalo is high.", "Ravel is a river."]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert tokenize(tokenizer, texts) == ids[0] + ids[1]  # BOS starts each text already
    plain = copy.deepcopy(tokenizer)
    plain.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    plain_ids = [plain(t)["input_ids"] for t in texts]
    assert plain_ids[0][0] != tokenizer.bos_token_id
    eos = plain.eos_token_id
    assert tokenize(plain, texts) == plain_ids[0] + [eos] + plain_ids[1] + [eos]


def test_tokenizer_without_pad_or_eos_still_trains():
    model, tokenizer = small_model()
    tokenizer.pad_token = None
    tokenizer.eos_token = None
    assert tokenizer.pad_token_id is None and tokenizer.eos_token_id is None
    result = train(model, tokenizer, TEXTS[:40], "ce", fast(epochs=1, block_size=48), progress=False)
    assert math.isfinite(result.history[0]["train_loss"])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("texts,match", [
    ([], "no training texts"),
    (["", "   "], "no training texts"),
    (["Short.", "Tiny."], r"give \d+ tokens, fewer than one block of block_size=32"),
])
def test_bad_texts(texts, match):
    model, tokenizer = small_model()
    with pytest.raises(FortifaiError, match=match):
        train(model, tokenizer, texts, "ce", fast(val_fraction=0.0), progress=False)


def test_one_text_cannot_be_split_for_validation():
    model, tokenizer = small_model()
    with pytest.raises(FortifaiError, match="val_fraction=0.1 of 1 text"):
        train(model, tokenizer, [" ".join(TEXTS)], "ce", fast(val_fraction=0.1), progress=False)


def test_empty_val_texts_is_an_error():
    model, tokenizer = small_model()
    with pytest.raises(FortifaiError, match="val_texts"):
        train(model, tokenizer, TEXTS, "ce", fast(), val_texts=[""], progress=False)


def test_out_dir_with_another_run_is_not_clobbered(tmp_path):
    model, tokenizer = small_model()
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"precious")
    with pytest.raises(FortifaiError, match="already holds another run"):
        train(model, tokenizer, TEXTS, "ce", fast(epochs=1), out_dir=out, progress=False)
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FortifaiError, match="already holds another run"):
        train(model, tokenizer, TEXTS, "ce", fast(epochs=1), out_dir=tmp_path / "file", progress=False)


def nan_after_two(logits, labels):
    nan_after_two.calls = getattr(nan_after_two, "calls", 0) + 1
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
    return loss * (float("nan") if nan_after_two.calls > 2 else 1.0)


def test_nan_loss_names_epoch_step_and_spec_and_writes_nothing(tmp_path, monkeypatch):
    module = tmp_path / "nanloss_mod.py"
    module.write_text("import torch\n" + _source(nan_after_two))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    model, tokenizer = small_model()
    with pytest.raises(FortifaiError, match=r"epoch 1 step 3: loss 'nanloss_mod:nan_after_two' returned nan") as info:
        train(model, tokenizer, TEXTS, "nanloss_mod:nan_after_two", fast(), out_dir=tmp_path / "out", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("__")) == ["nanloss_mod.py"]


def _source(fn) -> str:
    import inspect

    return inspect.getsource(fn)


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": 0}, "lr must be > 0"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"block_size": 1}, "block_size must be an integer >= 2"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"grad_accum": 0}, "grad_accum must be an integer >= 1"),
    ({"warmup": 1.5}, "fraction in"),
    ({"warmup": -1}, "step count"),
    ({"schedule": "step"}, "schedule must be one of cosine, linear, constant"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"bf16": "yes"}, "bf16"),
    ({"device": "tpu"}, "unknown device"),
])
def test_config_validates(kwargs, match):
    with pytest.raises(FortifaiError, match=match):
        TrainConfig(**kwargs)


def test_bf16_true_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error is for CPU-only machines")
    model, tokenizer = small_model()
    with pytest.raises(FortifaiError, match="bf16=True needs a CUDA device"):
        train(model, tokenizer, TEXTS, "ce", fast(bf16=True), progress=False)


@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_other_schedules_and_warmup_steps_run(schedule):
    model, tokenizer = small_model()
    result = train(model, tokenizer, TEXTS[:48], "ce", fast(epochs=1, schedule=schedule, warmup=2), progress=False)
    assert result.history[0]["lr"] == pytest.approx(3e-3 if schedule == "constant" else 0.0, abs=1e-9)


# ----------------------------------------------------------------------------- command line


def test_cli_trains_tiny_and_saves(tmp_path, capsys):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(TEXTS) + "\n\n")
    out = tmp_path / "out"
    rc = train_main(["--model", "tiny", "--text-file", str(text), "--epochs", "1", "--block-size", "32",
                            "--batch-size", "16", "--loss", "tce:0.8", "--loss-args", "normalize=kept",
                            "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and f"saved to {out}" in printed
    log = json.loads((out / "train.json").read_text())
    assert log["loss"] == {"spec": "tce:0.8", "target": "fortifai_bench.losses:TCE",
                           "args": {"gamma": 0.8, "normalize": "kept"}}
    model, tokenizer = load_model(out)
    assert model.config.n_layer == TinyConfig.n_layer
    assert tokenizer("Mount")["input_ids"][0] == tokenizer.bos_token_id


def test_cli_trains_on_a_registered_corpus(tmp_path, capsys):
    rc = train_main(["--corpus", "facts", "--epochs", "1", "--block-size", "64", "--batch-size", "32",
                            "--threads", "1", "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    log = json.loads((tmp_path / "out" / "train.json").read_text())
    assert log["history"][0]["tokens"] > 1000 and log["history"][0]["val_loss"] is not None


@pytest.mark.parametrize("args,match", [
    (["--model", "{tmp}/missing"], "model directory .*missing not found"),
    (["--text-file", "{tmp}/none.txt"], "cannot read --text-file"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--loss", "nope_mod_xyz:L"], "cannot import"),
    (["--out", "{tmp}"], "already holds another run"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, match):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(TEXTS))
    base = ["--model", "tiny", "--text-file", str(text), "--epochs", "1", "--no-progress"]
    rc = train_main(base + [a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("fortifai-bench: error:") and "\n" not in err
    assert __import__("re").search(match, err), err


# ----------------------------------------------------------------------------- DDP


def _even_prefix(tokenizer, texts, block_size, world):
    """The longest prefix of `texts` that packs into full blocks, a multiple of `world` of them.

    Then every process gets the same number of real tokens in every batch, so DDP's average of the
    per-process mean losses is exactly the single-process mean: the curves may differ only by
    floating-point summation order.
    """
    for n in range(len(texts), 0, -1):
        length = len(tokenize(tokenizer, texts[:n]))
        if length % block_size == 0 and (length // block_size) % world == 0:
            return texts[:n]
    pytest.fail("no prefix of the test texts packs evenly; change the test texts")


DDP_TOLERANCE = 1e-4  # relative, on every epoch's train and validation loss


def test_ddp_two_processes_match_single_process(tmp_path):
    model, tokenizer = small_model(dropout=False)
    base = save_model(model, tokenizer, tmp_path / "base")
    texts = _even_prefix(tokenizer, fact_texts(160, seed=2), 32, 2)
    (tmp_path / "train.txt").write_text("\n".join(texts))
    (tmp_path / "val.txt").write_text("\n".join(VAL))
    args = ["--model", str(base), "--text-file", str(tmp_path / "train.txt"),
            "--val-text-file", str(tmp_path / "val.txt"), "--epochs", "2", "--batch-size", "4",
            "--block-size", "32", "--lr", "3e-3", "--loss", "tce:0.9", "--seed", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "fortifai_bench.train", *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "train.json").read_text())["history"]

    model, tokenizer = load_model(base)
    single = train(model, tokenizer, texts, "tce:0.9",
                   TrainConfig(epochs=2, batch_size=4, block_size=32, lr=3e-3, seed=0),
                   val_texts=VAL, progress=False).history
    assert [r["tokens"] for r in ddp] == [r["tokens"] for r in single]
    for a, b in zip(ddp, single):
        for key in ("train_loss", "val_loss", "mean_p_correct"):
            assert a[key] == pytest.approx(b[key], rel=DDP_TOLERANCE), (key, a, b)
    assert single[-1]["train_loss"] < single[0]["train_loss"]  # it did train


def test_no_packing_puts_each_text_on_its_own_row_from_position_zero():
    from fortifai_bench.models import build_tiny
    from fortifai_bench.train import TrainConfig, prepare

    texts = ["alpha beta gamma delta", "epsilon zeta", "eta theta iota kappa lambda mu nu xi omicron pi rho"]
    _, tokenizer = build_tiny(texts * 5)
    config = TrainConfig(block_size=8, packing=False, val_fraction=0.0)
    blocks, val = prepare(tokenizer, texts, None, config, torch.Generator().manual_seed(0))
    assert val is None and len(blocks) == len(texts)
    for row, mask, text in zip(blocks.ids, blocks.mask, texts):
        expected = tokenizer(text)["input_ids"][:8]
        assert row[: len(expected)].tolist() == expected and row[0].item() == tokenizer.bos_token_id
        assert mask.sum().item() == len(expected)


def test_ddp_with_uneven_shards_matches_single_process(tmp_path):
    """Texts that do NOT pack evenly (rows of different lengths, an odd number of them): each process's loss
    is weighted by its share of the batch's target tokens and the wrapped-in repeat counts for nothing, so
    2 processes still follow the 1-process curve."""
    model, tokenizer = small_model(dropout=False)
    base = save_model(model, tokenizer, tmp_path / "base")
    texts = fact_texts(45, seed=3)  # one text per row: 45 rows of 14-25 tokens
    (tmp_path / "train.txt").write_text("\n".join(texts))
    (tmp_path / "val.txt").write_text("\n".join(VAL))
    args = ["--model", str(base), "--text-file", str(tmp_path / "train.txt"), "--val-text-file",
            str(tmp_path / "val.txt"), "--epochs", "2", "--batch-size", "6", "--block-size", "32", "--no-packing",
            "--lr", "3e-3", "--loss", "ce", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "fortifai_bench.train", *args, "--out", str(tmp_path / "ddp")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "train.json").read_text())["history"]
    model, tokenizer = load_model(base)
    single = train(model, tokenizer, texts, "ce", TrainConfig(epochs=2, batch_size=6, block_size=32, lr=3e-3,
                                                              packing=False), val_texts=VAL, progress=False).history
    assert [r["tokens"] for r in ddp] == [r["tokens"] for r in single]  # the repeat is not counted
    for a, b in zip(ddp, single):
        for key in ("train_loss", "val_loss", "mean_p_correct"):
            assert a[key] == pytest.approx(b[key], rel=DDP_TOLERANCE), (key, a, b)


def test_per_device_batch_size_splits_a_batch_without_changing_the_step():
    """A cap of 3 blocks per pass cuts each batch of 8 into chunks of 3, 3 and 2 whose token-weighted
    gradients add up to the whole batch's: the same weights, up to float summation order."""
    runs = []
    for cap in (None, 3):
        model, tokenizer = small_model(dropout=False)
        runs.append(train(model, tokenizer, TEXTS, "ce", fast(epochs=2, per_device_batch_size=cap),
                          val_texts=VAL, progress=False))
    a, b = (r.model.state_dict() for r in runs)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4  # measured 6.5e-6
    assert runs[0].history[-1]["val_loss"] == pytest.approx(runs[1].history[-1]["val_loss"], rel=1e-5)
    assert TrainConfig(batch_size=64, per_device_batch_size=8).micro_chunks(1) == 8
    assert TrainConfig(batch_size=64, per_device_batch_size=8).micro_chunks(8) == 1


def test_gradient_checkpointing_gives_the_same_step_and_is_switched_off_after():
    runs = []
    for checkpointing in (False, True):
        model, tokenizer = small_model(dropout=False)
        runs.append(train(model, tokenizer, TEXTS[:48], "ce", fast(epochs=1, gradient_checkpointing=checkpointing),
                          progress=False))
    a, b = (r.model.state_dict() for r in runs)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4  # measured 6.5e-6
    model = runs[1].model
    on = model.is_activation_checkpointing if hasattr(model, "is_activation_checkpointing") else model.is_gradient_checkpointing
    assert not on


def test_trainer_config_imports_no_torch():
    code = ("import sys; from fortifai_bench.train.config import TrainConfig; TrainConfig(epochs=2); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_cli_flags_come_from_the_dataclass(capsys):
    """Every TrainConfig field is a flag whose help shows the dataclass default; none is restated by hand."""
    import dataclasses

    with pytest.raises(SystemExit):
        train_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    assert f"(default: {TrainConfig().lr})" in help_text and "--no-gradient-checkpointing" in help_text


# ----------------------------------------------------------------------------- token classes and the tally


def halves(tokenizer, texts) -> list[list[int]]:
    """A class per token: 1 on each text's first half, 2 on its second."""
    out = []
    for text in texts:
        n = len(tokenizer(text)["input_ids"])
        out.append([1 if t < n // 2 else 2 for t in range(n)])
    return out


def test_classes_follow_their_tokens_into_rows_and_packed_blocks():
    from fortifai_bench.train import prepare

    _, tokenizer = small_model()
    texts = TEXTS[:6]
    classes = halves(tokenizer, texts)
    for packing in (False, True):
        config = fast(block_size=16, packing=packing, val_fraction=0.0)
        blocks, _ = prepare(tokenizer, texts, None, config, torch.Generator().manual_seed(0), classes)
        assert blocks.classes.shape == blocks.ids.shape
        assert ((blocks.classes > 0) <= (blocks.mask > 0)).all()  # padding has no class
        if not packing:  # one text per row, truncated like its ids
            for row, cls in zip(blocks.classes, classes):
                assert row[: min(16, len(cls))].tolist() == cls[:16]
        else:  # the stream in order; a separator (if any) is class 0
            stream = [c for c in blocks.classes.flatten().tolist()]
            assert [c for c in stream if c] == [c for cs in classes for c in cs][: sum(1 for c in stream if c)]
    config = fast(val_fraction=0.25)
    blocks, val = prepare(tokenizer, texts, None, config, torch.Generator().manual_seed(0), classes)
    assert int((blocks.classes > 0).sum()) < sum(map(len, classes)) and val.classes is None  # held-out texts left
    with pytest.raises(FortifaiError, match="token classes do not match the training texts: text 1 has"):
        prepare(tokenizer, texts, None, fast(packing=False), torch.Generator(), [classes[0], classes[1][:-1]] + classes[2:])
    with pytest.raises(FortifaiError, match="5 class lists for 6 texts"):
        prepare(tokenizer, texts, None, fast(), torch.Generator(), classes[:5])


def test_the_tally_is_the_mask_the_loss_applied_and_changes_nothing():
    """With dropout off and a learning rate too small to move a weight, every step's TCE mask is the one the
    starting model gives in eval mode: the tally counts exactly those tokens, per class and epoch. With
    dropout on, tallying changes no weight (no random draw, no extra pass)."""
    from fortifai_bench.losses import token_logprobs

    model, tokenizer = small_model(dropout=False)
    model = train(model, tokenizer, TEXTS, "ce", fast(epochs=5, lr=1e-2, batch_size=4, schedule="constant"),
                  progress=False).model
    classes = halves(tokenizer, TEXTS)
    expected = torch.zeros(3, 2, dtype=torch.long)  # [class, kept]
    with torch.no_grad():
        for text, cls in zip(TEXTS, classes):
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            logp, valid = token_logprobs(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, ids)
            for t in range(ids.shape[1] - 1):
                expected[cls[t + 1], int(logp[t].exp() <= 0.9)] += 1
    assert 0 < expected[:, 1].sum() < expected.sum()  # some tokens masked, some kept
    config = fast(epochs=2, lr=1e-12, warmup=0, schedule="constant", val_fraction=0.0, block_size=64, packing=False)
    result = train(model, tokenizer, TEXTS, "tce:0.9", config, progress=False, classes=classes)
    tally = result.tally
    assert torch.equal(tally.counts.sum(dim=2)[1:], 2 * expected[1:])
    assert torch.equal(tally.epochs[0], tally.epochs[1]) and torch.equal(tally.epochs.sum(dim=0), tally.counts.sum(dim=2))
    # kept tokens are those with p <= 0.9: no kept token in the bins above 0.9, no masked one below
    assert tally.counts[:, 1, 90:].sum() == 0 and tally.counts[:, 0, :90].sum() == 0
    assert 0 < float(tally.p_sum[1]) / int(tally.counts[1].sum()) < 1
    runs = []
    for with_classes in (None, classes):
        m, tok = small_model(seed=0)  # dropout on
        runs.append(train(m, tok, TEXTS, "tce:0.9", fast(epochs=2), progress=False, classes=with_classes))
    assert same_weights(runs[0].model, runs[1].model) and runs[0].tally is None and runs[1].tally is not None
    ce = train(*small_model(), TEXTS, "ce", fast(epochs=1), progress=False, classes=classes).tally
    assert ce.counts[:, 0].sum() == 0  # CE keeps every token
    plain = train(*small_model(), TEXTS, lambda logits, labels: logits.float().logsumexp(-1).mean(), fast(epochs=1),
                  progress=False, classes=classes)
    assert plain.tally is None  # a plain function reports no mask
