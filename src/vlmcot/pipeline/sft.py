"""Stage `sft`: one TRL SFTTrainer run per mix (format / direct / CoT / both), the paper's models 1-4.

    python stages/sft.py --mix both            # same as: vlmcot sft --mix both
    python stages/sft.py --mix both --dry-run  # print the launch command and resolved config only

Each run starts from ``base_model`` (the embedded ``base`` stage's output, or a hub id such as the
paper's LLaMA3-LLaVA-NeXT-8B), trains with assistant-only loss, and saves model + processor + the
resolved config to ``<out_dir>/<mix>``. With ``launch.num_processes > 1`` (or a cluster) the stage re-launches the
training under ``accelerate launch`` (DeepSpeed ZeRO-3 at paper scale); rank 0 logs into this stage's
MLflow run (MLFLOW_RUN_ID is handed down).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel, save_resolved
from vlmcot.errors import StageError
from vlmcot.io import read_jsonl, write_json
from vlmcot.training.checkpoints import config_hash
from vlmcot.training.launch import LaunchConfig, accelerate_launch, node_rank
from vlmcot.training.sft import TrainConfig

log = logging.getLogger(__name__)

SECTION = "sft"
WORKER_ENV = "VLMCOT_SFT_WORKER"  # set in processes started by accelerate launch


class Config(StrictModel):
    # torch intra-op threads (DVC runs stages one at a time; 2 threads on 2 cores trained 1.81x faster)
    torch_threads: int = Field(2, ge=1)
    # model to fine-tune: a local save_pretrained folder or a hub id (paper: lmms-lab/llama3-llava-next-8b)
    base_model: str = "models/base"
    # folder with <mix>.jsonl files in LLaVA conversation format (the mix stage's output)
    mix_dir: str = "data/mix"
    # mixes this section may train (the DVC foreach items)
    mixes: list[str] = ["format", "direct", "cot", "both"]
    # models are saved to <out_dir>/<mix>
    out_dir: str = "models/sft"
    # checkpoints (resume after a crash) in <checkpoint_dir>/<mix>; not a DVC output
    checkpoint_dir: str = "models/checkpoints/sft"
    # training stats per mix: <metrics_dir>/<mix>.json
    metrics_dir: str = "metrics/sft"
    # image paths in the mix files are relative to this folder
    root: str = "."
    # weights dtype when loading the base model (paper: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # fail the stage if more than this share of mix rows is malformed
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # trainer settings (the paper's: lr 5e-6, vision 5e-7, batch 32, 1 epoch, cosine, warmup 0.03)
    train: TrainConfig = TrainConfig(learning_rate=1.5e-3, vision_learning_rate=3e-4, freeze_vision_tower=True, bf16=True,
                                      max_length=384)
    # process launch (single process on CPU; 8 under accelerate + DeepSpeed at paper scale)
    launch: LaunchConfig = LaunchConfig()


def _check_mix(cfg: Config, mix: str | None) -> str:
    from vlmcot.config import ConfigError

    if not mix:
        raise ConfigError(f"sft: which mix? pass --mix, one of {cfg.mixes}")
    if mix not in cfg.mixes:
        raise ConfigError(f"sft.mixes: mix {mix!r} not listed (have {cfg.mixes})")
    return mix


def resolved(cfg: Config, mix: str) -> dict:
    """Everything one run needs, as written beside the checkpoint and handed to worker processes."""
    return {"mix": mix, "config": cfg.model_dump(mode="json")}


def launch_command(cfg: Config, config_path: str) -> list[str]:
    """The ``accelerate launch`` command that runs :func:`worker_main` on every process."""
    return accelerate_launch(cfg.launch, "vlmcot.pipeline.sft", config_path)


def _paths(cfg: Config, mix: str) -> tuple[Path, Path, Path, Path]:
    out = Path(cfg.out_dir) / mix
    return Path(cfg.mix_dir) / f"{mix}.jsonl", out, Path(cfg.checkpoint_dir) / mix, Path(cfg.metrics_dir) / f"{mix}.json"


def dry_run(cfg: Config, item: str | None) -> None:
    """Print what ``run`` would do: the resolved config and, when distributed, the exact command."""
    mix = _check_mix(cfg, item)
    _, out, _, _ = _paths(cfg, mix)
    print(json.dumps(resolved(cfg, mix), indent=2, sort_keys=True))
    if cfg.launch.distributed:
        print(shlex.join(launch_command(cfg, str(out / "launch_config.json"))))
    else:
        print(f"# single process: trains in-process, writes {out}")


def train_mix(cfg: Config, mix: str, report_to: list[str]) -> dict[str, float]:
    """Load the base model and the mix, train, save. Runs on every process of a distributed launch."""
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.training.common import master_dtype
    from vlmcot.training.lora import quantization_kwargs
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import train_sft

    mix_path, out, ckpt, _ = _paths(cfg, mix)
    if not mix_path.is_file():
        raise StageError(f"{mix_path} not found (run the mix stage first)")
    unreadable: list[str] = []  # lines that are not UTF-8 / not JSON: named, skipped, counted as bad rows
    raw = read_jsonl(mix_path, errors=unreadable, max_bad_rate=cfg.max_bad_rate)
    rows, errors = sft_rows(raw, cfg.root)
    errors = unreadable + errors
    for e in errors[:10]:
        log.warning("%s: %s", mix_path, e)
    if not rows or len(errors) > cfg.max_bad_rate * (len(raw) + len(unreadable)):
        raise StageError(f"{mix_path}: {len(errors)} of {len(raw)} rows unusable (first: {errors[:1]})")
    # the model loads inside train_sft, after the training arguments (ZeRO-3 partitions it at load time)
    # float32 master weights where DeepSpeed does not keep them (bf16 AdamW would drop small updates)
    model = model_loader(cfg.base_model, master_dtype(cfg.dtype, cfg.train, cfg.launch),
                             **quantization_kwargs(cfg.train.lora, cfg.dtype))
    processor = load_processor(cfg.base_model)
    stats = train_sft(
        model,
        processor,
        rows,
        cfg.train,
        out,
        ckpt,
        run_hash=config_hash(cfg, mix, [r["id"] for r in rows]),
        report_to=report_to,
        run_name=f"sft-{mix}",
    )
    stats["rows"] = len(rows)
    stats["bad_rows"] = len(errors)
    return stats


def run(cfg: Config, tracker, item: str | None = None) -> None:
    mix = _check_mix(cfg, item)
    _, out, _, metrics_path = _paths(cfg, mix)
    tracker.set_tags({"mix": mix})
    if cfg.launch.distributed and not os.environ.get(WORKER_ENV):
        out.mkdir(parents=True, exist_ok=True)
        rank = node_rank(cfg.launch.cluster, os.environ)
        # nodes > 0 of a cluster write their own copy (same content): no node reads a half-written file
        cfg_path = out / ("launch_config.json" if rank == 0 else f"launch_config.node{rank}.json")
        cfg_path.write_text(json.dumps(resolved(cfg, mix), indent=2, sort_keys=True) + "\n")
        cmd = launch_command(cfg, str(cfg_path))
        log.info("launching: %s", shlex.join(cmd))
        env = {**os.environ, WORKER_ENV: "1", "MLFLOW_RUN_ID": tracker.run_id}
        if subprocess.run(cmd, env=env).returncode != 0:
            raise StageError(f"distributed training of mix {mix!r} failed (command: {shlex.join(cmd)})")
        if rank:
            log.info("node %d: training done; node 0 writes the metrics and outputs", rank)
            return
        stats = json.loads((out / "train_stats.json").read_text())
    else:
        stats = train_mix(cfg, mix, report_to=["mlflow"])
    save_resolved(cfg, out / "vlmcot_config.json")
    metrics = {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}
    write_json(metrics_path, metrics)
    tracker.log_metrics({f"sft.{mix}.{k}": v for k, v in metrics.items()})


def worker_main(config_path: str) -> int:
    """Entry of each process under ``accelerate launch``: train, rank 0 writes the stats."""
    import torch
    import torch.distributed as dist

    from vlmcot.tracking import configure

    configure()
    spec = json.loads(Path(config_path).read_text())
    cfg = Config.model_validate(spec["config"])
    # the params' thread count, as vlmcot.stage.main sets it for a single process: not the environment's
    torch.set_num_threads(cfg.torch_threads)
    stats = train_mix(cfg, spec["mix"], report_to=["mlflow"])
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_json(Path(cfg.out_dir) / spec["mix"] / "train_stats.json", stats)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(worker_main(sys.argv[1]))
