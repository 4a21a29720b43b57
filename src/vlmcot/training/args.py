"""The trainer settings SFT and DPO share, declared once (as TRL's SFTConfig and DPOConfig both extend
TrainingArguments).

:class:`TrainArgs` holds the fields named after ``TrainingArguments`` that
:func:`vlmcot.training.common.trainer_kwargs` maps onto either TRL config. The SFT wrapper's
:class:`~vlmcot.training.sft.TrainConfig` and the DPO wrapper's
:class:`~vlmcot.training.dpo.DPOTrainConfig` inherit it and add only their own trainer's fields; a
subclass restates a shared field only where its default or range differs (DPO's learning rate, its
frozen vision tower, its whole-step checkpoints), with a comment saying so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.training.lora import LoraSpec


class TrainArgs(StrictModel):
    """Settings of every Trainer run (params.yaml ``<stage>.train``); names follow TrainingArguments."""

    learning_rate: float = Field(1e-3, gt=0)  # peak lr (LLM + projector); paper: SFT 5e-6, DPO 5e-7
    freeze_vision_tower: bool = False  # True: vision tower gets no updates at all
    num_train_epochs: float = Field(1.0, gt=0)  # paper: 1 epoch
    max_steps: int = -1  # > 0 overrides num_train_epochs
    # rows (SFT) or pairs (DPO) per device step; paper: SFT 4, DPO 1 per GPU
    per_device_train_batch_size: int = Field(8, ge=1)
    # paper: SFT 1 (8 GPUs x 4 = 32), DPO 4 (8 GPUs x 1 x 4 = 32)
    gradient_accumulation_steps: int = Field(1, ge=1)
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"  # paper: cosine
    warmup_ratio: float = Field(0.03, ge=0, lt=1)  # paper: 0.03
    weight_decay: float = Field(0.0, ge=0)  # paper: 0
    max_grad_norm: float = Field(1.0, gt=0)  # gradient clipping
    max_length: int | None = Field(512, ge=16)  # prompt + response tokens incl. image tokens; paper SFT: 6144
    # paper: bf16 on GPUs. On a CPU: bfloat16 autocast (float32 master weights), 1.3-1.5x faster steps with
    # avx512_bf16 (README, "bf16 on CPU"); TrainingArguments needs use_cpu for it (common.trainer_kwargs)
    bf16: bool = False
    gradient_checkpointing: bool = False  # trade compute for memory at paper scale (TRL's DPO default: True)
    logging_steps: int = Field(10, ge=1)  # loss/lr (DPO: rewards, margins) to MLflow every N steps
    save_steps: float = Field(200, gt=0)  # checkpoint every N steps; < 1: a fraction of the run (paper: 0.333)
    save_total_limit: int = Field(1, ge=1)  # checkpoints kept
    keep_checkpoints: bool = False  # False: delete the checkpoint dir once the final model is saved
    dataloader_num_workers: int = Field(0, ge=0)  # image decoding workers (0 on a 2-core CPU)
    # DeepSpeed JSON config (paper: ZeRO-3 for SFT, configs/deepspeed/zero2.json for DPO); None on CPU
    deepspeed: str | None = None
    seed: int = 0  # data order and init of new heads
    # LoRA / QLoRA adapters instead of full fine-tuning (off: the paper's); in DPO the reference is then the
    # policy with its adapter off (no second model loaded)
    lora: LoraSpec = LoraSpec()
