"""Pieces of the human-readable report: markdown tables from flat metrics, figures from the plot CSVs,
and the latest MLflow run of each stage. Pure functions over files; the ``report`` stage assembles them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from vlmcot.evaluation import format_table, markdown_table

# Methods of the rerank curves, in legend order, with the paper's names; <method>.grpo: the same method with
# the GRPO model as the verifier (#16), drawn where the rerank outputs have it.
RERANK_LABELS = {"majority": "self-consistency (majority)", "best_of_n": "best-of-N (DPO reward)",
                 "weighted": "weighted voting (DPO reward)", "best_of_n.grpo": "best-of-N (GRPO verifier)",
                 "weighted.grpo": "weighted voting (GRPO verifier)", "best_of_n.dpo_r2": "best-of-N (DPO round 2)",
                 "weighted.dpo_r2": "weighted voting (DPO round 2)", "oracle": "oracle (pass@N)"}


def counts_table(metrics: dict[str, float], columns: list[tuple[str, str]], total_key: str = "total") -> str:
    """Table 1 style: one row per dataset (the first dotted part of the keys), chosen columns.

    ``columns`` is [(metric suffix, header)], e.g. [("total", "records"), ("kept", "kept")].
    """
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for k, v in metrics.items():
        if "." in k:
            ds, rest = k.split(".", 1)
            rows[ds][rest] = v
    order = sorted(d for d in rows if d != total_key) + ([total_key] if total_key in rows else [])
    head = ["dataset", *(h for _, h in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ds in order:
        cells = []
        for key, _ in columns:
            v = rows[ds].get(key)
            cells.append("-" if v is None else (f"{v:.3f}" if isinstance(v, float) and not v.is_integer() else f"{v:g}"))
        lines.append("| " + " | ".join([ds, *cells]) + " |")
    return "\n".join(lines) + "\n"


def stats_row(metrics: dict[str, float], keys: list[str]) -> str:
    """A one-row table of a training stage's stats: the ``keys`` present, in order, 4 significant digits."""
    keys = [k for k in keys if k in metrics]
    return ("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n| "
            + " | ".join(f"{metrics[k]:.4g}" for k in keys) + " |\n")


def model_table(per_model: dict[str, dict[str, float]], models: list[str], labels: dict[str, str],
                formats: bool = False) -> str:
    """Table 2 / Table 6 layout from per-model evaluation metrics ``<model>.<mode>.<dataset>.<metric>``;
    ``formats``: the lenient score and extraction failure rate per cell instead (evaluation.format_table)."""
    merged: dict[str, float] = {}
    for m in models:
        for k, v in per_model.get(m, {}).items():
            name, rest = k.split(".", 1)
            if name == m:
                merged[f"{labels.get(m, m)}.{rest}"] = v
    return (format_table if formats else markdown_table)(merged, [labels.get(m, m) for m in models])


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _save(fig, png_path: str | Path) -> Path:
    """Write ``fig`` to ``png_path`` (folders made) and close it."""
    import matplotlib.pyplot as plt

    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def plot_rerank(csv_path: str | Path, png_path: str | Path, title: str) -> Path:
    """Accuracy vs N (log2 axis), one line per method, from a rerank CSV (n + one column per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)
    ns = [int(r["n"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    styles = {"majority": ("#555555", "o", "-"), "best_of_n": ("#e66101", "s", "-"),
              "weighted": ("#2166ac", "^", "-"), "best_of_n.grpo": ("#e66101", "s", "--"),
              "weighted.grpo": ("#2166ac", "^", "--"), "best_of_n.dpo_r2": ("#e66101", "s", "-."),
              "weighted.dpo_r2": ("#2166ac", "^", "-."), "oracle": ("#999999", "", ":")}
    for m in [c for c in RERANK_LABELS if rows and c in rows[0]]:
        color, marker, ls = styles[m]
        ax.plot(ns, [100 * float(r[m]) for r in rows], marker=marker, linestyle=ls, color=color,
                label=RERANK_LABELS[m], markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("N (candidates)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, png_path)


def plot_lengths(csv_path: str | Path, png_path: str | Path) -> Path:
    """Figure 3: answer-length histogram, CoT vs direct, from the filter stage's CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)
    xs = [float(r["length"]) for r in rows]
    width = (xs[1] - xs[0]) if len(xs) > 1 else 1.0
    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=120)
    for col, color in (("cot", "#e66101"), ("direct", "#2166ac")):
        if rows and col in rows[0]:
            ax.bar(xs, [float(r[col]) for r in rows], width=width, align="edge", alpha=0.6, color=color, label=col)
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("examples")
    ax.set_title("Answer lengths, CoT vs direct (Fig. 3)")
    ax.legend()
    fig.tight_layout()
    return _save(fig, png_path)


def latest_runs(stages: list[str], experiment: str | None = None) -> list[dict[str, str]]:
    """The newest MLflow run per stage tag (``stage`` tag set by vlmcot.tracking), as dicts."""
    import os

    from vlmcot.tracking import configure

    configure()
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment or os.environ["MLFLOW_EXPERIMENT_NAME"])
    if exp is None:
        return []
    runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="list",
                              order_by=["attributes.start_time DESC"], max_results=500)
    seen: dict[str, dict[str, str]] = {}
    for r in runs:
        name = r.info.run_name or ""
        stage = r.data.tags.get("stage", "")
        if stage in stages and name not in seen:
            seen[name] = {"stage": stage, "run": name, "run_id": r.info.run_id, "status": r.info.status,
                          "commit": r.data.tags.get("git_commit", "")[:8]}
    return sorted(seen.values(), key=lambda d: (stages.index(d["stage"]), d["run"]))
