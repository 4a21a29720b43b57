"""Multi-node launch: on each node of a 2-node SLURM job the training stages build the accelerate command
that node needs (its rank, the shared node count, total processes and rendezvous host), read from the
job's environment (faked here); the SLURM examples, accelerate configs and GPU environment files parse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from vlmcot.config import ConfigError
from vlmcot.training.launch import ClusterError, LaunchConfig, accelerate_launch, first_host, slurm_machines

ROOT = Path(__file__).resolve().parents[2]


def slurm_env(node: int) -> dict[str, str]:
    return {"SLURM_NNODES": "2", "SLURM_NODEID": str(node), "SLURM_JOB_NODELIST": "gpu-a[07-08]",
            "SLURM_JOB_ID": "4242", "PATH": "/usr/bin"}


@pytest.mark.parametrize("node", [0, 1])
def test_two_node_slurm_command_line(node):
    launch = LaunchConfig(num_processes=8, accelerate_config="configs/accelerate/zero3.yaml", cluster="slurm",
                              main_process_port=29511)
    cmd = accelerate_launch(launch, "vlmcot.pipeline.sft", "models/sft/both/launch_config.json",
                                env=slurm_env(node))
    assert Path(cmd[0]).name == "accelerate" and cmd[1] == "launch"
    assert cmd[2:] == ["--config_file", "configs/accelerate/zero3.yaml", "--num_processes", "16",
                       "--num_machines", "2", "--machine_rank", str(node), "--main_process_ip", "gpu-a07",
                       "--main_process_port", "29511", "-m", "vlmcot.pipeline.sft",
                       "models/sft/both/launch_config.json"]


def test_accelerate_parses_the_built_command():
    from accelerate.commands.launch import launch_command_parser

    launch = LaunchConfig(num_processes=8, accelerate_config="configs/accelerate/zero2.yaml", cluster="slurm")
    cmd = accelerate_launch(launch, "vlmcot.pipeline.dpo", "cfg.json", env=slurm_env(1))
    args = launch_command_parser().parse_args(cmd[2:])
    assert (args.num_processes, args.num_machines, args.machine_rank) == (16, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("gpu-a07", 29500)  # every node agrees on a port
    assert args.module and args.training_script == "vlmcot.pipeline.dpo" and args.training_script_args == ["cfg.json"]


def test_one_node_command_is_unchanged():
    cmd = accelerate_launch(LaunchConfig(num_processes=8, accelerate_config="a.yaml"), "m", "c.json", env={})
    assert cmd[2:] == ["--config_file", "a.yaml", "--num_processes", "8", "-m", "m", "c.json"]
    assert not LaunchConfig().distributed and LaunchConfig(num_processes=1, cluster="slurm").distributed


@pytest.mark.parametrize("nodelist,host", [
    ("gpu-a[07-08]", "gpu-a07"), ("node[1,3-5],login1", "node1"), ("n001", "n001"), ("a1,b2", "a1"),
    ("rack[2-3]-n[01-04]", "rack2-n01"), ("x[009]", "x009"),
])
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_missing_or_bad_slurm_environment_is_a_clear_config_error():
    with pytest.raises(ClusterError, match="SLURM_NODEID, SLURM_JOB_NODELIST unset"):
        slurm_machines({"SLURM_NNODES": "2"})
    with pytest.raises(ClusterError, match="outside 0..1"):
        slurm_machines({**slurm_env(0), "SLURM_NODEID": "2"})
    assert issubclass(ClusterError, ConfigError)  # the stage prints it and exits non-zero, no traceback


def test_plan_of_the_multinode_overlay_outside_an_allocation(tmp_path, monkeypatch):
    from vlmcot.profile import apply_profile, plan

    for k in ("SLURM_NNODES", "SLURM_NODEID", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(k, raising=False)
    paper = tmp_path / "paper.yaml"
    paper.write_text(apply_profile(ROOT / "params.yaml", ROOT / "configs/paper.yaml"))
    multi = tmp_path / "multi.yaml"
    multi.write_text(apply_profile(paper, ROOT / "configs/slurm/multinode.yaml"))
    lines = plan(multi)
    assert any(l.startswith("sft@both:") and "per slurm node (8 processes each" in l for l in lines)
    c = yaml.safe_load(multi.read_text())
    for stage in ("sft", "dpo"):  # still the paper's effective batch of 32 over 2 nodes x 8 GPUs
        t = c[stage]["train"]
        assert t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * 8 * 2 == 32


@pytest.mark.parametrize("name,stage", [("sft", "stages/sft.py --mix both"), ("dpo", "stages/dpo.py")])
def test_sbatch_examples(name, stage, tmp_path):
    """The script run as SLURM would, with stand-ins for srun (two nodes), the venv's python and dvc."""
    path = ROOT / f"configs/slurm/{name}.sbatch"
    text = path.read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "#SBATCH --nodes=2" in text
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "calls.log"
    scripts = {
        # drop srun's options, then run the task once per node
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nfor n in 0 1; do SLURM_NODEID=$n "$@"; done',
        "python": f'echo "node=$SLURM_NODEID mlflow=${{MLFLOW_TRACKING_URI:-default}} python $*" >> {log}',
        "dvc": f'echo "dvc $*" >> {log}',
    }
    for exe, body in scripts.items():
        (fake / exe).write_text("#!/bin/bash\n" + body + "\n")
        (fake / exe).chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_JOB_ID": "77", "MIX": "both",
           "VENV": str(tmp_path), "TMPDIR": "/scratch"}
    subprocess.run(["bash", str(path)], env=env, check=True, cwd=tmp_path)
    calls = log.read_text().splitlines()
    assert calls[0] == f"node=0 mlflow=default python {stage}"
    assert calls[1] == f"node=1 mlflow=sqlite:////scratch/vlmcot-mlflow-77.db python {stage}"
    assert calls[2] == ("dvc commit --force sft@both" if name == "sft" else "dvc commit --force dpo")


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_accelerate_configs_use_one_launcher_per_node(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / f"configs/accelerate/{name}.yaml"))
    assert cfg.deepspeed_config["deepspeed_multinode_launcher"] == "standard"  # not pdsh: srun starts the nodes


