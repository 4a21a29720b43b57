"""How training processes start: :class:`LaunchConfig` (the ``launch`` section of sft, dpo and control),
the ``accelerate launch`` command, and where a multi-node run finds its machines (node count, this
node's rank, the rendezvous host).

The sft, dpo and control stages re-launch themselves under ``accelerate launch``
(:func:`accelerate_launch`) when ``launch.distributed``. On one node the accelerate config says everything. On a cluster, one stage
process runs per node (``srun --ntasks-per-node=1``, configs/slurm/*.sbatch) and each must pass
accelerate its own ``--machine_rank`` plus the shared ``--num_machines`` / ``--main_process_ip``;
:func:`slurm_machines` reads them from the variables SLURM sets in every task.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import ConfigError, StrictModel


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
