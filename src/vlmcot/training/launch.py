"""How training processes start: :class:`LaunchConfig` (the ``launch`` section of sft, dpo, control and
grpo), the ``accelerate launch`` command, where a multi-node run finds its machines (node count, this
node's rank, the rendezvous host), and the two ends of a launched run every training stage shares.

A training stage's ``run`` hands its in-process training, its launch spec and its metrics names to
:func:`run_training`: when ``launch.distributed`` it re-launches the stage under ``accelerate launch``
(:func:`accelerate_launch`), each process entering the stage's ``worker_main``, which hands
:func:`run_worker` what that process trains; otherwise it trains in-process. On one node the accelerate
config says everything. On a cluster, one stage process runs per node (``srun --ntasks-per-node=1``,
configs/slurm/*.sbatch) and each must pass accelerate its own ``--machine_rank`` plus the shared
``--num_machines`` / ``--main_process_ip``; :func:`slurm_machines` reads them from the variables SLURM
sets in every task.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vlmcot.config import ConfigError, StrictModel, save_resolved
from vlmcot.errors import StageError
from vlmcot.io import write_json

log = logging.getLogger(__name__)

STATS_FILE = "train_stats.json"  # rank 0's training stats, read back by the launching stage process


class ClusterError(ConfigError):
    """The cluster environment lacks what a multi-node launch needs."""


@dataclass(frozen=True)
class Machines:
    num_machines: int
    machine_rank: int
    main_process_ip: str


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist ("gpu[03-05,09],login1" -> "gpu03"), as `scontrol show
    hostnames` would list it first, without needing scontrol on the node."""
    s = nodelist.strip()
    depth, end = 0, len(s)
    for i, ch in enumerate(s):  # the first entry ends at the first comma outside brackets
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    entry = s[:end]

    def expand_first(m: re.Match) -> str:  # "[03-05,09]" -> "03" (ranges keep their zero padding)
        return re.split(r"[,-]", m.group(1))[0]

    host = re.sub(r"\[([^\]]*)\]", expand_first, entry)
    if not host or "[" in host or "]" in host:
        raise ClusterError(f"cannot read the first host of SLURM_JOB_NODELIST={nodelist!r}")
    return host


def slurm_machines(env: Mapping[str, str]) -> Machines:
    """Machines from a SLURM task's environment (SLURM_NNODES, SLURM_NODEID, SLURM_JOB_NODELIST)."""
    need = ("SLURM_NNODES", "SLURM_NODEID", "SLURM_JOB_NODELIST")
    missing = [k for k in need if not env.get(k)]
    if missing:
        raise ClusterError(f"launch.cluster: slurm, but {', '.join(missing)} unset: run the stage inside an "
                           "allocation, one task per node (`srun --ntasks-per-node=1 ...`, configs/slurm/)")
    try:
        n, rank = int(env["SLURM_NNODES"]), int(env["SLURM_NODEID"])
    except ValueError:
        raise ClusterError(f"SLURM_NNODES={env['SLURM_NNODES']!r} / SLURM_NODEID={env['SLURM_NODEID']!r} "
                           "are not integers") from None
    if not 0 <= rank < n:
        raise ClusterError(f"SLURM_NODEID={rank} outside 0..{n - 1} (SLURM_NNODES={n})")
    return Machines(n, rank, first_host(env["SLURM_JOB_NODELIST"]))


def node_rank(cluster: str, env: Mapping[str, str]) -> int:
    """This machine's rank: 0 on one machine; a cluster's nodes > 0 train but leave the bookkeeping
    (metrics, resolved config, DVC outputs) to node 0."""
    return slurm_machines(env).machine_rank if cluster == "slurm" else 0


class LaunchConfig(StrictModel):
    """How training processes are started."""

    # processes (GPUs) per machine; > 1, or a cluster: re-launch under `accelerate launch` (paper: 8 GPUs)
    num_processes: int = Field(1, ge=1)
    accelerate_config: str | None = None  # accelerate YAML (configs/accelerate/zero3.yaml at paper scale)
    # torch.distributed rendezvous port; None: accelerate's default (29500 on a cluster: every node must agree)
    main_process_port: int | None = None
    # "none": one machine. "slurm": one stage process per node (srun), machine rank / count / rendezvous
    # host from SLURM_NODEID / SLURM_NNODES / the first host of SLURM_JOB_NODELIST (configs/slurm/)
    cluster: Literal["none", "slurm"] = "none"

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.cluster != "none"


