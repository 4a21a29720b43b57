"""MLflow tracking: one run per stage, tagged with the git commit and DVC experiment.

Default store is a local sqlite file (``sqlite:///mlflow.db``), overridable by MLFLOW_TRACKING_URI.
Secrets never pass through here: params come from validated configs, which hold no keys.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "vlmcot"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def configure(offline: bool = True) -> None:
    """Point MLflow at the default local store unless the user chose one.

    ``offline`` (a stage's ``offline`` params key; True where a stage has none): the Hugging Face hub
    is off unless the environment turns it on. ``offline=False`` (the paper profile's prepare stage,
    which downloads the benchmarks) turns it on, overriding HF_HUB_OFFLINE/HF_DATASETS_OFFLINE.
    huggingface_hub reads these when imported, so this runs before any stage imports it.
    """
    os.environ.setdefault("MLFLOW_TRACKING_URI", DEFAULT_URI)
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    if offline:
        # Offline by design: never let hub lookups or MLflow telemetry reach the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    else:
        os.environ["HF_HUB_OFFLINE"] = "0"
        os.environ["HF_DATASETS_OFFLINE"] = "0"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


class StageRun:
    """Thin handle over the active MLflow run, so stages do not import mlflow themselves."""

    def __init__(self, mlflow_module: Any, run: Any):
        self._mlflow = mlflow_module
        self.run = run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        # MLflow metric names allow '/', '.', '-', '_' and spaces: our flat keys already fit.
        if clean:
            self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self._mlflow.log_artifacts(str(p), artifact_path=artifact_path)
        elif p.exists():
            self._mlflow.log_artifact(str(p), artifact_path=artifact_path)

    def log_text(self, text: str, name: str) -> None:
        self._mlflow.log_text(text, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)


@contextlib.contextmanager
def stage_run(stage: str, params: dict[str, Any], run_name: str | None = None,
              offline: bool = True) -> Iterator[StageRun]:
    configure(offline)
    import mlflow  # slow import: keep it out of module import time

    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    tags = {
        "stage": stage,
        "git_commit": git_commit(),
        "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
        "dvc_exp_baseline": os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }
    with mlflow.start_run(run_name=run_name or stage, tags=tags) as run:
        flat = {k: ("" if v is None else v) for k, v in flatten(params).items()}
        # log_params caps values at 6000 chars and 100 params a call
        items = [(k, str(v)[:500]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        yield StageRun(mlflow, run)
