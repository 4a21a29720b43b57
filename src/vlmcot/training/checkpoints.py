"""Checkpoints that resume only into the run that wrote them, the training run itself and the final save
(shared by the SFT, DPO and GRPO wrappers).

A stage keys its run with :func:`run_hash` (everything that shapes it: its config and item, the identity
of the model folder it starts from, the content of its training rows), written beside the checkpoints;
:func:`prepare_checkpoint_dir` resumes from the newest complete checkpoint only when the hash matches, and
otherwise starts fresh. A killed run's partial checkpoint is removed, never loaded. :func:`train_and_save`
is the part of a wrapper after its Trainer exists: train (from that checkpoint), save, drop the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from vlmcot.models.loading import model_identity
from vlmcot.training.lora import save_adapter_and_merged

log = logging.getLogger(__name__)

CONFIG_HASH_FILE = "vlmcot_train_hash.txt"


def config_hash(*parts) -> str:
    """Hash of everything that shapes a run; a checkpoint resumes only into an identical run."""
    blob = json.dumps([p.model_dump(mode="json") if hasattr(p, "model_dump") else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rows_digest(rows: list[dict]) -> str:
    """sha256 of the training rows as JSON (keys sorted): a rewritten row (its text, image path or id)
    changes it, where a list of ids alone would not."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def run_hash(*parts, start_model: str | None, rows: list[dict]) -> str:
    """The ``run_hash`` a stage hands its trainer: :func:`config_hash` of ``parts`` (the stage's config,
    its item), the identity of ``start_model`` (vlmcot.models.loading.model_identity: a local folder's
    file names, sizes and mtimes; a hub id as it is; None for a model built in the process) and
    :func:`rows_digest` of ``rows``. Without the last two a run killed mid-way resumed on top of a starting model retrained
    in place since (sft retrains models/sft/both, which dpo, grpo and the controls start from) or with
    rows rewritten under the same ids (a new mix, new pairs)."""
    return config_hash(*parts, model_identity(start_model) if start_model else None, rows_digest(rows))


def last_complete_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` holding trainer_state.json (transformers writes it last), removing
    any newer, partial checkpoint a killed run left behind."""
    ckpts = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    while ckpts and not (ckpts[-1] / "trainer_state.json").is_file():
        log.warning("removing incomplete checkpoint %s", ckpts[-1])
        shutil.rmtree(ckpts.pop())
    return ckpts[-1] if ckpts else None


def prepare_checkpoint_dir(ckpt_dir: Path, run_hash: str) -> Path | None:
    """The checkpoint to resume from when ``ckpt_dir`` holds one of this same run; else wipe the dir."""
    marker = ckpt_dir / CONFIG_HASH_FILE
    if ckpt_dir.is_dir():
        same = marker.is_file() and marker.read_text().strip() == run_hash
        if same:
            last = last_complete_checkpoint(ckpt_dir)
            if last is not None:
                return last
        else:
            log.info("checkpoint dir %s belongs to another config: starting fresh", ckpt_dir)
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_hash + "\n")
    return None


def save_final(trainer, processor, cfg, output_dir: Path, checkpoint_dir: Path) -> None:
    """Save the trained model and its processor to ``output_dir``; drop ``checkpoint_dir`` unless
    ``cfg.keep_checkpoints`` (``cfg``: a ``TrainArgs``). Call it on every rank: under ZeRO-3 saving
    gathers the partitioned weights (rank 0 alone would wait forever); the Trainer writes the files on
    the main process only."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.lora.enabled:
        save_adapter_and_merged(trainer, cfg.lora, output_dir)
    else:
        trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(output_dir))
        if not cfg.keep_checkpoints:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


def train_and_save(trainer, processor, cfg, resume: Path | None, output_dir: Path,
                   checkpoint_dir: Path) -> dict[str, float]:
    """What every wrapper does once its Trainer exists: train, resuming from ``resume`` (what
    :func:`prepare_checkpoint_dir` answered before the Trainer was built: a checkpoint of this same run,
    or None), then :func:`save_final` (on every rank). Returns the trainer's final metrics (train_loss,
    train_runtime, ...) plus ``global_step``; a wrapper adds its own from ``trainer.state`` after."""
    if resume is not None:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    metrics = dict(result.metrics)
    metrics["global_step"] = trainer.state.global_step
    save_final(trainer, processor, cfg, output_dir, checkpoint_dir)  # every rank
    return metrics


def logged_scalars(entry: dict | None, prefix: str) -> dict[str, float]:
    """The numbers of one Trainer log entry (``trainer.state.log_history``) as ``<prefix>_<key>`` with
    ``/`` as ``_`` (``rewards/margins`` -> ``last_rewards_margins``), epoch and step left out; the DPO and
    GRPO wrappers report their first / last logged diagnostics this way. None: nothing."""
    return {f"{prefix}_{k.replace('/', '_')}": float(v) for k, v in (entry or {}).items()
            if isinstance(v, (int, float)) and k not in ("epoch", "step")}
