"""Helpers that more than one test file uses (one definition each): loading a script by path,
incompressible PNGs, a world with every family on, a small mixed set of records with images, and the
import resolution and file trees of the import checkers (test_layers, test_dvc_deps).
Folder-specific ones stay beside their tests (tests/teacher/helpers.py, tests/adapters/conftest.py)."""

from __future__ import annotations

import ast
import importlib.util
import io
import os
from pathlib import Path
from types import ModuleType

from PIL import Image

from vlmcot.io import write_jsonl
from vlmcot.records import VQARecord
from vlmcot.world import FAMILIES, WorldConfig


def load_module(path: str | Path) -> ModuleType:
    """A .py file that is not on the import path (tools/*.py, tests/e2e/micro_pipeline.py), as a module."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def noise_png(path: Path, size: int) -> bytes:
    """A ``size`` x ``size`` PNG of random pixels written to ``path``; returns its bytes. Incompressible:
    the file is as large as the pixels, and cutting it anywhere past the header cuts pixel data."""
    img = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def every_family(n_train: int, n_eval: int, **kw) -> WorldConfig:
    """A world with every family on (sign too, off by default), each with ``n_train`` / ``n_eval`` records;
    ``kw`` sets WorldConfig's own fields (seed, image_size)."""
    cfg = WorldConfig(**kw)
    for k in FAMILIES:
        fam = getattr(cfg, k)
        fam.enabled, fam.n_train, fam.n_eval = True, n_train, n_eval
    return cfg


def mixed_records(root: Path, n: int, image_size: int, jsonl: str) -> list[VQARecord]:
    """``n`` train records, alternately numeric (synth_chart, answer 8) and multiple choice (synth_sci,
    answer B), each with its own solid-colour image under ``root/img``; written sorted to ``root/jsonl``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (image_size, image_size), (30 * i % 255, 80, 200)).save(root / f"img/{i}.png")
        if i % 2:
            rows.append(VQARecord(id=f"mc_{i}", image=f"img/{i}.png", question="Which color?", choices=["red", "blue"],
                                  answer="B", dataset="synth_sci", qtype="multiple_choice", split="train",
                                  metric="mc_accuracy"))
        else:
            rows.append(VQARecord(id=f"num_{i}", image=f"img/{i}.png", question="What is the sum?", answer="8",
                                  dataset="synth_chart", qtype="numeric", split="train", metric="relaxed_accuracy"))
    write_jsonl(root / jsonl, rows, sort_key="id")
    return rows


def import_from_module(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The module a ``from ... import`` in ``module`` (its file ``path``) names, relative forms resolved
    (``from . import x`` in a package's __init__.py is relative to the package itself)."""
    if not node.level:
        return node.module or ""
    pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    pkg = pkg[: len(pkg) - (node.level - 1)]
    return ".".join([*pkg, *([node.module] if node.module else [])])


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write each relative path's text under ``root`` (a package tree for the import checkers' own tests)."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