def accelerate_launch(launch: LaunchConfig, module: str, config_path: str,
                      env: Mapping[str, str] | None = None) -> list[str]:
    """The ``accelerate launch`` command running ``python -m <module> <config_path>`` on every process
    of this machine (``env``: where a cluster launch reads its machines; default os.environ)."""
    # the venv's own `accelerate` (beside this python), so the launched processes import this install
    exe = Path(sys.executable).parent / "accelerate"
    cmd = [str(exe) if exe.exists() else "accelerate", "launch"]
    if launch.accelerate_config:
        cmd += ["--config_file", launch.accelerate_config]
    if launch.cluster == "slurm":
        m = slurm_machines(os.environ if env is None else env)
        # accelerate counts processes over all machines
        cmd += ["--num_processes", str(launch.num_processes * m.num_machines), "--num_machines", str(m.num_machines),
                "--machine_rank", str(m.machine_rank), "--main_process_ip", m.main_process_ip,
                "--main_process_port", str(launch.main_process_port or 29500)]
    else:
        cmd += ["--num_processes", str(launch.num_processes)]
        if launch.main_process_port:
            cmd += ["--main_process_port", str(launch.main_process_port)]
    return cmd + ["-m", module, config_path]


def run_training(cfg, tracker, *, out_dir: Path, spec: dict, command: Callable[[Any, str], list[str]],
                 worker_env: str, train: Callable[[], dict], what: str, metrics_path: str | Path,
                 metrics_prefix: str) -> None:
    """One run of a training stage (sft, dpo, control, grpo), in-process or under ``accelerate launch``.

    ``cfg`` is the stage's Config (its ``launch`` section says how). When ``cfg.launch.distributed`` and
    this is not already a launched process (``worker_env`` unset): ``spec`` (what the stage's workers read)
    is written to ``out_dir/launch_config.json`` (a cluster node > 0 writes its own copy,
    ``launch_config.node<rank>.json``, same content: no node reads a half-written file), ``command(cfg,
    that path)`` (the stage's ``launch_command``) runs with ``worker_env=1`` and the stage's MLflow run id
    handed down (rank 0 logs into it), a failure raises StageError naming the ``what``; a node > 0 stops
    there (node 0 keeps the books), node 0 reads rank 0's ``out_dir/train_stats.json``. Otherwise
    ``train()`` runs here. Then the resolved config goes beside the model (``out_dir/vlmcot_config.json``),
    the numeric stats to ``metrics_path`` and to MLflow as ``<metrics_prefix><key>``."""
    if cfg.launch.distributed and not os.environ.get(worker_env):
        out_dir.mkdir(parents=True, exist_ok=True)
        rank = node_rank(cfg.launch.cluster, os.environ)
        cfg_path = out_dir / ("launch_config.json" if rank == 0 else f"launch_config.node{rank}.json")
        cfg_path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        cmd = command(cfg, str(cfg_path))
        log.info("launching: %s", shlex.join(cmd))
        env = {**os.environ, worker_env: "1", "MLFLOW_RUN_ID": tracker.run_id}
        if subprocess.run(cmd, env=env).returncode != 0:
            raise StageError(f"distributed {what} failed (command: {shlex.join(cmd)})")
        if rank:
            log.info("node %d: training done; node 0 writes the metrics and outputs", rank)
            return
        stats = json.loads((out_dir / STATS_FILE).read_text())
    else:
        stats = train()
    save_resolved(cfg, out_dir / "vlmcot_config.json")
    metrics = {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}
    write_json(metrics_path, metrics)
    tracker.log_metrics({f"{metrics_prefix}{k}": v for k, v in metrics.items()})


@dataclass(frozen=True)
class WorkerJob:
    """What one launched process of a training stage does, as the stage reads it from its launch spec."""

    torch_threads: int  # the params' thread count (as vlmcot.stage.main sets it in-process), not the env's
    out_dir: Path  # the stage's out_dir for this run: rank 0 writes train_stats.json there for run_training
    train: Callable[[], dict]  # the stage's training, the same call it makes in-process


def run_worker(config_path: str, job: Callable[[dict], WorkerJob]) -> int:
    """Body of a training stage's ``worker_main`` (every process of ``accelerate launch``): MLflow set up
    (rank 0 logs into the stage's run, MLFLOW_RUN_ID), ``job(spec)`` for the spec :func:`run_training`
    wrote to ``config_path``, its thread count, train; rank 0 writes the stats."""
    import torch
    import torch.distributed as dist

    from vlmcot.tracking import configure

    configure()
    work = job(json.loads(Path(config_path).read_text()))
    torch.set_num_threads(work.torch_threads)
    stats = work.train()
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_json(work.out_dir / STATS_FILE, stats)
    return 0
