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
import shlex
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.io import read_jsonl
from vlmcot.training.checkpoints import run_hash
from vlmcot.training.launch import LaunchConfig, WorkerJob, accelerate_launch, run_training, run_worker
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
                                      num_train_epochs=3, max_length=384)
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
        run_hash=run_hash(cfg, mix, start_model=cfg.base_model, rows=rows),
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
    run_training(cfg, tracker, out_dir=out, spec=resolved(cfg, mix), command=launch_command, worker_env=WORKER_ENV,
                 train=lambda: train_mix(cfg, mix, report_to=["mlflow"]), what=f"training of mix {mix!r}",
                 metrics_path=metrics_path, metrics_prefix=f"sft.{mix}.")


def worker_main(config_path: str) -> int:
    """Entry of each process under ``accelerate launch`` (vlmcot.training.launch.run_worker)."""

    def job(spec: dict) -> WorkerJob:
        cfg = Config.model_validate(spec["config"])
        return WorkerJob(cfg.torch_threads, _paths(cfg, spec["mix"])[1],
                         lambda: train_mix(cfg, spec["mix"], report_to=["mlflow"]))

    return run_worker(config_path, job)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(worker_main(sys.argv[1]))
