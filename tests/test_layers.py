"""The core's layers: the contract (dfbench.api) imports neither the training engine nor the
application at module level, the engine (dfbench.train) never imports the application, no module
imports itself back through others, and the former flat module names are the same modules."""

import ast
import importlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dfbench"
LAYERS = ("api", "train", "app")


def _imports(path: Path) -> tuple[set, set]:
    """(module-level, all) dfbench modules ``path`` imports, as 'layer.module'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top, every = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dfbench"):
            parts = node.module.split(".")
            if len(parts) == 3:
                names = [".".join(parts[1:])]
            elif len(parts) == 2 and parts[1] in LAYERS:
                names = [f"{parts[1]}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [".".join(a.name.split(".")[1:3]) for a in node.names if a.name.startswith("dfbench.") and a.name.count(".") >= 2]
        (top if node in tree.body else set()).update(names)
        every.update(names)
    return top, every


def _graph():
    return {f"{p.parent.name}.{p.stem}": _imports(p) for layer in LAYERS for p in (PKG / layer).glob("*.py") if p.stem != "__init__"}


def test_no_flat_modules_left():
    assert sorted(p.name for p in PKG.glob("*.py")) == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("layer,forbidden", [("api", ("train", "app")), ("train", ("app",))])
def test_a_layer_never_imports_the_layers_above_it(layer, forbidden):
    graph = _graph()
    for module, (top, every) in graph.items():
        if not module.startswith(layer + "."):
            continue
        bad = {m for m in every if m.split(".")[0] in forbidden}  # lazy imports too: the contract owns what it offers
        assert not bad, f"dfbench.{module} imports {sorted(bad)}"


def _assert_acyclic(graph: dict) -> None:
    """No module of ``graph`` ({module: modules it imports}) imports itself back through others."""
    state: dict = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join(path + [m])
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            visit(n, path + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_no_import_cycle():
    graph = {m: every for m, (_, every) in _graph().items()}
    _assert_acyclic(graph)


@pytest.mark.parametrize("name", ["engine", "options", "inversion", "terms", "datasets", "teachers", "alignment",
                                  "methods", "errors", "models", "config", "plugins", "registry", "runner", "cli"])
def test_former_module_names_are_the_same_modules(name):
    import dfbench

    old = importlib.import_module(f"dfbench.{name}")
    assert old is importlib.import_module(f"dfbench.{dfbench._LAYER[name]}.{name}")
    assert getattr(dfbench, name) is old


PLUGINS = PKG.parent / "plugins"


def _plugin_graph():
    """{plugin module: (the plugin modules it imports, the dfbench modules it imports)}, lazy imports included."""
    graph = {}
    for path in sorted(PLUGINS.glob("dfbench_*/*.py")):
        module = f"{path.parent.name}.{path.stem}"
        plugin_mods, core = set(), set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.level == 0 else [])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("dfbench_"):
                    parts = name.split(".")
                    if len(parts) >= 2 and (PLUGINS / parts[0] / f"{parts[1]}.py").is_file():
                        plugin_mods.add(".".join(parts[:2]))
                elif name.startswith("dfbench.") or name == "dfbench":
                    core.add(name)
        graph[module] = (plugin_mods - {module}, core)
    return graph


def test_plugins_use_the_contract_and_the_engine_never_the_application():
    """A built-in plugin is written as a third party's would be: it imports dfbench.api (and the
    engine it builds on, dfbench.train), never the application (dfbench.app)."""
    bad = {m: sorted(c for c in core if c.startswith("dfbench.app")) for m, (_, core) in _plugin_graph().items()}
    assert not {m: v for m, v in bad.items() if v}, bad


def test_no_import_cycle_among_the_plugins():
    graph = {m: deps for m, (deps, _) in _plugin_graph().items()}
    assert len(graph) > 20
    _assert_acyclic(graph)
