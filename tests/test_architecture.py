"""The package's shape: no import cycle between its modules (issue 21), and no module that imports another
module's private names (issue 29, in place of issue 21's 400-line limit: modules split to meet a line count
reached into each other's `_names`; a module's public names are its interface, its `_names` its own).

Read from the source (the AST), nothing imported: every `import` and `from ... import` counts, at the top of
a module or inside a function, since an import inside a function only hides a cycle until that function runs.
An edge goes to the module named (`from fortifai_bench.x import name` to `fortifai_bench.x.name` where that is
a module, else to `fortifai_bench.x`); the package `__init__` that Python runs on the way is not counted, nor
are imports by string (`importlib.import_module`, the lazy `_EXPORTS` of `collapse` and `kr`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fortifai_bench"
# Exceptions, each with its reason, if one must ever be made; issue 21 emptied it (an entry that no longer
# applies fails the test below, so the list can only shrink).
ALLOWED_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its source."""

    def known(target: str) -> str | None:  # the longest prefix that is one of our modules
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(known(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x` in a.b.c is a.b.x
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else known(base))
    return {m for m in found if m and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan): each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # compare imports the board loader only inside load_side; the KR facts generator reads corpora.facts
    # only inside a function
    assert "fortifai_bench.leaderboard" in graph["fortifai_bench.compare"]
    assert "fortifai_bench.corpora.facts" in graph["fortifai_bench.kr.facts_gen"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_no_import_cycle():
    found = cycles(import_graph())
    new = [sorted(c) for c in found - ALLOWED_CYCLES]
    assert not new, f"import cycles (imports inside functions count too): {new}"
    gone = [sorted(c) for c in ALLOWED_CYCLES - found]
    assert not gone, f"allowed cycles that are no longer there: remove them from ALLOWED_CYCLES: {gone}"


def private_imports() -> list[str]:
    """`module:line name` for every private name (`_x`, not dunder) that a module takes from another of the
    package's modules: `from fortifai_bench.a import _x`, or `b._x` where `b` is a module of ours it imported."""
    modules, found = _modules(), []
    for name, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        ours = set()  # local names bound to one of our modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fortifai_bench"):
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        ours.add(alias.asname or alias.name)
                    elif alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{name}:{node.lineno} {node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                ours.update(a.asname for a in node.names if a.asname and a.name in modules)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = private_imports()
    assert not found, f"private names used across modules (make them public, or move the code): {found}"


def test_the_private_name_rule_sees_both_forms(tmp_path, monkeypatch):
    pkg = tmp_path / "fortifai_bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_x = 1\ny = 2\n")
    (pkg / "b.py").write_text("from fortifai_bench.a import _x, y\n")
    (pkg / "c.py").write_text("from fortifai_bench import a\nprint(a._x, a.y)\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert private_imports() == ["fortifai_bench.b:1 fortifai_bench.a._x", "fortifai_bench.c:2 a._x"]
