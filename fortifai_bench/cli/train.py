"""`fortifai-bench train` and `torchrun --nproc_per_node N -m fortifai_bench.train`: argument parsing and
one call to `train`. Every field of `TrainConfig` is a flag (`--epochs`, `--per-device-batch-size`, ...),
with its help and default taken from the dataclass (`fortifai_bench.configs`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fortifai_bench import configs, threads
from fortifai_bench.cli import apply_threads
from fortifai_bench.cli.args import add_quiet
from fortifai_bench.errors import FortifaiError
from fortifai_bench.models import DTYPES
from fortifai_bench.train.config import TrainConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model for one stage with any loss (best checkpoint by validation loss)",
        description="Train a causal LM on a corpus with a loss spec; keep the epoch with the lowest "
                    "validation cross-entropy. Runs under `torchrun --nproc_per_node N -m fortifai_bench.train`.",
    )
    p.add_argument("--model", default="tiny", help="local model directory, hub id, or 'tiny' (built on the corpus)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="weights' dtype when loading --model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="a registered corpus name (facts, wikitext-2-raw-v1, text:PATH, ...)")
    src.add_argument("--text-file", help="a UTF-8 text file, one training text per non-empty line")
    p.add_argument("--val-text-file", help="validation texts, one per non-empty line (default: --val-fraction)")
    p.add_argument("--loss", default="ce", help="ce | tce:0.9 | focal:2 | package.module:Name (default ce)")
    p.add_argument("--loss-args", action="append", default=[], metavar="K=V[,K=V]",
                   help="keyword arguments for the loss, e.g. gamma=0.8,normalize=kept")
    configs.add_arguments(p.add_argument_group("training (TrainConfig)"), TrainConfig)
    p.add_argument("--out", help="save the best checkpoint and train.json here (must not hold another run)")
    p.add_argument("--threads", type=int, help=threads.THREADS_HELP)
    add_quiet(p)
    p.set_defaults(func=run_command)


def _read_lines(path: str, option: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FortifaiError(f"cannot read {option} {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return [line for line in lines if line.strip()]


def _texts(args: argparse.Namespace) -> list[str]:
    if args.text_file:
        return _read_lines(args.text_file, "--text-file")
    from fortifai_bench.corpora import get_corpus

    return [p.text for p in get_corpus(args.corpus).paragraphs]


def run_command(args: argparse.Namespace) -> int:
    """One stage of training; the thread count is already set (`cli.apply_threads`, before every command)."""
    from fortifai_bench.losses import load_loss, parse_loss_args
    from fortifai_bench.train.loop import check_out_dir, format_row, train

    config = configs.from_flags(args, TrainConfig)
    loss = load_loss(args.loss, **parse_loss_args(args.loss_args))
    check_out_dir(args.out)  # before the (possibly slow) model load
    texts = _texts(args)
    if args.model == "tiny":
        from fortifai_bench.models import build_tiny

        if not texts:
            raise FortifaiError("no training texts: got 0 non-empty texts")
        model, tokenizer = build_tiny(texts, seed=config.seed)
    else:
        from fortifai_bench.models import load_model

        model, tokenizer = load_model(args.model, dtype=args.dtype)
    val_texts = _read_lines(args.val_text_file, "--val-text-file") if args.val_text_file else None
    result = train(model, tokenizer, texts, loss, config, val_texts=val_texts, out_dir=args.out,
                   progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        if args.quiet:  # with progress on, train() already wrote each epoch's line
            for row in result.history:
                print(format_row(row, config.epochs))
        val = "no validation" if result.best_val_loss is None else f"val_loss {result.best_val_loss:.4f}"
        where = f"; saved to {result.out_dir}" if result.out_dir else ""
        print(f"best epoch {result.best_epoch} ({val}) in {result.seconds:.1f} s{where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m fortifai_bench.train ARGS` = `fortifai-bench train ARGS`, for torchrun."""
    threads.start()  # the thread policy, as `fortifai-bench` applies it (torchrun's N > 1 sets OMP_NUM_THREADS)
    parser = argparse.ArgumentParser(prog="python -m fortifai_bench.train")
    register(parser.add_subparsers())
    try:
        args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
        apply_threads(args)
        return args.func(args)
    except FortifaiError as exc:
        print(f"fortifai-bench: error: {exc}", file=sys.stderr)
        return 2
