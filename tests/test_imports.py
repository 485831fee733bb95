"""Imports go one way: the ground floor imports nothing above it, the recipe layer no stage package, stage
packages neither the pipeline nor the CLI, nothing outside ``engines/<name>`` that engine's library; and no
circle anywhere, counting imports inside functions (they are still a dependency, only a later one).

Scripts and benchmarks sit on top (they may import any layer) and are held to the library's style: thin
scripts whose ``make_parser()`` only builds a parser, no run-folder name spelled outside ``layout.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "aurora_m"
GROUND = {
    "__init__",
    "args",
    "budget",
    "errors",
    "extras",
    "hub_errors",
    "io",
    "languages",
    "layout",
    "locking",
    "logs",
    "model_families",
    "overrides",
    "patches",
    "plots",
    "prompt",
    "redaction",
    "roots",
    "source_formats",
    "signals",
    "source_spec",
    "stages",
    "tokenizer",
}
RECIPE_LAYER = {"recipe", "stage_checks", "context", "scripting"}
STAGE_PACKAGES = {"data", "train", "safety", "evaluation", "hub", "engines"}
TOP = {"pipeline", "cli", "plan", "rehearsal"}
ENGINE_LIBRARIES = {"nanotron": "engines/nanotron"}  # a third-party library -> the only folder that imports it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, known: set[str]) -> tuple[set[str], set[str]]:
    """(project modules, third-party top-level names) that ``path`` imports anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    project, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target, *(f"{target}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for candidate in candidates:
            if not candidate.startswith("aurora_m"):
                other.add(candidate.split(".")[0])
                continue
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                project.add(candidate)
    return project, other


def library_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    graph, third_party = {}, {}
    for name, path in files.items():
        graph[name], third_party[name] = imported(path, name, set(files))
    return graph, third_party


def layer(module: str) -> str:
    first = module.split(".")[1] if "." in module else "__init__"
    if first in GROUND:
        return "ground"
    if first in RECIPE_LAYER:
        return "recipe"
    if first in STAGE_PACKAGES:
        return f"stage:{first}"
    assert first in TOP, f"{module}: not placed in a layer (add it to GROUND, RECIPE_LAYER, ... in this test)"
    return "top"


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_circles_and_imports_inside_functions(tmp_path):
    """The graph this file builds is the real one: relative imports, imports in functions, a circle."""
    package = tmp_path / "aurora_m"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from ..a import f\nimport nanotron.config\n")
    known = {"aurora_m", "aurora_m.a", "aurora_m.sub", "aurora_m.sub.b"}
    graph = {
        name: imported(package.parent / (name.replace(".", "/") + ".py"), name, known)[0]
        for name in ("aurora_m.a", "aurora_m.sub.b")
    }
    assert graph == {"aurora_m.a": {"aurora_m.sub", "aurora_m.sub.b"}, "aurora_m.sub.b": {"aurora_m.a"}}
    graph["aurora_m.sub"] = set()
    assert circles(graph) == [["aurora_m.a", "aurora_m.sub.b"]]
    assert imported(package / "sub" / "b.py", "aurora_m.sub.b", known)[1] == {"nanotron"}


def test_no_import_circle_in_the_library():
    graph, _ = library_graph()
    assert circles(graph) == []


def test_imports_go_one_way():
    graph, third_party = library_graph()
    wrong = []
    for module, targets in graph.items():
        here = layer(module)
        for target in targets:
            there = layer(target)
            if here == "ground" and there != "ground":
                wrong.append(f"{module} (ground floor) imports {target}")
            elif here == "recipe" and there not in ("ground", "recipe"):
                wrong.append(f"{module} (recipe layer) imports {target}")
            elif here.startswith("stage:") and there == "top":
                wrong.append(f"{module} (a stage package) imports {target}")
    for module, names in third_party.items():
        for library, home in ENGINE_LIBRARIES.items():
            if library in names and not module.startswith("aurora_m." + home.replace("/", ".")):
                wrong.append(f"{module} imports {library}, which only {home} may")
    assert not wrong, "\n".join(wrong)


def _top_level_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_scripts_are_thin_and_make_parser_only_builds_a_parser():
    for script in sorted((ROOT / "scripts").glob("*.py")):
        lines = script.read_text(encoding="utf-8").splitlines()
        assert len(lines) <= 200, f"{script.name}: {len(lines)} lines (scripts are thin entry points: <= 200)"
        functions = _top_level_functions(script)
        assert {"make_parser", "main"} <= set(functions), f"{script.name}: make_parser() and main(...)"
        for node in ast.walk(functions["make_parser"]):
            called = getattr(getattr(node, "func", None), "attr", None) or getattr(
                getattr(node, "func", None), "id", ""
            )
            assert not str(called).startswith(("parse_args", "parse_known", "read_yaml", "kind_of")), (
                f"{script.name}: make_parser() calls {called} (it only builds the parser; parsing is main's caller's)"
            )
            assert not (isinstance(node, ast.Attribute) and node.attr == "argv"), (
                f"{script.name}: make_parser() reads sys.argv"
            )


def test_no_library_file_over_400_lines_without_a_reason_at_its_top():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400 and "stays whole" not in text[:2000]:
            long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
    assert not long, "split these by job, or say at the top why the file stays whole:\n" + "\n".join(long)
