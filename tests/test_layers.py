"""The package's layers import downward only, and no two modules import each other (even indirectly).

``LAYERS`` is the one declaration of the layer order (docs/architecture.md draws it): a module belongs
to the layer of its longest listed prefix, and may import its own layer and the ones before it. Every
import counts, at module level or inside a function (a function-level import still runs, and hiding one
inside a function was how the old ``stage`` <-> ``cli`` cycle was kept alive). A new module fails here
until it is placed in a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import import_from_module, write_files

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# bottom first; each layer may import only itself and the layers above it in this list
LAYERS: dict[str, list[str]] = {
    # shared by everything, knows no domain: errors, params/configs, files, record contracts, MLflow
    "plumbing": ["vlmcot", "vlmcot.errors", "vlmcot.config", "vlmcot.io", "vlmcot.records", "vlmcot.images",
                 "vlmcot.tracking", "vlmcot.progress", "vlmcot.summary", "vlmcot.params_style"],
    # the data and its meaning: the embedded world, dataset adapters, prompts, answer extraction, metrics
    "data": ["vlmcot.world", "vlmcot.adapters", "vlmcot.sharegpt", "vlmcot.prompts", "vlmcot.answers",
             "vlmcot.metrics", "vlmcot.vlmevalkit_scoring"],
    # models and generation: tiny LLaVA, loading, the generation backends, log-probs
    "models": ["vlmcot.models", "vlmcot.generation", "vlmcot.prefix_sharing", "vlmcot.vllm_backend",
               "vlmcot.server_backend", "vlmcot.backends", "vlmcot.logprobs"],
    # trainers: the shared argument base, checkpoints, launching, the SFT / DPO / vision wrappers
    "training": ["vlmcot.training"],
    # the paper's methods: teacher distillation, sampling, pairs, RFT data, evaluation, rerank, credit
    "methods": ["vlmcot.teacher", "vlmcot.sampling", "vlmcot.pairing", "vlmcot.rft", "vlmcot.evaluation",
                "vlmcot.judge", "vlmcot.voting", "vlmcot.token_credit", "vlmcot.report_render", "vlmcot.rewards"],
    # one thin module per DVC stage (its Config, its items, run) and the stage registry
    "pipeline": ["vlmcot.pipeline"],
    # running a stage (params, MLflow run, clean failure) and switching profiles
    "runner": ["vlmcot.stage", "vlmcot.profile"],
    # the command line (stages/<name>.py enter through cli.cli_entry)
    "cli": ["vlmcot.cli"],
}
ORDER = {name: i for i, name in enumerate(LAYERS)}


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC, package: str = "vlmcot") -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line of the first such import}, for every import at any
    depth. ``from a.b import c`` names module a.b.c when that is a module, else a.b (c is a name in it)."""
    files = {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = import_from_module(node, mod, path)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # `import a.b.c` where c is a name: the deepest module
                    t = t.rpartition(".")[0]
                if t and t != mod and t.split(".")[0] == package:
                    edges.setdefault(t, node.lineno)
        graph[mod] = edges
    return graph


def layer_of(mod: str, layers: dict[str, list[str]] = LAYERS) -> str | None:
    best = None
    for layer, prefixes in layers.items():
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (layer, p)
    return best[0] if best else None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def upward(graph: dict[str, dict[str, int]], layers: dict[str, list[str]] = LAYERS) -> list[str]:
    order = {name: i for i, name in enumerate(layers)}
    bad = []
    for mod, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            a, b = layer_of(mod, layers), layer_of(target, layers)
            if a is not None and b is not None and order[b] > order[a]:
                bad.append(f"{mod} ({a}) imports {target} ({b}) at line {line}")
    return bad


GRAPH = import_graph()


def test_every_module_has_a_layer():
    missing = sorted(m for m in GRAPH if layer_of(m) is None)
    assert not missing, f"modules in no layer (place them in tests/test_layers.py LAYERS): {missing}"


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def test_layers_import_downward_only():
    bad = upward(GRAPH)
    assert not bad, "imports going up a layer:\n  " + "\n  ".join(bad)


def test_errors_import_nothing_of_ours():
    assert GRAPH["vlmcot.errors"] == {}


def test_stage_modules_do_not_import_each_other():
    """One thin module per stage: what two stages share lives in a lower layer, not in one of them (a
    stage that reads another section's config loads it by name, vlmcot.pipeline.load_stage)."""
    stages = {m for m in GRAPH if m.startswith("vlmcot.pipeline.")}
    bad = [f"{m} imports {t}" for m in sorted(stages) for t in GRAPH[m] if t in stages]
    assert not bad, bad


def test_the_checks_can_fail(tmp_path):
    """A cycle hidden in a function, an upward import and a relative import are all seen."""
    pkg = tmp_path / "vlmcot"
    files = {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from vlmcot.low import b\n",
        "low/b.py": "from . import a\nimport vlmcot.high.thing\n",
        "high.py": "from vlmcot.low.a import f\n",
    }
    write_files(pkg, files)
    graph = import_graph(tmp_path)
    assert graph["vlmcot.low.a"] == {"vlmcot.low.b": 2}
    assert graph["vlmcot.low.b"] == {"vlmcot.low.a": 1, "vlmcot.high": 2}
    assert cycles(graph) == [["vlmcot.high", "vlmcot.low.a", "vlmcot.low.b"]]
    layers = {"low": ["vlmcot", "vlmcot.low"], "high": ["vlmcot.high"]}
    assert upward(graph, layers) == ["vlmcot.low.b (low) imports vlmcot.high (high) at line 2"]


@pytest.mark.parametrize("layer", list(LAYERS))
def test_layers_are_documented(layer):
    """docs/architecture.md draws these layers; a renamed or added layer must be drawn there too."""
    assert layer in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def test_every_stage_entry_point_imports_what_exists():
    """stages/<name>.py is what `dvc repro` runs: each `from vlmcot.X import Y` in it must resolve (a merge once
    left stages/claims.py importing cli_entry from vlmcot.stage, and only the full repro found out)."""
    import importlib

    stages = sorted((Path(__file__).resolve().parents[1] / "stages").glob("*.py"))
    assert stages
    bad = []
    for path in stages:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vlmcot"):
                mod = importlib.import_module(node.module)
                bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names if not hasattr(mod, a.name)]
    assert not bad, bad
