"""Writes this folder's per-split lm-eval tasks, kr_<source>_split<k>.yaml, as lm-eval generates its large
task families (lm_eval/tasks/mmlu/_generate_configs.py): every split's file is the same few lines but for its
source and split, so none is written by hand.

    python tasks/kr/_generate_configs.py           # (re)write them
    python tasks/kr/_generate_configs.py --check   # exit 1 if a file here differs from what it would write

The sources and the number of splits are the package's (`fortifai_bench.kr.lm_eval_tasks`: SOURCES, N_SPLITS);
the version is _kr_base.yaml's. The groups (kr_facts.yaml, ...), _kr_base.yaml and kr_file.yaml are written by
hand; tests/test_task_config.py checks that the files here are this script's output and that each group lists
its splits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from fortifai_bench.kr.lm_eval_tasks import N_SPLITS, SOURCES

HERE = Path(__file__).resolve().parent
HEADER = "# Written by _generate_configs.py (python tasks/kr/_generate_configs.py): edit the script, not this file.\n"


class _Loader(yaml.SafeLoader):
    """Reads _kr_base.yaml, whose `class: !function utils.KRTask` is lm-eval's tag, as plain text."""


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def version() -> str:
    return str(yaml.load((HERE / "_kr_base.yaml").read_text(encoding="utf-8"), Loader=_Loader)["metadata"]["version"])


def split_sources() -> list[str]:
    """The KR sets with fixed splits (`file` builds its subtasks when it reads the file)."""
    return [s for s in SOURCES if s != "file"]


def configs() -> dict[str, str]:
    """File name -> text of every per-split task."""
    v = version()
    return {f"kr_{source}_split{k}.yaml": (f"{HEADER}include: _kr_base.yaml\ntask: kr_{source}_split{k}\n"
                                          f"dataset_kwargs:\n  kr_source: {source}\n  kr_split: {k}\n"
                                          f"metadata:\n  version: {v}\n")
            for source in split_sources() for k in range(N_SPLITS)}


def stale(folder: Path = HERE) -> list[str]:
    """The per-split files in `folder` that differ from `configs()`, are missing, or are not generated."""
    want = configs()
    have = {p.name for p in folder.glob("kr_*_split*.yaml")}
    return sorted(name for name in want.keys() | have
                  if name not in want or name not in have or (folder / name).read_text(encoding="utf-8") != want[name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    bad = stale()
    if args.check:
        for name in bad:
            print(f"tasks/kr/{name} differs from _generate_configs.py's output", file=sys.stderr)
        return 1 if bad else 0
    want = configs()
    for name in bad:
        path = HERE / name
        if name in want:
            path.write_text(want[name], encoding="utf-8")
        else:
            path.unlink()
        print(f"{'wrote' if name in want else 'removed'} tasks/kr/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
