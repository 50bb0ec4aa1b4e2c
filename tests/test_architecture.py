"""The package's shape: no import cycle between its modules (issue 21), and no module that imports another
module's private names (issue 29, in place of issue 21's 400-line limit: modules split to meet a line count
reached into each other's `_names`; a module's public names are its interface, its `_names` its own).

Read from the source (the AST), nothing imported: every `import` and `from ... import` counts, at the top of
a module or inside a function, since an import inside a function only hides a cycle until that function runs.
An edge goes to the module named (`from fortifai_bench.x import name` to `fortifai_bench.x.name` where that is
a module, else to `fortifai_bench.x`); the package `__init__` that Python runs on the way is not counted, nor
are imports by string (`importlib.import_module`, the lazy `_EXPORTS` of `collapse` and `kr`).

Imports show dependencies (issue 29 item 4): a module imports the package's modules at its top, where a reader
sees what it depends on. An import inside a function is left for a heavy third-party library (torch,
transformers, lm-eval, ...), and for a module of ours that imports one at its top, taken by a module that does
not (`collapse.base` imports the trainer only in the function that pretrains): the library, deferred. The command line
(`cli/`) and the lm-eval hook (run by every Python start through its `.pth`) defer more, for start-up time.
The cycle test below sees imports at the top and inside functions alike, so it covers the top-level graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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
    # the base imports the trainer (torch) only inside the function that pretrains; the KR facts generator
    # reads corpora.facts at its top
    assert "fortifai_bench.train.loop" in graph["fortifai_bench.collapse.base"]
    assert "fortifai_bench.corpora.facts" in graph["fortifai_bench.kr.facts_gen"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_no_import_cycle():
    found = cycles(import_graph())
    new = [sorted(c) for c in found - ALLOWED_CYCLES]
    assert not new, f"import cycles (imports inside functions count too): {new}"
    gone = [sorted(c) for c in ALLOWED_CYCLES - found]
    assert not gone, f"allowed cycles that are no longer there: remove them from ALLOWED_CYCLES: {gone}"


# The command line is a layer on top of the library: besides the CLI itself, only the entry points that start it
# may import it: the `__main__` modules (`python -m fortifai_bench`, `python -m fortifai_bench.collapse` under
# torchrun, `python -m fortifai_bench.train`).


def test_no_library_module_imports_the_command_line():
    cli = lambda m: m == "fortifai_bench.cli" or m.startswith("fortifai_bench.cli.")  # noqa: E731
    found = sorted(f"{name} imports {', '.join(sorted(filter(cli, deps)))}" for name, deps in import_graph().items()
                   if not cli(name) and not name.endswith(".__main__") and any(map(cli, deps)))
    assert not found, f"library modules that import the CLI (move what they need into the library): {found}"


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


# ------------------------------------------------------------------------------ imports at the module's top

# Third-party libraries slow enough to import (or optional) that a module which does not need them at its
# top defers them: a function-level import of one of these, or of a module of ours that imports one at its
# top, has its reason in plain sight.
HEAVY = {"torch", "transformers", "tokenizers", "lm_eval", "datasets", "matplotlib", "openai", "scipy", "sklearn",
         "accelerate", "peft"}
# Where start-up time is the reason: every `fortifai-bench` command parses with the CLI's modules loaded, and
# the hook runs at every Python start (`fortifai_bench-lm_eval.pth`).
DEFERRING = ("fortifai_bench.cli", "fortifai_bench._lm_eval_hook")
# Modules being converted by another change of issue 29 (the lead empties this list when they land); an entry
# whose module has nothing left that the rule would flag fails below, so the list can only shrink.
BEING_CONVERTED: set[str] = set()


def _top_level_and_deferred(path: Path):
    """(imports at the module's top, imports inside a function) as AST nodes; a class body runs at import,
    so it counts as the top."""
    top, deferred = [], []

    def walk(node, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (deferred if inside else top).append(child)
            walk(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return top, deferred


def _targets(node, name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(our modules that `node` makes Python import, package `__init__`s on the way included; the top-level
    names of the third-party packages it imports)."""
    ours, theirs = set(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level:  # relative: `from . import x` in a.b.c is a.b.x
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
        names = [f"{base}.{alias.name}" for alias in node.names] + [base]
    elif node.module == "__future__":
        names = []
    else:
        names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    for full in names:
        if full.split(".")[0] != "fortifai_bench":
            theirs.add(full.split(".")[0])
            continue
        parts = full.split(".")
        ours.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules)
    return ours, theirs


def heavy_modules() -> set[str]:
    """Our modules whose import (at the top, followed through our modules) imports a HEAVY library."""
    modules = _modules()
    edges, direct = {}, set()
    for name, path in modules.items():
        edges[name] = set()
        for node in _top_level_and_deferred(path)[0]:
            ours, theirs = _targets(node, name, path, modules)
            edges[name] |= ours - {name}
            if theirs & HEAVY:
                direct.add(name)
    heavy, changed = set(direct), True
    while changed:
        changed = False
        for name, targets in edges.items():
            if name not in heavy and targets & heavy:
                heavy.add(name)
                changed = True
    return heavy


def deferred_imports(skip: set[str] | None = None) -> list[str]:
    """`path:line imports X inside a function` for every function-level import of one of our modules that is
    neither the deferral of a heavy library (see HEAVY) nor in a module of DEFERRING or `skip` (default:
    BEING_CONVERTED)."""
    skip = BEING_CONVERTED if skip is None else skip
    modules, heavy, found = _modules(), heavy_modules(), []
    for name, path in sorted(modules.items()):
        if name.startswith(DEFERRING) or name in skip:
            continue
        for node in _top_level_and_deferred(path)[1]:
            ours, _ = _targets(node, name, path, modules)
            ours -= {"fortifai_bench", name}  # the package itself: `from fortifai_bench import threads` names
            ours -= {m for m in ours if any(o.startswith(m + ".") for o in ours)}  # a parent on the way
            if not ours or (ours & heavy and name not in heavy):
                continue
            where = path.relative_to(PACKAGE.parent)
            found.append(f"{where}:{node.lineno} imports {', '.join(sorted(ours))} inside a function")
    return found


def test_the_package_modules_are_imported_at_the_top():
    found = deferred_imports()
    assert not found, ("import these at the module's top (a function-level import is for a heavy library, or a "
                       "module of ours that imports one, taken by a module that does not): " + "; ".join(found))
    left = {line.partition(".py:")[0].replace("/", ".").removesuffix(".__init__")
            for line in deferred_imports(skip=set())}
    gone = sorted(BEING_CONVERTED - left)
    assert not gone, f"modules in BEING_CONVERTED with nothing left to convert: remove them: {gone}"


def test_the_top_level_rule_sees_deferred_imports_and_heavy_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "fortifai_bench"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("def main():\n    from fortifai_bench import light\n")
    (pkg / "light.py").write_text("import json\n")
    (pkg / "engine.py").write_text("import torch\n")
    (pkg / "uses_engine.py").write_text("from fortifai_bench import engine\n")
    (pkg / "a.py").write_text("def f():\n    from fortifai_bench import light\n\n"
                              "def g():\n    from fortifai_bench.uses_engine import x\n")
    (pkg / "b.py").write_text("import torch\n\ndef f():\n    import fortifai_bench.engine\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    monkeypatch.setattr(__import__(__name__), "BEING_CONVERTED", set())
    assert heavy_modules() == {"fortifai_bench.engine", "fortifai_bench.uses_engine", "fortifai_bench.b"}
    # a (light) may defer the heavy uses_engine, not light; b (heavy itself) may not defer engine; the CLI may
    assert deferred_imports() == ["fortifai_bench/a.py:2 imports fortifai_bench.light inside a function",
                                  "fortifai_bench/b.py:4 imports fortifai_bench.engine inside a function"]


def test_the_command_line_parses_without_a_heavy_library():
    """What the top-level imports must keep true: `fortifai-bench --help` (every command's parser built) loads
    none of HEAVY (torch alone takes over a second), so module-top imports of light modules stay light."""
    code = ("import sys; from fortifai_bench.cli import build_parser; build_parser(); "
            f"print(sorted(set({sorted(HEAVY)!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"building the CLI's parser imported {out.strip()}"
