"""Confidence-aware losses behind one interface: CE, Truncated CE (TCE) and Focal.

A loss is called as ``loss(logits, labels) -> LossOutput``, labels unshifted in the Hugging Face convention
(``-100`` ignored); it shifts them itself. Where each part lives:

* `logprobs`: the convention in full, and the chunked ``log p(target)`` every loss (and the KR scorer) uses;
* `base`: the `Loss` interface (override `reduce`, or `forward` for the full logits), `LossOutput`,
  `FunctionLoss` for a plain ``f(logits, labels)``;
* `ce`, `tce`, `focal`: one module per built-in loss; `registry`: their short names (``ce``, ``tce:0.9``,
  ``focal:2``), the one table of them;
* `spec`: a loss spec (a short name or ``module:Name``, plus ``--loss-args``) into a `CheckedLoss`
  (`checked`), importing a user's module through `user_import`.

Every name below is importable from ``fortifai_bench.losses``, as it was when this was one module; a run
records a built-in loss as ``fortifai_bench.losses:<Name>`` (`checked`).
"""

from fortifai_bench.losses.base import FunctionLoss, Loss, LossOutput
from fortifai_bench.losses.ce import CE
from fortifai_bench.losses.checked import CheckedLoss
from fortifai_bench.losses.focal import Focal
from fortifai_bench.losses.logprobs import IGNORE_INDEX, chunk_rows, shift_labels, target_logprobs, token_logprobs
from fortifai_bench.losses.registry import SHORT_NAMES
from fortifai_bench.losses.spec import load_loss, parse_loss_args
from fortifai_bench.losses.tce import TCE
from fortifai_bench.losses.user_import import module_source_sha256

__all__ = [
    "CE", "CheckedLoss", "Focal", "FunctionLoss", "IGNORE_INDEX", "Loss", "LossOutput", "SHORT_NAMES",
    "TCE", "chunk_rows", "load_loss", "module_source_sha256", "parse_loss_args", "shift_labels", "target_logprobs",
    "token_logprobs",
]
