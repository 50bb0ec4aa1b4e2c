"""Test-wide settings: offline, a private cache per session, one torch thread per test process, and the public
datasets found where the user has them (tests/public_data.py), or the tests that need them skipped."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import public_data  # tests/ is on sys.path, as for killing.py and results_factory.py

# No test reaches the Hugging Face Hub unless the user sets these to 0 (to fetch the public test data once,
# tests/public_data.py): the machines have no internet, and no test result may depend on it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Each session builds cached artefacts (base models, KR sets) afresh, in its own folder, removed when the test
# process ends (each xdist worker has its own: a dequantised SmolLM2 alone is 0.5 GB).
_CACHE = tempfile.mkdtemp(prefix="fortifai-test-cache-")
os.environ["FORTIFAI_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
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


def pytest_report_header(config):
    return public_data.describe()


def _data_root(*names: str) -> Path:
    """The root folder holding every dataset in `names` (tests/public_data.py: the first source found serves
    them all); skip, with how to get them, when they are nowhere."""
    bad = None
    try:
        roots = {public_data.find(name) for name in names}
    except public_data.Missing as exc:
        pytest.skip(f"{exc}; {public_data.HOW}")
    except NotADirectoryError as exc:
        bad = str(exc)
    if bad:
        pytest.fail(bad, pytrace=False)  # the user named a folder that is not there: say so, do not skip
    (root,) = roots
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """A folder laid out like shared/data with all four public datasets (WikiText-2 valid and test, HellaSwag
    validation, GSM8K, BLiMP), read in place."""
    return _data_root(*public_data.NAMES)


@pytest.fixture(scope="session")
def wikitext_dir() -> Path:
    """WikiText-2 raw: a folder of wiki.valid.raw and wiki.test.raw (no train, as in shared/data)."""
    return _data_root("wikitext-2-raw-v1") / "wikitext-2-raw-v1"
