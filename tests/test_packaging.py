"""A plain (non-editable) install carries the package, its subpackages, tasks/ and data/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _shipped_files(folder: str) -> set[str]:
    root = REPO / folder
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only our wheel; the test venv's dependencies are reachable through a .pth file."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what git would clone (tracked files and untracked ones not ignored): a build/ folder
    # left in the checkout keeps modules that are gone (a stale losses.py once hid a subpackage missing here).
    source = tmp / "source"
    listed = subprocess.check_output(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"], text=True)
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")],
        check=True,
    )
    wheel = next((tmp / "dist").glob("fortifai_bench-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # Only the dependencies' folder, not their .pth files: an editable install of the source tree
    # in the test venv must not shadow the wheel.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], check=True)
    return env_dir


def _run(env_dir: Path, code: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.check_output([env_dir / "bin" / "python", "-c", code], text=True, cwd=tmp_path, env=env).strip()


def test_installed_package_finds_tasks_and_data(installed, tmp_path):
    out = _run(
        installed,
        "import fortifai_bench, fortifai_bench.resources as r; "
        "print(fortifai_bench.__file__); print(r.tasks_dir()); print(r.data_dir())",
        tmp_path,
    )
    pkg_file, tasks, data = out.splitlines()
    assert str(installed) in pkg_file and "site-packages" in pkg_file, pkg_file
    for folder, where in (("tasks", Path(tasks)), ("data", Path(data))):
        assert str(installed) in str(where), f"{folder} resolved outside the installed wheel: {where}"
        installed_files = {str(p.relative_to(where)) for p in where.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        missing = _shipped_files(folder) - installed_files
        assert not missing, f"{folder}/ files missing from the wheel: {sorted(missing)}"


def test_every_subpackage_is_in_the_wheel(installed, tmp_path):
    source = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "fortifai_bench").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    code = "import importlib.util as u, sys; " + "; ".join(
        f"print({name!r}, u.find_spec({name!r}) is not None)" for name in sorted(source)
    )
    found = dict(line.split() for line in _run(installed, code, tmp_path).splitlines())
    assert all(v == "True" for v in found.values()), f"subpackages missing from setup.cfg: {found}"


def test_console_script_lists_commands(installed, tmp_path):
    out = subprocess.check_output([installed / "bin" / "fortifai-bench", "--help"], text=True, cwd=tmp_path)
    assert "tasks-path" in out


@pytest.mark.slow
def test_lm_eval_index_holds_kr_tasks_and_no_collapse_task(installed, tmp_path):
    """After a plain install lm-eval's TaskManager resolves every kr_* task (the .pth hook, no flag) and lists
    no collapse_* task: the collapse task YAMLs are not lm-eval tasks and live outside the indexed folder."""
    code = (
        "import json\n"
        "from lm_eval.tasks import TaskManager\n"
        "from fortifai_bench.resources import tasks_dir\n"
        "from lm_eval.tasks._index import TaskIndex\n"
        "tm = TaskManager()\n"
        "ours = sorted(TaskIndex.build([tasks_dir()]))\n"
        "print(json.dumps({'all': tm.all_tasks, 'ours': ours, "
        "'paths': {n: str(tm.task_index[n].yaml_path) for n in ours if n in tm.task_index}}))\n"
    )
    out = json.loads(_run(installed, code, tmp_path).splitlines()[-1])
    assert not [name for name in out["all"] if name.startswith("collapse")]
    kr = [n for n in out["ours"] if n.startswith("kr_")]
    expected = {f"kr_{s}" for s in ("facts", "wikitext", "imagination")} | {"kr_file"} | {
        f"kr_{s}_split{k}" for s in ("facts", "wikitext", "imagination") for k in range(6)}
    assert expected <= set(kr) and set(kr) <= set(out["all"])
    assert all(str(installed) in out["paths"][n] for n in kr)  # from the installed wheel, not the checkout
