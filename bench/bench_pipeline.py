"""Pipeline figures from the last `dvc repro`: wall time and peak memory of each stage (read back from
its MLflow run), the no-op `dvc repro` time, and which stages a `dpo.train.beta` change makes stale.

    .venv/bin/dvc repro && .venv/bin/python bench/bench_pipeline.py

The beta check edits params.yaml in place, asks `dvc status`, and restores the file byte for byte.
Writes bench.pipeline.* into metrics/bench.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, "bench")
from common import record  # noqa: E402

DVC = str(Path(sys.executable).parent / "dvc")


def stage_runs() -> dict[str, dict[str, float]]:
    """Latest MLflow run per stage run name: stage_wall_s and peak_rss_mb."""
    from vlmcot import tracking

    tracking.configure()
    import mlflow

    exp = mlflow.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    if exp is None:
        return {}
    runs = mlflow.search_runs([exp.experiment_id], order_by=["start_time DESC"], output_format="list")
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        name = r.info.run_name
        if name in out or "stage_wall_s" not in r.data.metrics:
            continue
        out[name] = {"wall_s": round(r.data.metrics["stage_wall_s"], 1),
                     "peak_rss_mb": round(r.data.metrics.get("peak_rss_mb", 0.0), 0)}
    return out


def stale_after_beta_change() -> list[str]:
    params = Path("params.yaml")
    original = params.read_bytes()
    text = original.decode()
    marker = "\n    beta: "
    i = text.index(marker, text.index("\ndpo:"))
    j = text.index("\n", i + 1)
    old = float(text[i + len(marker):j].split("#")[0])
    try:
        params.write_text(text[:i] + marker + repr(old * 2) + text[j:])
        out = subprocess.run([DVC, "status", "--json"], capture_output=True, text=True, check=True).stdout
    finally:
        params.write_bytes(original)
    return sorted(json.loads(out))


def main() -> None:
    runs = stage_runs()
    total = sum(v["wall_s"] for v in runs.values())
    for name, v in sorted(runs.items(), key=lambda kv: -kv[1]["wall_s"]):
        print(f"{name:20s} {v['wall_s']:8.1f} s   peak RSS {v['peak_rss_mb']:6.0f} MB")
    print(f"{'total':20s} {total:8.1f} s")
    t0 = time.perf_counter()
    subprocess.run([DVC, "repro"], capture_output=True, check=True)
    noop = time.perf_counter() - t0
    stale = stale_after_beta_change()
    print(f"no-op dvc repro: {noop:.1f} s; stale after dpo.train.beta change: {', '.join(stale)}")
    figures = {f"stage.{k}.{m}": v for k, d in runs.items() for m, v in d.items()}
    figures.update({"total_stage_s": round(total, 1), "noop_repro_s": round(noop, 2),
                    "stale_after_beta": ",".join(stale)})
    record("bench.pipeline", figures)


if __name__ == "__main__":
    main()
