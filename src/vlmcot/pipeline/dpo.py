"""Stage `dpo`: TRL DPOTrainer from the SFT model on its own correct/incorrect pairs (paper section 3.3).

    python stages/dpo.py             # same as: vlmcot dpo
    python stages/dpo.py --dry-run   # resolved config and, when distributed, the launch command

The policy starts from ``sft_model``; the reference is a second, frozen load of the same weights. The
vision tower and projector are frozen (paper). Saves model + processor + the resolved config
(``vlmcot_config.json``) to ``out_dir``, training stats to ``metrics``, and the Trainer's curves (loss,
rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies) into this stage's MLflow run.
With ``launch.num_processes > 1`` training re-launches under ``accelerate launch`` (paper: 8 GPUs,
DeepSpeed ZeRO-2: configs/accelerate/zero2.yaml + train.deepspeed: configs/deepspeed/zero2.json).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.io import read_jsonl
from vlmcot.training.checkpoints import run_hash
from vlmcot.training.dpo import DPOTrainConfig
from vlmcot.training.launch import LaunchConfig, WorkerJob, accelerate_launch, run_training, run_worker

log = logging.getLogger(__name__)

SECTION = "dpo"
WORKER_ENV = "VLMCOT_DPO_WORKER"  # set in processes started by accelerate launch


class Config(StrictModel):
    # torch intra-op threads (DVC runs stages one at a time; 2 threads on 2 cores trained 1.81x faster)
    torch_threads: int = Field(2, ge=1)
    # the SFT model: DPO's starting point and its frozen reference (paper: the "both" model)
    sft_model: str = "models/sft/both"
    # preference pairs from the pairs stage
    pairs: str = "data/pairs/pairs.jsonl"
    # the DPO model (save_pretrained layout + vlmcot_config.json)
    out_dir: str = "models/dpo"
    # checkpoints for resume (not a DVC output; wiped when the config changes)
    checkpoint_dir: str = "models/checkpoints/dpo"
    # training stats (steps, final loss, reward margins) for `dvc metrics`
    metrics: str = "metrics/dpo.json"
    # image paths in pairs are relative to this folder
    root: str = "."
    # weights dtype when loading (paper: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # fail the stage if more than this share of pairs is malformed
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # trainer settings (paper: lr 5e-7, beta 0.1, sigmoid, batch 32, 1 epoch, cosine, warmup 0.03)
    train: DPOTrainConfig = DPOTrainConfig(
        loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.2], learning_rate=2e-5, num_train_epochs=2,
        per_device_train_batch_size=16, warmup_ratio=0.1, bf16=True, logging_steps=5)
    # process launch (single process on CPU; 8 under accelerate + DeepSpeed ZeRO-2 at paper scale)
    launch: LaunchConfig = LaunchConfig()


def launch_command(cfg: Config, config_path: str) -> list[str]:
    """The ``accelerate launch`` command that runs :func:`worker_main` on every process."""
    return accelerate_launch(cfg.launch, "vlmcot.pipeline.dpo", config_path)


def dry_run(cfg: Config, item: str | None) -> None:
    print(json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True))
    if cfg.launch.distributed:
        print(shlex.join(launch_command(cfg, str(Path(cfg.out_dir) / "launch_config.json"))))
    else:
        print(f"# single process: trains in-process, writes {cfg.out_dir}")


def load_rows(cfg: Config) -> tuple[list[dict], int]:
    from vlmcot.training.dpo import dpo_rows

    if not Path(cfg.pairs).is_file():
        raise StageError(f"{cfg.pairs} not found (run the pairs stage first)")
    raw = read_jsonl(cfg.pairs)
    rows, errors = dpo_rows(raw, cfg.root)
    for e in errors[:10]:
        log.warning("%s: %s", cfg.pairs, e)
    if not rows:
        raise StageError(f"{cfg.pairs}: no usable pairs ({len(raw)} rows; see metrics/pairs.json for why)")
    if len(errors) > cfg.max_bad_rate * len(raw):
        raise StageError(f"{cfg.pairs}: {len(errors)} of {len(raw)} pairs unusable (first: {errors[0]})")
    return rows, len(errors)


def train(cfg: Config, report_to: list[str]) -> dict[str, float]:
    """Load policy + reference, train, save. Runs on every process of a distributed launch."""
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.training.dpo import train_dpo
    from vlmcot.training.common import master_dtype
    from vlmcot.training.lora import quantization_kwargs

    rows, bad = load_rows(cfg)
    # loaded inside train_dpo, after the training arguments (ZeRO-3 partitions them at load time); the
    # reference is a separate object (TRL requires it)
    # float32 master weights where DeepSpeed does not keep them (bf16 AdamW would drop small updates)
    policy = model_loader(cfg.sft_model, master_dtype(cfg.dtype, cfg.train, cfg.launch),
                              **quantization_kwargs(cfg.train.lora, cfg.dtype))
    ref = model_loader(cfg.sft_model, cfg.dtype)  # not loaded with LoRA (the adapter-off policy is the reference)
    processor = load_processor(cfg.sft_model)
    stats = train_dpo(policy, ref, processor, rows, cfg.train, cfg.out_dir, cfg.checkpoint_dir,
                      run_hash=run_hash(cfg, start_model=cfg.sft_model, rows=rows), report_to=report_to,
                      run_name="dpo")
    stats["pairs"] = len(rows)
    stats["bad_pairs"] = bad
    return stats


def run(cfg: Config, tracker) -> None:
    # the launch spec is the config itself
    run_training(cfg, tracker, out_dir=Path(cfg.out_dir), spec=cfg.model_dump(mode="json"), command=launch_command,
                 worker_env=WORKER_ENV, train=lambda: train(cfg, report_to=["mlflow"]), what="DPO",
                 metrics_path=cfg.metrics, metrics_prefix="dpo.")


def worker_main(config_path: str) -> int:
    """Entry of each process under ``accelerate launch`` (vlmcot.training.launch.run_worker)."""

    def job(spec: dict) -> WorkerJob:
        cfg = Config.model_validate(spec)
        return WorkerJob(cfg.torch_threads, Path(cfg.out_dir), lambda: train(cfg, report_to=["mlflow"]))

    return run_worker(config_path, job)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(worker_main(sys.argv[1]))
