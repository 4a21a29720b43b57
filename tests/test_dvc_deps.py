"""dvc.yaml deps cannot drift from the code: every project module a stage imports is one of its deps.

A stage runs ``stages/<name>.py``, which imports ``_project_python`` and ``vlmcot.cli.cli_entry``;
that goes through the CLI app to ``vlmcot.stage.main``, which loads ``vlmcot.pipeline.<name>`` by
name (importlib). The import closure of those files inside ``src/vlmcot`` (module-level and
function-level imports, packages resolved to their ``__init__.py``, parent packages included) is
computed statically with ``ast``. The bodies of the CLI's other subcommands (functions decorated with
``@app.command``: profile, plan, convert, import-sharegpt) never run inside a stage and are skipped.
A dep that is a folder covers everything under it. If a module is missing from a stage's deps, a
change to it would leave ``dvc repro`` serving stale results.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers import import_from_module, write_files

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
STAGES_DIR = ROOT / "stages"


def _module_file(src: Path, name: str) -> Path | None:
    p = src.joinpath(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    if p.with_suffix(".py").is_file():
        return p.with_suffix(".py")
    return None


def _is_subcommand(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in fn.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        if isinstance(f, ast.Attribute) and f.attr == "command":
            return True
    return False


def _imported_names(path: Path, modname: str) -> list[str]:
    """Every module name ``path`` imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``: c may be
    a submodule), at any depth except inside CLI subcommand bodies."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_subcommand(child):
                continue
            if isinstance(child, ast.Import):
                out.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                mod = import_from_module(child, modname, path)
                out.append(mod)
                out.extend(f"{mod}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return out


def import_closure(starts: list[tuple[Path, str]], src: Path = SRC, local: dict[str, Path] | None = None) -> set[Path]:
    """Files reachable from ``starts`` ((file, module name) pairs) through imports of the ``vlmcot``
    package under ``src`` or of the modules in ``local`` (name -> file, e.g. stages/_project_python)."""
    local = local or {}
    seen: set[Path] = set()
    todo = list(starts)
    while todo:
        path, name = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for mod in _imported_names(path, name):
            if mod in local:
                todo.append((local[mod], mod))
                continue
            if mod.split(".")[0] != "vlmcot":
                continue
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                f = _module_file(src, ".".join(parts[:i]))
                if f is not None:
                    todo.append((f, ".".join(parts[:i])))
    return seen


# Stage modules loaded by a name read from params (vlmcot.pipeline.load_stage(cfg.x)): the file that does it
# -> the params key naming the module. control counts DPO's steps with the dpo module (control.steps_from).
DYNAMIC_LOADS = {"src/vlmcot/pipeline/control.py": ("control", "steps_from")}


def _load_stage_calls(path: Path) -> list[ast.expr]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.args[0] for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == "load_stage"]


def stage_closure(name: str) -> set[str]:
    """Files the stage runs: stages/<name>.py, the stage module main() loads by name, what they import,
    and any stage module loaded by name in turn (constant name, or the params key in DYNAMIC_LOADS)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    local = {p.stem: p for p in STAGES_DIR.glob("_*.py")}
    starts = [(STAGES_DIR / f"{name}.py", "__main__"), (SRC / "vlmcot" / "pipeline" / f"{name}.py", f"vlmcot.pipeline.{name}")]
    done: set[str] = set()
    while True:
        files = import_closure(starts, local=local)
        rel = {p.relative_to(ROOT).as_posix() for p in files}
        more = []
        for p in sorted(files):
            r = p.relative_to(ROOT).as_posix()
            if r == "src/vlmcot/stage.py":  # main(name) itself: the stage's own module, already a start
                continue
            for arg in _load_stage_calls(p):
                if isinstance(arg, ast.Constant):
                    loaded = arg.value
                else:
                    assert r in DYNAMIC_LOADS, f"{r} loads a stage module by a computed name: add it to DYNAMIC_LOADS"
                    section, key = DYNAMIC_LOADS[r]
                    loaded = params[section][key]
                    if loaded is None:
                        continue
                if loaded not in done:
                    done.add(loaded)
                    more.append((SRC / "vlmcot" / "pipeline" / f"{loaded}.py", f"vlmcot.pipeline.{loaded}"))
        if not more:
            return rel
        starts += more


def _stages() -> dict[str, list[str]]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in spec.items():
        body = stage.get("do", stage)
        out[name] = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
    return out


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


STAGES = _stages()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_dep(stage):
    assert (STAGES_DIR / f"{stage}.py").is_file() and (SRC / "vlmcot" / "pipeline" / f"{stage}.py").is_file()
    deps = STAGES[stage]
    missing = sorted(p for p in stage_closure(stage) if not any(_covers(d, p) for d in deps))
    assert not missing, f"dvc.yaml stage {stage!r} imports modules its deps do not list: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_code_dep_the_stage_does_not_import(stage):
    """A code dep that covers nothing the stage imports reruns it for nothing (a stale entry)."""
    closure = stage_closure(stage)
    code = [d for d in STAGES[stage] if d.startswith(("src/", "stages/"))]
    stale = [d for d in code if not any(_covers(d, p) for p in closure)]
    assert not stale, f"dvc.yaml stage {stage!r} lists code it does not import: {stale}"


def test_closure_follows_every_import_form(tmp_path):
    """The walker itself: module- and function-level imports, `import vlmcot.x`, `from vlmcot import x`
    (a submodule), relative imports, packages as __init__.py; CLI subcommand bodies skipped."""
    pkg = tmp_path / "vlmcot"
    files = {
        "__init__.py": "",
        "a.py": "import vlmcot.b\ndef f():\n    from vlmcot import c\n",
        "b.py": "from .sub import d\n",
        "c.py": "",
        "sub/__init__.py": "",
        "sub/d.py": "from ..e import thing\n",
        "e.py": "thing = 1\n",
        "cli.py": "import typer\napp = typer.Typer()\n@app.command()\ndef other():\n    import vlmcot.unused\n",
        "unused.py": "",
    }
    write_files(pkg, files)
    got = {p.relative_to(pkg).as_posix() for p in import_closure([(pkg / "a.py", "vlmcot.a"), (pkg / "cli.py", "vlmcot.cli")], src=tmp_path)}
    assert got == {"__init__.py", "a.py", "b.py", "c.py", "sub/__init__.py", "sub/d.py", "e.py", "cli.py"}


def test_deps_stay_precise():
    """Listing every import must not make every stage depend on everything: the teacher is distill's
    (and the judge's) business, not training's; training code is not the evaluation table's."""
    teacher = "src/vlmcot/teacher/runner.py"
    for stage in ("sft", "dpo", "base", "pairs", "filter"):
        assert not any(_covers(d, teacher) for d in STAGES[stage]), stage
    assert not any(_covers(d, "src/vlmcot/training/sft.py") for d in STAGES["table"])
