"""Shared by the bench scripts: merge figures into metrics/bench.json (one key prefix per script)."""

from __future__ import annotations

import json
from pathlib import Path

BENCH_JSON = Path("metrics/bench.json")


def record(prefix: str, figures: dict[str, float], path: Path = BENCH_JSON) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data = {k: v for k, v in data.items() if not k.startswith(prefix + ".")}
    data.update({f"{prefix}.{k}": v for k, v in figures.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")
