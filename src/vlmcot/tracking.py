"""MLflow tracking: one run per stage, tagged with the git commit and DVC experiment.

Default store is a local sqlite file, ``mlflow.db`` in the repository root (``$DVC_ROOT``, which DVC
also sets for queued experiments running in a temporary copy, so their runs land in the same store),
overridable by MLFLOW_TRACKING_URI. Secrets never pass through here: params come from validated
configs, which hold no keys.

Runs are grouped: every stage run of one pipeline execution (one ``dvc exp run`` / queued experiment,
keyed by its DVC experiment name; one plain ``dvc repro``, keyed by that dvc process) is a child of one
parent run named after it (tag ``vlmcot.run_group``). A stage run by hand has no parent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "vlmcot"
GROUP_TAG = "vlmcot.run_group"
# the DVC experiment tag of runs outside `dvc exp run` (a plain `dvc repro`, a stage run by hand)
WORKSPACE = "workspace"


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


def default_uri() -> str:
    root = os.environ.get("DVC_ROOT")
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}" if root else DEFAULT_URI


def configure(offline: bool = True) -> None:
    """Point MLflow at the default local store unless the user chose one.

    ``offline`` (a stage's ``offline`` params key; True where a stage has none): the Hugging Face hub
    is off unless the environment turns it on. ``offline=False`` (the paper profile's prepare stage,
    which downloads the benchmarks) turns it on, overriding HF_HUB_OFFLINE/HF_DATASETS_OFFLINE.
    huggingface_hub reads these when imported, so this runs before any stage imports it.
    """
    os.environ.setdefault("MLFLOW_TRACKING_URI", default_uri())
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

    def metric_history(self, keys: list[str]) -> list[dict[str, float]]:
        """The run's logged series of ``keys`` by step (the Trainer logs at ``logging_steps``): one row
        per step that has any of them, columns ``step`` and the keys with '/' replaced by '_'."""
        client = self._mlflow.MlflowClient()
        by_step: dict[int, dict[str, float]] = {}
        for key in keys:
            for m in client.get_metric_history(self.run_id, key):
                by_step.setdefault(m.step, {"step": m.step})[key.replace("/", "_")] = m.value
        cols = [k.replace("/", "_") for k in keys]
        return [{c: "" for c in cols} | by_step[s] for s in sorted(by_step)]


def _dvc_ancestor() -> tuple[int, str] | None:
    """(pid, start time) of the `dvc` process this stage runs under, if any (Linux /proc)."""
    pid = os.getppid()
    for _ in range(8):
        if pid <= 1:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if any(Path(a.decode(errors="replace")).name == "dvc" for a in argv[:2]):
            return pid, stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: parent pid
    return None


def run_group() -> tuple[str, str] | None:
    """(group id, parent run name) of this pipeline execution, or None for a stage run by hand.
    VLMCOT_RUN_GROUP overrides (e.g. a CI job id)."""
    if os.environ.get("VLMCOT_RUN_GROUP"):
        return os.environ["VLMCOT_RUN_GROUP"], os.environ["VLMCOT_RUN_GROUP"]
    if os.environ.get("DVC_EXP_NAME"):
        return f"exp:{os.environ['DVC_EXP_NAME']}", f"exp {os.environ['DVC_EXP_NAME']}"
    dvc = _dvc_ancestor()
    if dvc is None:
        return None
    import socket
    import time

    return f"repro:{socket.gethostname()}:{dvc[0]}:{dvc[1]}", f"dvc repro {time.strftime('%Y-%m-%d %H:%M')}"


def _parent_run(client: Any, experiment_id: str, tags: dict[str, str]) -> str | None:
    group = run_group()
    if group is None:
        return None
    found = client.search_runs([experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group[0]}'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    parent = client.create_run(experiment_id, run_name=group[1],
                               tags={**{k: v for k, v in tags.items() if k != "stage"}, GROUP_TAG: group[0]})
    return parent.info.run_id


def dvc_hash(path: str | Path) -> str:
    """The md5 DVC records for this file or directory (``<md5>.dir`` for a directory), computed the way
    ``dvc commit`` computes it, so a run names the exact checkpoint in the DVC cache."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, obj = build(HashFileDB(fs, tmp), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


def experiment_url(experiment_id: str, run_id: str | None = None, host: str = "http://127.0.0.1:5000") -> str:
    """Where `mlflow ui` shows this experiment's runs table (or one run), not the GenAI overview."""
    return f"{host}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")


@contextlib.contextmanager
def stage_run(stage: str, params: dict[str, Any], run_name: str | None = None,
              offline: bool = True) -> Iterator[StageRun]:
    configure(offline)
    import mlflow  # slow import: keep it out of module import time

    experiment = mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    client = mlflow.MlflowClient()
    if "mlflow.experimentKind" not in experiment.tags:
        # MLflow 3 opens an untyped experiment on the GenAI "Overview"; ours is model training: runs table
        client.set_experiment_tag(experiment.experiment_id, "mlflow.experimentKind", "custom_model_development")
    commit = git_commit()
    tags = {
        "stage": stage,
        "git_commit": commit,
        "dvc_exp": os.environ.get("DVC_EXP_NAME") or WORKSPACE,
        # the commit an experiment started from (the commit itself outside `dvc exp run`)
        "dvc_exp_baseline": os.environ.get("DVC_EXP_BASELINE_REV") or commit,
    }
    parent_id = _parent_run(client, experiment.experiment_id, tags)
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    with mlflow.start_run(run_name=run_name or stage, tags=tags) as run:
        flat = {k: ("" if v is None else v) for k, v in flatten(params).items()}
        # log_params caps values at 6000 chars and 100 params a call
        items = [(k, str(v)[:500]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        logging.getLogger("vlmcot").info("MLflow run (under `mlflow ui`): %s",
                                         experiment_url(experiment.experiment_id, run.info.run_id))
        yield StageRun(mlflow, run)
    if parent_id:
        client.set_terminated(parent_id)  # its end time follows the last stage of the group
