"""The project's import rules, computed from the source (ast), not from a list.

- Imports go one way: entry scripts (top-level .py files) -> library (maml/, models/,
  utils/). No library, bench or test module imports an entry script (tests run them as
  programs, tests/scripts.py).
- Layers: models/ imports nothing of the project; maml/ only models/; utils/ may use both.
- No import cycle among the project's own modules.
- torchmeta is imported by utils/data/torchmeta_compat.py only (its shims must come first).
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "runs", "data", "__pycache__"}


def project_modules():
    """{dotted module name: path} of every .py file of the project."""
    found = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if SKIP & set(rel.parts) or any(p.startswith(".") for p in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported_names(path, module):
    """Every absolute module name ``path`` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def graph():
    """{module: set of project modules it imports}."""
    modules = project_modules()
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path, name):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return modules, edges


def entry_scripts(modules):
    return {name for name, path in modules.items()
            if "." not in name and path.parent == REPO and name != "conftest"}


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_known_edges():
    modules, edges = graph()
    assert {"train", "evaluate"} <= entry_scripts(modules)
    assert "maml.factory" in edges["train"] and "maml.fast" in edges["maml.factory"]


def test_no_module_imports_an_entry_script():
    modules, edges = graph()
    scripts = entry_scripts(modules)
    bad = [f"{name} imports {target}" for name, targets in sorted(edges.items())
           for target in sorted(targets & scripts)]
    assert not bad


def test_layers_point_one_way():
    _, edges = graph()
    allowed = {"models": {"models"}, "maml": {"maml", "models"}}
    bad = [f"{name} imports {target}" for name, targets in sorted(edges.items())
           for target in sorted(targets) if name.split(".")[0] in allowed
           and target.split(".")[0] not in allowed[name.split(".")[0]]]
    assert not bad


def test_no_import_cycle():
    assert cycles(graph()[1]) == []


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_torchmeta_is_imported_through_the_shim_only():
    modules, _ = graph()
    shim = "utils.data.torchmeta_compat"
    bad = [name for name, path in sorted(modules.items()) if name != shim
           and any(n == "torchmeta" or n.startswith("torchmeta.")
                   for n in imported_names(path, name))]
    assert not bad


def test_parsing_flags_and_sweep_bookkeeping_import_no_torch():
    """sweep.py --status and dry runs check every grid point's flags: that must not cost
    a torch import (seconds on a busy machine)."""
    import subprocess
    import sys
    code = ("import sys, utils.cli, utils.sweep.layout, utils.sweep.results, utils.sweep.state;"
            " utils.cli.parse_args(['--method', 'sparse-maml']);"
            " print(sorted(m for m in ('torch', 'torchvision', 'torchmeta') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
