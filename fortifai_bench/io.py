"""Atomic writes and strict readers for the project's text formats (JSON, JSON Lines, YAML).

Every file the project writes goes through `atomic_write`: the content goes to a temporary file in
the same folder, is flushed to disk, and is renamed over the target. A run killed at any moment
leaves either the old file or the new one, never half of one. The temporary name carries the
writer's process id (`.<name>.<pid>-<random>.tmp`), so `remove_orphan_temps` can tell a temporary
left by a killed process from one that a live process is still writing.

Every reader turns what can go wrong with a user's file (missing, a folder, not UTF-8, bad syntax)
into one `FortifaiError` line naming the file and, where there is one, the line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from fortifai_bench.errors import FortifaiError


# ----------------------------------------------------------------------------------------------- writing


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def _check_target(path: Path, kind: str) -> None:
    """Refuse, before anything is written, a target that can never be replaced by a `kind` ("file" or
    "folder"); creates the missing parent folders."""
    if kind == "file" and path.is_dir():
        raise FortifaiError(f"{path} is a folder; give a file name to write to")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise FortifaiError(f"{path} is a file; give a folder name to write to")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise FortifaiError(f"cannot write {path}: {parent} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FortifaiError(f"cannot create the folder {parent}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    _check_target(path, "file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FortifaiError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file should read like any other
    kwargs = {} if "b" in mode else {"encoding": encoding}
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. the target became a folder meanwhile, or is not ours to replace
            raise FortifaiError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC: say it plainly
            raise FortifaiError(f"disk full while writing {path}; nothing was replaced") from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, ensure_ascii=False)
        f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name; swap it into place only if the block succeeds."""
    path = Path(path)
    _check_target(path, "folder")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise FortifaiError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.tmp$")


def is_temporary(name: str) -> bool:
    """Whether a file name is one `atomic_write` / `atomic_dir` gives its temporaries."""
    return _TEMP.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_orphan_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporaries that `atomic_write` / `atomic_dir` left in `folder` when their process was
    killed (only those of target `name` if given); a live process's temporaries are never touched.
    Returns what was removed. A pid reused by a new process keeps its orphan: the safe side."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir() or folder.is_symlink():  # a link leads out of the folder being cleaned: never follow it
        return removed
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name)
        if not m or (name is not None and m.group("name") != name) or _alive(int(m.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    # What a killed atomic_dir swap can leave: the previous version under `.name.old`.
    for entry in folder.glob(f".{name}.old" if name else ".*.old"):
        if entry.is_dir() and (folder / entry.name[1:-4]).is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


# ----------------------------------------------------------------------------------------------- reading


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks (a base's weights, a KR file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256_once(path: str | os.PathLike) -> str:
    """`file_sha256`, read once per process for an unchanged file (same path, size and modification time): a
    run records its base's weights after every stage, and a task's config checks its model's file."""
    stat = os.stat(path)
    return _sha256_stamped(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_stamped(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


MAX_TEXT_BYTES = 512 * 2**20  # a board, task, results or KR file; 20x the largest this project writes


def read_text(path: str | os.PathLike, what: str = "", fmt: str = "", limit: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file; one line naming the file (and the line of a non-UTF-8 byte) otherwise.
    `what` names the file's role ("KR question file"), `fmt` its format ("JSON") in the messages. A file
    larger than `limit` bytes, or not a regular file (/dev/zero, a pipe), is refused before it is read
    whole: reading one would never end, or take all the memory there is."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise FortifaiError(f"cannot read {label}: it is a folder, not a file")
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise FortifaiError(f"cannot read {label}: not a regular file (a device, pipe or socket)")
            data = f.read(limit + 1)
    except FileNotFoundError as exc:
        raise FortifaiError(f"cannot read {label}: no such file") from exc
    except OSError as exc:
        raise FortifaiError(f"cannot read {label}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise FortifaiError(f"cannot read {label}: larger than {limit // 2**20} MiB, more than any "
                            f"{fmt or 'text'} file this tool reads")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        invalid = f"invalid {fmt}: " if fmt else ""
        raise FortifaiError(f"{path}:{line}: {invalid}not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start}); is it a binary file?") from exc
    # A byte-order mark (Windows editors write one) is not content: JSON and YAML parsers reject it.
    return text[1:] if text.startswith("\ufeff") else text


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    text = read_text(path, fmt="JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FortifaiError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:  # '[' * 10**6: valid-looking, too deep for the parser
        raise FortifaiError(f"{path}: invalid JSON: nested too deeply") from exc


def parse_jsonl(text: str, path: str | os.PathLike, required: Iterable[str] = ()) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of JSON Lines `text` read from `path`."""
    required = tuple(required)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FortifaiError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        except RecursionError as exc:
            raise FortifaiError(f"{path}:{lineno}: invalid JSON: nested too deeply") from exc
        if not isinstance(row, dict):
            raise FortifaiError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in required if k not in row]
        if missing:
            raise FortifaiError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
        rows.append((lineno, row))
    return rows


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[dict]:
    """Read JSON Lines; a bad line or a missing field is an error naming the file and line."""
    return [row for _, row in parse_jsonl(read_text(path, fmt="JSON"), path, required)]


def yaml_error(exc: Exception, where: str, lines: bool = True) -> FortifaiError:
    """A YAML parser's error as one line: `where[:line]: invalid YAML: problem`."""
    mark = getattr(exc, "problem_mark", None)
    at = f"{where}:{mark.line + 1}" if mark is not None and lines else where
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or exc
    return FortifaiError(f"{at}: invalid YAML: {problem}")


YAML_MAX_VALUES = 100_000  # values once aliases are expanded: a task or run record holds a few hundred
YAML_MAX_DEPTH = 50        # nesting levels: a task's deepest field is 4 levels down


def parse_yaml(text: str, where: str, lines: bool = True) -> Any:
    """`yaml.safe_load` (no tags that build Python objects), with errors as one line naming `where`
    (and the line, unless `lines` is False: a one-line value given on the command line).

    The document's node graph is composed first and walked with a budget before any Python object is
    built: an alias bomb (a few hundred bytes of nested aliases that expand to billions of values, which
    every later deep copy or JSON dump would expand) or a document nested too deeply is one line."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, where, lines) from exc
    except RecursionError as exc:
        raise FortifaiError(f"{where}: invalid YAML: nested too deeply") from exc
    finally:
        loader.dispose()


def _check_yaml_size(root, where: str) -> None:
    """Walk the composed nodes as if every alias were expanded, and stop at the budget (see parse_yaml)."""
    import yaml

    stack, seen = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > YAML_MAX_VALUES:
            raise FortifaiError(f"{where}: invalid YAML: more than {YAML_MAX_VALUES:,} values once its aliases "
                                "are expanded (an alias bomb?)")
        if depth > YAML_MAX_DEPTH:
            raise FortifaiError(f"{where}: invalid YAML: nested more than {YAML_MAX_DEPTH} levels deep")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((part, depth + 1) for pair in node.value for part in pair)


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file read safely: not UTF-8, bad syntax or a Python tag -> one line with file and line."""
    return parse_yaml(read_text(path, fmt="YAML"), str(path))
