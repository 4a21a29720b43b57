"""Direct preference optimisation of a VLM with TRL's DPOTrainer (paper section 3.3, the DPO stage).

:func:`train_dpo` trains a policy from the SFT model against a frozen, separate copy of the same SFT
model (TRL 1.16 refuses ``ref_model is model``), with the vision tower and projector frozen as in the
paper, sigmoid loss summed over response tokens, and optionally an SFT (NLL) term on the chosen
response (RPO-style: ``loss_type: [sigmoid, sft]`` with ``loss_weights``). It shares the SFT wrapper's
checkpoint handling (vlmcot.training.checkpoints: resume only into an identical run) and logs into the
stage's MLflow run.

Measured pitfalls on this stack (STACK-NOTES.md): bf16 on a CPU needs use_cpu (common.trainer_kwargs);
DPOConfig turns gradient checkpointing on by default (off here: tiny models do not need it); there is no
max_prompt_length, so responses are truncated upstream (pairs stage, 90 words);
precompute_ref_log_probs raises for images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlmcot.training.args import TrainArgs
from vlmcot.training.checkpoints import logged_scalars, prepare_checkpoint_dir, train_and_save
from vlmcot.training.common import freeze, materialize, trainer_kwargs
from vlmcot.training.lora import peft_config

log = logging.getLogger(__name__)

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sft", "sigmoid_norm", "apo_zero", "apo_down")


class DPOTrainConfig(TrainArgs):
    """DPOTrainer settings (params.yaml ``dpo.train``): the shared TrainArgs plus DPO's own; names follow
    TRL's DPOConfig."""

    beta: float = Field(0.1, gt=0)  # KL strength; paper: 0.1
    loss_type: list[Literal[LOSS_TYPES]] = ["sigmoid"]  # paper: sigmoid; add "sft" for an NLL term on chosen
    loss_weights: list[float] | None = None  # one weight per loss_type (None: all 1.0)
    freeze_projector: bool = True  # paper: frozen during DPO
    # shared fields whose DPO default or range differs:
    learning_rate: float = Field(5e-7, gt=0)  # paper: 5e-7
    freeze_vision_tower: bool = True  # paper: frozen during DPO
    save_steps: int = Field(200, ge=1)  # whole steps only (no fraction of the run)

    @model_validator(mode="after")
    def _weights(self) -> DPOTrainConfig:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} entries for {len(self.loss_type)} loss types")
        return self


def dpo_rows(pairs: list[dict], root: str | Path = ".") -> tuple[list[dict], list[str]]:
    """Pair records -> TRL conversational preference rows ``{images, prompt, chosen, rejected}``.

    A pair with a missing or undecodable image (each distinct file fully decoded once: pairs may be
    imported released ones that never went through prepare) or an empty side is skipped, with one
    error naming its id.
    """
    from vlmcot.training.data import trainable_image

    root = Path(root)
    rows, errors = [], []
    seen: dict[Path, str | None] = {}
    for n, p in enumerate(pairs):
        pid = p.get("id", f"<row {n}>")
        try:
            for key in ("prompt", "chosen", "rejected", "image"):
                if not isinstance(p.get(key), str) or not p[key].strip():
                    raise ValueError(f"empty or missing {key!r}")
            if p["chosen"] == p["rejected"]:
                raise ValueError("chosen and rejected are the same text")
            img = trainable_image(p["image"], root, seen)
        except ValueError as e:
            errors.append(f"pair {pid}: {e}")
            continue
        rows.append({
            "id": pid,
            "images": [str(img)],
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        })
    return rows, errors


def dpo_config(cfg: DPOTrainConfig, output_dir: str | Path, report_to: list[str] | None = None, run_name: str = "dpo"):
    from trl import DPOConfig

    return DPOConfig(
        **trainer_kwargs(cfg, output_dir, report_to, run_name),
        beta=cfg.beta,
        loss_type=list(cfg.loss_type),
        loss_weights=cfg.loss_weights,
    )


def train_dpo(
    model,
    ref_model,
    processor,
    rows: list[dict],
    cfg: DPOTrainConfig,
    output_dir: str | Path,
    checkpoint_dir: str | Path,
    run_hash: str,
    report_to: list[str] | None = None,
    run_name: str = "dpo",
    callbacks: list | None = None,
) -> dict[str, float]:
    """DPO ``model`` on ``rows`` (see :func:`dpo_rows`) against ``ref_model``; save model + processor.

    ``ref_model`` must be a separate object holding the same (SFT) weights; it is put in eval mode
    with every gradient off. Either may be a zero-argument function returning the model, called after
    the training arguments exist (under DeepSpeed ZeRO-3 the model is then built partitioned).
    Returns the trainer's final metrics plus ``global_step``.
    """
    from trl import DPOTrainer

    from vlmcot.training.data import to_dataset
    from vlmcot.training.resume import ExactResumeMixin

    class VLMDPOTrainer(ExactResumeMixin, DPOTrainer):
        """DPOTrainer whose resume restores the policy's weights (vlmcot.training.resume)."""

    if ref_model is model:
        raise ValueError("ref_model must be a separate copy of the SFT model, not the policy itself")
    output_dir, checkpoint_dir = Path(output_dir), Path(checkpoint_dir)
    resume = prepare_checkpoint_dir(checkpoint_dir, run_hash)
    # the arguments first: with a ZeRO-3 config they register the DeepSpeed config from_pretrained reads
    args = dpo_config(cfg, checkpoint_dir, report_to=report_to, run_name=run_name)
    # with LoRA the reference is the policy with its adapter off: the second model is never loaded
    model, ref_model = materialize(model), (None if cfg.lora.enabled else materialize(ref_model))
    if ref_model is model:
        raise ValueError("ref_model must be a separate copy of the SFT model, not the policy itself")
    frozen = freeze(model, cfg.freeze_vision_tower, cfg.freeze_projector)
    if ref_model is not None:
        ref_model.eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    log.info("DPO: %d pairs, frozen: %s", len(rows), frozen or "nothing")
    trainer = VLMDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=to_dataset(rows),
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config(cfg.lora),
    )
    metrics = train_and_save(trainer, processor, cfg, resume, output_dir, checkpoint_dir)
    # last logged DPO diagnostics (rewards/margins/accuracies), for the stage's metrics file
    metrics.update(logged_scalars(next((e for e in reversed(trainer.state.log_history) if "loss" in e), None), "last"))
    return metrics
