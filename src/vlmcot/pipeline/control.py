"""Stage `control`: the baselines a DPO gain must beat, trained for as many steps as DPO took.

    python stages/control.py --item cont_sft   # continued SFT on the "both" mix from the SFT model
    python stages/control.py --item rft        # SFT on the SFT model's own correct samples (RFT / STaR)

A DVC foreach (control@cont_sft, control@rft). Both start from ``sft_model`` and train with the SFT
engineer's wrapper (vlmcot.training.sft.train_sft) for ``train.max_steps`` steps, or, when that is
<= 0, for as many optimizer steps as the ``steps_from`` section (``dpo``) of the same params file takes:
computed from its pairs file and its epochs / batch / accumulation / process count, the way the
Trainer counts them. Computed, not read from DPO's metrics, so a DPO-only change (``dpo.train.beta``)
does not retrain the controls (dvc.yaml lists exactly those dpo keys as the controls' params). Outputs ``<out_dir>/<item>`` (model + processor + resolved config) and
``<metrics_dir>/<item>.json``. Evaluate them as more models of the evaluate stage.
With ``launch.num_processes > 1`` training re-launches under ``accelerate launch`` like sft and dpo
(an 8B fine-tune does not fit one process).
"""

from __future__ import annotations

import logging
import math
import shlex
import subprocess  # noqa: F401  (not called here: tests patch control.subprocess.run, which run_training calls)
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import ConfigError, StrictModel
from vlmcot.errors import StageError
from vlmcot.io import read_jsonl
from vlmcot.training.checkpoints import run_hash
from vlmcot.training.launch import LaunchConfig, WorkerJob, accelerate_launch, run_training, run_worker
from vlmcot.training.sft import TrainConfig

log = logging.getLogger(__name__)

SECTION = "control"
ITEMS = ("cont_sft", "rft")
WORKER_ENV = "VLMCOT_CONTROL_WORKER"  # set in processes started by accelerate launch


class Config(StrictModel):
    # torch intra-op threads (DVC runs stages one at a time; 2 threads on 2 cores trained 1.81x faster)
    torch_threads: int = Field(2, ge=1)
    # the SFT model both controls continue from (the DPO stage's starting point)
    sft_model: str = "models/sft/both"
    # continued SFT data: the "both" mix (LLaVA conversation JSONL)
    mix: str = "data/mix/both.jsonl"
    # RFT data: candidates sampled from the SFT model on the DPO source questions
    candidates: str = "data/sample/train/candidates.jsonl"
    # the VQA records those candidates answer
    records: str = "data/prepared/train.jsonl"
    # RFT: at most this many distinct correct samples per question (pairs uses up to 3 pairs)
    rft_max_per_question: int = Field(3, ge=1)
    # RFT: truncate samples to this many words like the pairs (null: keep whole responses)
    rft_truncate_words: int | None = Field(None, ge=1)
    # what a word is when truncating (pairs.truncate_unit's meaning: set both alike so RFT sees DPO's text)
    rft_truncate_unit: Literal["whitespace", "space"] = "whitespace"
    # seeds the per-question choice of RFT samples
    seed: int = 0
    # prompt layout of the RFT rows; must be the one `sample` used
    prompt_style: str = "paper"
    # when train.max_steps <= 0: match the optimizer steps of this params section's DPO run (its pairs,
    # epochs, batch, accumulation, processes)
    steps_from: str | None = "dpo"
    # models go to <out_dir>/<item>
    out_dir: str = "models/control"
    # checkpoints (resume) in <checkpoint_dir>/<item>
    checkpoint_dir: str = "models/checkpoints/control"
    # stats go to <metrics_dir>/<item>.json
    metrics_dir: str = "metrics/control"
    # image paths are relative to this folder
    root: str = "."
    # weights dtype when loading
    dtype: Literal["float32", "bfloat16"] = "float32"
    # fail if more than this share of rows is malformed
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # trainer settings shared by both controls (max_steps <= 0: match DPO's steps)
    train: TrainConfig = TrainConfig(learning_rate=2e-5, max_steps=-1, per_device_train_batch_size=16, warmup_ratio=0.1,
                                     logging_steps=5, bf16=True, freeze_vision_tower=True)
    # process launch (single process on CPU; 8 under accelerate + DeepSpeed ZeRO-3 at paper scale)
    launch: LaunchConfig = LaunchConfig()


def _item(item: str | None) -> str:
    if item not in ITEMS:
        raise ConfigError(f"control: pass --item, one of {list(ITEMS)} (got {item!r})")
    return item


def steps(cfg: Config, params_path: str | None = None) -> int:
    from vlmcot.pipeline import current_params_path, load_config, load_stage

    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    if not cfg.steps_from:
        raise ConfigError("control: set control.train.max_steps > 0 or control.steps_from")
    dpo_module = load_stage(cfg.steps_from)
    dpo_cfg = load_config(dpo_module, params_path or current_params_path())
    if dpo_cfg.train.max_steps > 0:
        return dpo_cfg.train.max_steps
    if not Path(dpo_cfg.pairs).is_file():
        raise StageError(f"{dpo_cfg.pairs} not found (run the pairs stage first, or set control.train.max_steps)")
    n_pairs = len(dpo_module.load_rows(dpo_cfg)[0])
    return trainer_steps(n_pairs, dpo_cfg.train.per_device_train_batch_size * dpo_cfg.launch.num_processes,
                         dpo_cfg.train.gradient_accumulation_steps, dpo_cfg.train.num_train_epochs)


