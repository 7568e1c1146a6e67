"""The layout's rules, checked on the source: one-way imports, no circles, no hidden imports.

The import graph is read with ``ast`` (nothing is imported): every ``import`` of a project module,
at module level, under ``if TYPE_CHECKING:`` and inside functions alike, so an annotation-only
or a function-level import counts as much as a top-level one.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dsl", "proxies", "evaluators", "search")
#: who may import whom: a module imports only modules of its own room or of a lower rank
RANK = {"dsl": 0, "proxies": 1, "evaluators": 2, "search.llm": 3, "search.core": 4, "search.report": 5,
        "search.rules": 6, "search.prompts": 6, "search.cli": 7, "search": 8,
        "search.api": 8}   # the notebook API: a module of the top package, above the CLI it shares records with
#: rooms of equal rank that may still import each other one way: (importer, imported)
SAME_RANK_OK: set[tuple[str, str]] = set()
#: function-level imports allowed, each with its reason stated where it is done
LAZY_OK = {"matplotlib", "matplotlib.pyplot", "ray", "sklearn", "sklearn.datasets", "openai",
           "torch.utils.tensorboard"}
LAZY_OK_IN = {"search.llm.factory": {"search.llm.local", "search.llm.openai_backend", "search.llm.scripted"}}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, bool, ast.stmt]]:
    """(imported module, inside a function?, node) for each import in the module."""
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, bool, ast.stmt]] = []

    def target(node: ast.stmt) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            pkg = name.split(".") if is_pkg else name.split(".")[:-1]
            pkg = pkg[: len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        # ``from pkg import sub`` imports the submodule; ``from mod import x`` the module
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
        return subs if len(subs) == len(node.names) else subs + [base]

    def walk(body: list[ast.stmt], in_fn: bool) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.extend((t, in_fn, node) for t in target(node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(node.body, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    sub = getattr(node, field, None)
                    if isinstance(sub, list):
                        walk(sub, in_fn)

    walk(ast.parse(path.read_text()).body, False)
    return found


def _project(mod: str) -> str | None:
    """The project module ``mod`` names (a dotted name may end in an attribute), or None."""
    while mod and mod not in MODULES:
        mod = mod.rpartition(".")[0]
    return mod or None


def _room(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if parts[0] == "search" and len(parts) > 1 else parts[0]


GRAPH = {m: {t for raw, _, _ in _imports(m, f) if (t := _project(raw)) and t != m} for m, f in MODULES.items()}


def test_the_graph_was_read():
    assert len(MODULES) > 100
    assert "dsl.program" in GRAPH["dsl.parser"]
    assert "search.core" in GRAPH["search.rules.kind"]


def test_imports_run_one_way():
    bad = [f"{m} imports {t}" for m, ts in GRAPH.items() for t in ts
           if RANK[_room(t)] > RANK[_room(m)]
           or (RANK[_room(t)] == RANK[_room(m)] and _room(t) != _room(m)
               and (_room(m), _room(t)) not in SAME_RANK_OK)]
    assert not bad, "imports against the layering (README, Layout):\n" + "\n".join(bad)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_type_checking_and_function_imports_included():
    assert _circles(GRAPH) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_function_level_imports_are_the_stated_few(name):
    lazy = {raw for raw, in_fn, _ in _imports(name, MODULES[name]) if in_fn}
    allowed = LAZY_OK | LAZY_OK_IN.get(name, set())
    assert lazy <= allowed, f"{name} imports {sorted(lazy - allowed)} inside functions: move them to the top"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_across_modules(name):
    private = [f"{node.module}.{a.name}" for _, _, node in _imports(name, MODULES[name])
               if isinstance(node, ast.ImportFrom) for a in node.names
               if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, f"{name} imports private names {private}: make them public in their package"


def test_modules_stay_small():
    big = {m: n for m, f in MODULES.items() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


SCRIPTS = sorted(str(p.relative_to(ROOT)) for d in ("tests", "bench") for p in (ROOT / d).glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS)
def test_tests_and_benchmarks_use_public_names(path):
    tree = ast.parse((ROOT / path).read_text())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
               and n.module.split(".")[0] in PACKAGES for a in n.names
               if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, f"{path} imports private names {private}"


def _package_names(module: str) -> set[str]:
    """Names the packages above ``module`` (and ``module`` itself, if a package) list in ``__all__``."""
    parts = module.split(".")
    upto = len(parts) + (1 if MODULES[module].name == "__init__.py" else 0)
    out: set[str] = set()
    for i in range(1, upto):
        out |= set(importlib.import_module(".".join(parts[:i])).__all__)
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_what_crosses_rooms_is_named_in_a_package_init(name):
    unnamed = []
    for raw, _, node in _imports(name, MODULES[name]):
        target = _project(raw)
        if not isinstance(node, ast.ImportFrom) or target is None or _room(target) == _room(name):
            continue
        have = _package_names(target)
        unnamed += [f"{raw}.{a.name}" for a in node.names          # a submodule is no name to list
                    if raw != f"{target.rpartition('.')[0]}.{a.name}" and f"{raw}.{a.name}" not in MODULES
                    and a.name not in have]
    assert not unnamed, f"{name} uses {sorted(set(unnamed))}, not named in any package __init__'s __all__"


@pytest.mark.parametrize("path", SCRIPTS)
def test_scripts_import_only_names_that_exist(path):
    """A benchmark is not run by the tests: a name it imports that moved would go unnoticed."""
    missing = []
    for n in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module and n.module.split(".")[0] in PACKAGES:
            mod = importlib.import_module(n.module)
            missing += [f"{n.module}.{a.name}" for a in n.names
                        if not hasattr(mod, a.name) and f"{n.module}.{a.name}" not in MODULES]
    assert not missing, f"{path} imports names that do not exist: {missing}"
