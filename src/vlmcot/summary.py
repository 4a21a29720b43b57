"""The headline numbers `dvc metrics show` prints: a few short keys per file, the paper's figures.

Each stage keeps writing its full detail file (per dataset, per op, drop reasons; `dvc metrics show
metrics/<stage>.json` shows one). Those are plain DVC outputs, not DVC metrics: beside them a stage
writes a summary under ``metrics/paper/`` with only what one compares across experiments, in percent
rounded as the paper's tables are. Files share key names (every model's file has ``direct`` and
``cot``), so `dvc metrics show` prints Table 2/6 as rows and stays within a terminal's width.
Runtimes, RSS and throughput never go here: they are machine-dependent (MLflow and bench/ hold them).
"""

from __future__ import annotations

from pathlib import Path

from vlmcot.io import write_json


def pct(x: float) -> float:
    return round(100.0 * float(x), 1)


def write_summary(path: str | Path, values: dict[str, float | int]) -> dict[str, float | int]:
    write_json(Path(path), values)
    return values


def eval_summary(metrics: dict[str, float], model: str) -> dict[str, float]:
    """Table 2/6 cells of one model: average accuracy over the eval datasets per prompt, in %."""
    return {mode: pct(metrics[f"{model}.{mode}.avg"]) for mode in ("direct", "cot")
            if f"{model}.{mode}.avg" in metrics}


def rerank_summary(metrics: dict[str, float]) -> dict[str, float]:
    """Figures 6-7 at the largest N: accuracy of majority voting, best-of-N and DPO-weighted voting, %."""
    ns = [int(k.rsplit(".n", 1)[1]) for k in metrics if k.startswith("avg.majority.n")]
    if not ns:
        return {}
    n = max(ns)
    out: dict[str, float] = {"n": n}
    for method in ("majority", "best_of_n", "weighted"):
        if f"avg.{method}.n{n}" in metrics:
            out[method] = pct(metrics[f"avg.{method}.n{n}"])
    return out