def trainer_steps(n_rows: int, batch: int, accumulation: int, epochs: float) -> int:
    """Optimizer steps of a Trainer run with max_steps <= 0: ceil(batches / accumulation) per epoch."""
    per_epoch = max(math.ceil(math.ceil(n_rows / batch) / accumulation), 1)
    return math.ceil(epochs * per_epoch)


def conversations(cfg: Config, item: str) -> list[dict]:
    """The item's LLaVA rows: the mix (cont_sft) or the correct own samples (rft)."""
    from vlmcot.records import read_candidates, validate_vqa
    from vlmcot.rft import rft_conversations

    if item == "cont_sft":
        if not Path(cfg.mix).is_file():
            raise StageError(f"{cfg.mix} not found (run the mix stage first)")
        return read_jsonl(cfg.mix)
    for p in (cfg.candidates, cfg.records):
        if not Path(p).is_file():
            raise StageError(f"{p} not found (run sample@train and prepare first)")
    cands, errors = read_candidates(cfg.candidates)
    if errors and len(errors) > cfg.max_bad_rate * (len(cands) + len(errors)):
        raise StageError(f"{cfg.candidates}: {len(errors)} malformed rows (first: {errors[0]})")
    records, _ = validate_vqa(read_jsonl(cfg.records))
    rows, stats = rft_conversations(cands, {r.id: r for r in records}, max_per_question=cfg.rft_max_per_question,
                                    seed=cfg.seed, prompt_style=cfg.prompt_style,
                                    truncate_words=cfg.rft_truncate_words, truncate_unit=cfg.rft_truncate_unit)
    log.info("rft data: %s", stats)
    if not rows:
        raise StageError(f"{cfg.candidates}: no correct sample to fine-tune on")
    return rows


def launch_command(cfg: Config, config_path: str) -> list[str]:
    """The ``accelerate launch`` command that runs :func:`worker_main` on every process."""
    return accelerate_launch(cfg.launch, "vlmcot.pipeline.control", config_path)


def dry_run(cfg: Config, item: str | None) -> None:
    item = _item(item)
    out = Path(cfg.out_dir) / item
    print(f"control {item}: from {cfg.sft_model}, {steps(cfg)} steps -> {out}")
    if cfg.launch.distributed:
        print(shlex.join(launch_command(cfg, str(out / "launch_config.json"))))


def train_item(cfg: Config, item: str, n_steps: int, report_to: list[str]) -> dict:
    """Load the SFT model and the item's rows, train, save. Runs on every process of a distributed launch."""
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.training.common import master_dtype
    from vlmcot.training.lora import quantization_kwargs
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import train_sft

    raw = conversations(cfg, item)
    rows, errors = sft_rows(raw, cfg.root)
    for e in errors[:10]:
        log.warning("%s: %s", item, e)
    if not rows or len(errors) > cfg.max_bad_rate * len(raw):
        raise StageError(f"control {item}: {len(errors)} of {len(raw)} rows unusable (first: {errors[:1]})")
    train_cfg = cfg.train.model_copy(update={"max_steps": n_steps})
    # the model loads inside train_sft, after the training arguments (ZeRO-3 partitions it at load time)
    # float32 master weights where DeepSpeed does not keep them (bf16 AdamW would drop small updates)
    model = model_loader(cfg.sft_model, master_dtype(cfg.dtype, cfg.train, cfg.launch),
                             **quantization_kwargs(cfg.train.lora, cfg.dtype))
    processor = load_processor(cfg.sft_model)
    out = Path(cfg.out_dir) / item
    stats = train_sft(model, processor, rows, train_cfg, out, Path(cfg.checkpoint_dir) / item,
                      run_hash=run_hash(cfg, train_cfg, item, start_model=cfg.sft_model, rows=rows),
                      report_to=report_to, run_name=f"control-{item}")
    stats.update(rows=len(rows), bad_rows=len(errors), matched_steps=n_steps)
    return stats


def run(cfg: Config, tracker, item: str | None = None) -> None:
    item = _item(item)
    tracker.set_tags({"control": item})
    n_steps = steps(cfg)
    # the workers get the matched step count: they cannot recompute it (it reads the dpo section)
    run_training(cfg, tracker, out_dir=Path(cfg.out_dir) / item,
                 spec={"item": item, "steps": n_steps, "config": cfg.model_dump(mode="json")}, command=launch_command,
                 worker_env=WORKER_ENV, train=lambda: train_item(cfg, item, n_steps, report_to=["mlflow"]),
                 what=f"training of control {item!r}", metrics_path=Path(cfg.metrics_dir) / f"{item}.json",
                 metrics_prefix=f"control.{item}.")


def worker_main(config_path: str) -> int:
    """Entry of each process under ``accelerate launch`` (vlmcot.training.launch.run_worker)."""

    def job(spec: dict) -> WorkerJob:
        cfg = Config.model_validate(spec["config"])
        return WorkerJob(cfg.torch_threads, Path(cfg.out_dir) / spec["item"],
                         lambda: train_item(cfg, spec["item"], int(spec["steps"]), report_to=["mlflow"]))

    return run_worker(config_path, job)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(worker_main(sys.argv[1]))
