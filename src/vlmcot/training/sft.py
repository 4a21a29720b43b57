"""Supervised fine-tuning of a VLM with TRL's SFTTrainer (assistant-only loss), the paper's recipe.

One function, :func:`train_sft`, used by the ``base`` stage (image -> description pretraining of the
tiny model) and the ``sft`` stage (the four mixes). It adds what TRL does not: a separate (smaller)
learning rate for the vision tower [paper: 5e-6 LLM, 5e-7 vision], safe resume from a checkpoint
written by an identical config (vlmcot.training.checkpoints), and logging into the MLflow run the stage already opened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from pydantic import Field

from vlmcot.training.args import TrainArgs
from vlmcot.training.checkpoints import prepare_checkpoint_dir, train_and_save
from vlmcot.training.common import materialize, trainer_kwargs
from vlmcot.training.lora import peft_config

log = logging.getLogger(__name__)

class TrainConfig(TrainArgs):
    """SFTTrainer settings (params.yaml ``base.train`` / ``sft.train``): the shared TrainArgs plus SFT's own."""

    vision_learning_rate: float | None = Field(None, ge=0)  # vision tower lr; None = learning_rate (paper: 5e-7)
    group_by_length: bool = False  # batch rows of similar length: less padding, but batches become one-family (noisier)


def _make_trainer_class():
    from trl import SFTTrainer

    from vlmcot.training.resume import ExactResumeMixin

    class VLMSFTTrainer(ExactResumeMixin, SFTTrainer):
        """SFTTrainer with a separate learning rate for the vision tower (LLaVA-NeXT's mm_vision_tower_lr)."""

        vision_learning_rate: float | None = None

        def _set_signature_columns_if_needed(self):
            # keep the "length" column for the length-grouped sampler (TRL drops unknown columns first)
            super()._set_signature_columns_if_needed()
            # and "id", so a collator error can name the record (NamedImageErrors)
            for col in ("length", "id"):
                if col not in self._signature_columns:
                    self._signature_columns = [*self._signature_columns, col]

        def create_optimizer(self, *args, **kwargs):
            if self.optimizer is not None or self.vision_learning_rate is None:
                return super().create_optimizer(*args, **kwargs)
            import torch

            decay = set(self.get_decay_parameter_names(self.model))
            groups: dict[tuple[bool, bool], list] = {}
            for name, p in self.model.named_parameters():
                if not p.requires_grad:
                    continue
                groups.setdefault(("vision_tower" in name, name in decay), []).append(p)
            wd = self.args.weight_decay
            param_groups = [
                {
                    "params": ps,
                    "weight_decay": wd if dec else 0.0,
                    "lr": self.vision_learning_rate if vis else self.args.learning_rate,
                }
                for (vis, dec), ps in sorted(groups.items())
            ]
            optim_cls, optim_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            optim_kwargs = {k: v for k, v in optim_kwargs.items() if k != "lr"}
            self.optimizer = optim_cls(param_groups, **optim_kwargs)
            assert isinstance(self.optimizer, torch.optim.Optimizer)
            return self.optimizer

    return VLMSFTTrainer


def sft_config(cfg: TrainConfig, output_dir: str | Path, report_to: list[str] | None = None, run_name: str = "sft"):
    """The TRL ``SFTConfig`` for ``cfg`` (assistant-only loss, no packing: images cannot be packed)."""
    from trl import SFTConfig

    return SFTConfig(
        **trainer_kwargs(cfg, output_dir, report_to, run_name),
        assistant_only_loss=True,
        packing=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        length_column_name="length",
    )


def train_sft(
    model,
    processor,
    rows: list[dict],
    cfg: TrainConfig,
    output_dir: str | Path,
    checkpoint_dir: str | Path,
    run_hash: str,
    report_to: list[str] | None = None,
    run_name: str = "sft",
    callbacks: list | None = None,
) -> dict[str, float]:
    """Train on ``rows`` (see vlmcot.training.data.sft_rows), save model + processor to ``output_dir``.

    ``model`` is a model or a zero-argument function returning one (:func:`vlmcot.models.loading.load_model`
    bound to a path): a function is called after the training arguments exist, so under DeepSpeed
    ZeRO-3 ``from_pretrained`` builds the model already partitioned (no rank holds it whole).
    Resumes from the last complete checkpoint in ``checkpoint_dir`` when it was written by the same
    ``run_hash`` (a crashed or killed run); a different config starts fresh.
    Returns the trainer's final metrics (train_loss, train_runtime, steps, ...).
    """
    from vlmcot.models.chat_template import ensure_training_template
    from vlmcot.training.data import NamedImageErrors, to_dataset

    # assistant-only loss needs {% generation %} markers; a shipped template without them (Llama-3
    # LLaVA-NeXT) gets them here, verified by rendering, and is saved with the model
    if ensure_training_template(processor):
        log.info("chat template: added {%% generation %%} markers around the assistant turn")
    output_dir, checkpoint_dir = Path(output_dir), Path(checkpoint_dir)
    resume = prepare_checkpoint_dir(checkpoint_dir, run_hash)
    # the arguments first: with a ZeRO-3 config they register the DeepSpeed config from_pretrained reads
    args = sft_config(cfg, checkpoint_dir, report_to=report_to, run_name=run_name)
    model = materialize(model)
    if cfg.freeze_vision_tower:
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=to_dataset(rows, decode=False),
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config(cfg.lora),
    )
    trainer.vision_learning_rate = None if cfg.freeze_vision_tower else cfg.vision_learning_rate
    trainer.data_collator = NamedImageErrors(trainer.data_collator)
    metrics = train_and_save(trainer, processor, cfg, resume, output_dir, checkpoint_dir)
    metrics["resumed_from_step"] = int(resume.name.split("-")[-1]) if resume is not None else 0
    return metrics
