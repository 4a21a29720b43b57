"""Atomic, deterministic JSONL/JSON IO shared by every stage (outputs are hashed by DVC)."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Share of unreadable lines (not UTF-8, not JSON, not an object) read_jsonl skips, naming each one,
# before it gives up on the file; stages with their own max_bad_rate pass theirs.
BAD_LINE_RATE = 0.01
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DataError(ValueError):
    """More bad input than a stage allows: it fails loudly, with the first few offenders named."""


class UnsafePathError(ValueError):
    """A file name built from data would land outside its output folder."""


def safe_name(name: str) -> str:
    """A file-name component from a data value (a dataset label, an id): only ``[A-Za-z0-9._-]``,
    runs of anything else become ``_``, no leading dots (so never ``..`` or a hidden file), never empty."""
    out = _UNSAFE.sub("_", str(name)).lstrip(".")
    return out[:120] or "_"


def output_path(out_dir: str | Path, *parts: str) -> Path:
    """``out_dir / parts...`` with each part sanitised by :func:`safe_name`, checked to resolve inside
    ``out_dir`` (symlinks followed). Every stage that builds an output file name from data uses it."""
    base = Path(out_dir)
    path = base.joinpath(*(safe_name(p) for p in parts))
    real, real_base = path.resolve(), base.resolve()
    if real_base not in real.parents:
        raise UnsafePathError(f"output file {path} resolves to {real}, outside {out_dir}")
    return path


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically (a temp file in the same folder, fsynced, then renamed): a reader or a
    killed run never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_jsonl(path: str | Path, rows: Iterable[Any], sort_key: str | None = None) -> int:
    """Write rows (dicts or pydantic models) atomically; sorted by ``sort_key`` for stable hashes."""
    items = [r.model_dump(mode="json", exclude_none=True) if hasattr(r, "model_dump") else r for r in rows]
    if sort_key is not None:
        items.sort(key=lambda r: r[sort_key])
    write_text(Path(path), "".join(dumps(r) + "\n" for r in items))
    return len(items)


def iter_jsonl(
    path: str | Path, on_error: Callable[[str], None] | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row).

    A bad line (not UTF-8, not JSON, not an object) raises ValueError naming file and line; with
    ``on_error`` it is reported there instead and skipped, so one bad record never kills a long run.
    """
    path = Path(path)
    with path.open("rb") as f:
        for i, raw in enumerate(f, 1):
            problem = None
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                problem = f"{path}:{i}: not valid UTF-8 (byte {e.start})"
            else:
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    problem = f"{path}:{i}: not valid JSON ({e.msg})"
                else:
                    if not isinstance(row, dict):
                        problem = f"{path}:{i}: expected a JSON object"
            if problem is not None:
                if on_error is None:
                    raise ValueError(problem)
                on_error(problem)
                continue
            yield i, row


def read_jsonl(path: str | Path, errors: list[str] | None = None, max_bad_rate: float = BAD_LINE_RATE) -> list[dict]:
    """Every readable row; each unreadable line is named in a warning (and appended to ``errors``) and
    skipped. More than ``max_bad_rate`` of the lines unreadable: DataError naming the first one."""
    bad: list[str] = []
    rows = [row for _, row in iter_jsonl(path, on_error=bad.append)]
    for e in bad[:20]:
        log.warning("skipped unreadable line %s", e)
    if errors is not None:
        errors.extend(bad)
    n = len(rows) + len(bad)
    if bad and len(bad) > max_bad_rate * n:
        raise DataError(f"{path}: {len(bad)} of {n} lines unreadable (more than {max_bad_rate:g}); first: {bad[0]}")
    return rows


def write_json(path: str | Path, obj: Any) -> None:
    write_text(Path(path), json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_csv(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Plain CSV for `dvc plots` (values already formatted or str()-able; no quoting needed here)."""
    cols = columns or (list(rows[0]) if rows else [])
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]
    write_text(Path(path), "\n".join(lines) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