def test_gpu_environment_files():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    assert any(r.name == "deepspeed" and str(r.specifier) == "==0.19.*" for r in gpu)
    assert not any(Requirement(r).name == "vllm" for r in project["dependencies"])  # its own env
    reqs = [Requirement(l) for l in (ROOT / "requirements-vllm.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    assert [r.name for r in reqs] == ["vllm"] and str(reqs[0].specifier).startswith("==")
    dry = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), "vllm-env"], capture_output=True, text=True, check=True).stdout
    assert "-m venv .venv-vllm" in dry and ".venv-vllm/bin/pip install" in dry and "-r requirements-vllm.txt" in dry


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_accelerate_turns_the_node_command_into_torchrun_on_this_node(name):
    """Through accelerate's own validation and DeepSpeed launcher setup (nothing started): node 1 of 2
    runs torchrun for its 8 GPUs against node 0's address; no pdsh/ssh command is built."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    launch = LaunchConfig(num_processes=8, accelerate_config=str(ROOT / f"configs/accelerate/{name}.yaml"),
                              cluster="slurm")
    cmd = accelerate_launch(launch, "vlmcot.pipeline.sft", "c.json", env=slurm_env(1))
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[2:]))
    args.deepspeed_fields_from_accelerate_config = list(defaults.deepspeed_config)  # as launch_command sets it
    ds_cmd, env = prepare_deepspeed_cmd_env(args)
    assert ds_cmd is None  # torchrun in this process, not the `deepspeed --hostfile` (pdsh) launcher
    assert (args.nproc_per_node, args.nnodes, args.node_rank) == ("8", "2", 1)
    # static rendezvous at node 0 (torchrun reads the endpoint as master address:port)
    assert (args.rdzv_backend, args.rdzv_endpoint) == ("static", "gpu-a07:29500")
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"].endswith(f"configs/deepspeed/{name}.json")



def test_run_training_on_each_node_and_in_process(tmp_path, monkeypatch):
    """The launch/worker plumbing every training stage runs through (vlmcot.training.launch.run_training,
    run_worker): node 0 launches, its rank 0 writes the stats the stage reads back into its metrics and
    MLflow; node 1 launches with its own copy of the spec and keeps no books; a failed launch is a
    StageError naming the command; launch.distributed off trains in-process."""
    import json

    from tests.conftest import FakeTracker
    from vlmcot.config import StrictModel
    from vlmcot.errors import StageError
    from vlmcot.training.launch import WorkerJob, run_training, run_worker

    class Cfg(StrictModel):
        torch_threads: int = 1
        launch: LaunchConfig = LaunchConfig()

    launched, returncode = [], 0

    def fake_accelerate(cmd, env):  # what accelerate launch starts: one worker here
        launched.append((cmd, env["VLMCOT_T_WORKER"], env["MLFLOW_RUN_ID"]))
        if returncode == 0:
            run_worker(cmd[-1], lambda spec: WorkerJob(1, tmp_path / "out", lambda: {"loss": spec["x"], "note": "s"}))
        return subprocess.CompletedProcess(cmd, returncode)

    monkeypatch.setattr(subprocess, "run", fake_accelerate)
    tracker = FakeTracker()
    tracker.run_id = "stage-run"

    def run(cfg, train=lambda: {"loss": 9.0}):
        run_training(cfg, tracker, out_dir=tmp_path / "out", spec={"x": 0.5},
                     command=lambda c, path: accelerate_launch(c.launch, "vlmcot.pipeline.t", path),
                     worker_env="VLMCOT_T_WORKER", train=train, what="T", metrics_path=tmp_path / "m.json",
                     metrics_prefix="t.")

    slurm = LaunchConfig(num_processes=2, cluster="slurm")
    for k, v in slurm_env(1).items():
        monkeypatch.setenv(k, v)
    run(Cfg(launch=slurm))  # node 1: launches, then leaves the outputs to node 0
    assert launched[-1][0][-1] == str(tmp_path / "out/launch_config.node1.json")
    assert launched[-1][1:] == ("1", "stage-run")  # the worker flag and the stage's MLflow run, handed down
    assert json.loads((tmp_path / "out/launch_config.node1.json").read_text()) == {"x": 0.5}
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "out/vlmcot_config.json").exists()

    monkeypatch.setenv("SLURM_NODEID", "0")
    run(Cfg(launch=slurm))  # node 0: rank 0's stats become the metrics (numbers only), prefixed in MLflow
    assert launched[-1][0][-1] == str(tmp_path / "out/launch_config.json")
    assert json.loads((tmp_path / "out/train_stats.json").read_text()) == {"loss": 0.5, "note": "s"}
    assert json.loads((tmp_path / "m.json").read_text()) == {"loss": 0.5} and tracker.metrics == {"t.loss": 0.5}
    assert json.loads((tmp_path / "out/vlmcot_config.json").read_text())["launch"]["cluster"] == "slurm"

    returncode = 1
    with pytest.raises(StageError, match=r"distributed T failed \(command: .*accelerate launch"):
        run(Cfg(launch=slurm))

    n = len(launched)
    run(Cfg(), train=lambda: {"loss": 2.0})  # one process: trains here, launches nothing
    assert len(launched) == n and tracker.metrics == {"t.loss": 2.0}
    monkeypatch.setenv("VLMCOT_T_WORKER", "1")  # inside a launched worker: never launches again
    run(Cfg(launch=slurm), train=lambda: {"loss": 3.0})
    assert len(launched) == n and tracker.metrics == {"t.loss": 3.0}
