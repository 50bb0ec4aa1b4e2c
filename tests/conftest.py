"""Test-wide settings: offline, a private cache per session, one torch thread per test process."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# No test may reach the Hugging Face Hub: the machines have no internet, and tests must not depend on it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Each session builds cached artefacts (base models, KR sets) afresh, in its own folder.
os.environ["FORTIFAI_CACHE"] = tempfile.mkdtemp(prefix="fortifai-test-cache-")
# One thread per test process: with two xdist workers (or anything else running) on two cores, a second
# intra-op thread makes tiny-model steps many times slower, not faster (measured: 0.36 s vs 0.016 s a step).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts and ends with one torch thread: a test (or an in-process CLI call with --threads)
    that changed it would change the numbers of the later tests in the same worker, which compare runs
    made in this process with runs made in one-thread subprocesses."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public datasets beside the checkout (../shared/data), read in place."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def wikitext_dir(shared_data) -> Path:
    return shared_data / "wikitext-2-raw-v1"
