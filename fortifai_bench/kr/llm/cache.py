"""The answer cache: an append-only JSON Lines log of raw answers, keyed by `prompt.cache_key`.

One JSON line per answered paragraph, appended and fsynced as each answer arrives. The RAW answer is
stored and parsed on every read, so a rerun or a crash never pays twice, and a better parser never
needs to pay again either. A torn last line (a crash mid-write) is dropped and repaired.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from fortifai_bench.errors import FortifaiError
from fortifai_bench.resources import cache_dir


class AnswerCache:
    """Raw answers by key. One writer at a time (this process); the first record of a key wins."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.bad_lines = 0
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if self.path.is_dir():
            raise FortifaiError(f"the openai answer cache {self.path} is a folder; give a file name (--cache)")
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise FortifaiError(f"cannot read the openai answer cache {self.path}: {exc.strerror or exc}") from exc
        complete, _, tail = data.rpartition(b"\n")
        for line in complete.split(b"\n") if complete else []:
            self._take(line)
        if tail and not self._take(tail):
            # A crash in the middle of an append: drop the torn record (it gets asked again), and
            # cut it off so that the next append starts on a line of its own.
            with open(self.path, "r+b") as f:
                f.truncate(len(complete) + 1 if complete else 0)
                os.fsync(f.fileno())
        elif tail:
            self._append_bytes(b"\n")  # a whole record that lost only its newline

    def _take(self, line: bytes) -> bool:
        if not line.strip():
            return True
        try:
            record = json.loads(line)
            key = record["key"]
            if not isinstance(key, str):
                raise TypeError("key is not text")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
            self.bad_lines += 1
            return False
        self.records.setdefault(key, record)
        return True

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:  # add() runs on worker threads, so that fsync does not stall the event loop
            if record["key"] in self.records:
                return
            self._append_bytes(line.encode("utf-8"))
            self.records[record["key"]] = record

    def _append_bytes(self, data: bytes) -> None:
        # One write() on an O_APPEND descriptor, then fsync: a crash leaves at most one torn line,
        # which _load repairs. (A log, so atomic_write's whole-file replace does not fit here.)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise FortifaiError(f"cannot append to the openai answer cache {self.path}: {exc.strerror or exc}") from exc


def default_cache_path() -> Path:
    return cache_dir() / "kr-openai-answers.jsonl"
