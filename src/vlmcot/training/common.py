"""What the SFT and DPO wrappers share: the TrainingArguments both build their TRL config from.

:func:`trainer_kwargs` maps the fields of :class:`~vlmcot.training.args.TrainArgs` (inherited by
:class:`~vlmcot.training.sft.TrainConfig` and :class:`~vlmcot.training.dpo.DPOTrainConfig`, named after
TrainingArguments) onto keyword arguments of ``SFTConfig`` / ``DPOConfig``; each wrapper adds only its
trainer's own settings.
"""

from __future__ import annotations

import os
from pathlib import Path


def single_process_env() -> None:
    """Outside a launcher (no RANK in the environment: one process, e.g. `launch.num_processes: 1` with
    `train.deepspeed` set), give torch.distributed the one-rank world accelerate would have set; without
    it DeepSpeed falls back to MPI discovery and fails ("No module named 'mpi4py'")."""
    import socket

    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        return
    with socket.socket() as s:  # a free rendezvous port, so two stages on one machine do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(port)).items():
        os.environ.setdefault(k, v)


def deepspeed_manages_weights(train, launch) -> bool:
    """Whether DeepSpeed runs this training (``train.deepspeed``, or a multi-process launch whose accelerate
    config is a DEEPSPEED one): its ZeRO optimizer then keeps fp32 master weights of bf16-loaded ones."""
    if getattr(train, "deepspeed", None):
        return True
    if launch is None or not launch.distributed or not launch.accelerate_config:
        return False
    from vlmcot.config import load_yaml

    try:
        acc = load_yaml(Path(launch.accelerate_config).read_text()) or {}
    except OSError:
        return False  # a missing accelerate config fails at launch, with accelerate's own message
    return str(acc.get("distributed_type", "")).upper() == "DEEPSPEED"


def master_dtype(dtype: str, train, launch) -> str:
    """The dtype to load the weights being trained in. AdamW on bf16 parameters loses every update below
    half of bf16's precision (2^-8 relative: a 5e-7 step on a weight of 0.02 rounds away), so a full
    fine-tune asked for in bfloat16 without DeepSpeed's fp32 master weights loads float32 weights instead
    and trains under bf16 autocast (``train.bf16``). LoRA trains fp32 adapters (peft casts them) on frozen
    base weights, which stay in ``dtype``."""
    if dtype != "bfloat16" or train.lora.enabled or deepspeed_manages_weights(train, launch):
        return dtype
    return "float32"


def trainer_kwargs(cfg, output_dir: str | Path, report_to: list[str] | None, run_name: str) -> dict:
    """Keyword arguments shared by our ``SFTConfig`` and ``DPOConfig`` (either config class as ``cfg``)."""
    import torch

    # bf16 without an accelerator: TrainingArguments refuses it unless told to run on the CPU, where it
    # means torch.autocast(cpu, bfloat16) around the forward (float32 weights and optimizer state)
    cpu_bf16 = cfg.bf16 and not (torch.cuda.is_available() or torch.xpu.is_available())
    if cfg.deepspeed:
        single_process_env()
    return dict(
        use_cpu=cpu_bf16,
        output_dir=str(output_dir),
        run_name=run_name,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length,
        bf16=cfg.bf16,
        # transformers 5 name; `gradient_checkpointing` is its deprecated alias (warns, gone in v6). Set
        # explicitly: TRL's configs default the alias to True.
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_pin_memory=False,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        dataloader_num_workers=cfg.dataloader_num_workers,
        deepspeed=cfg.deepspeed,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=report_to if report_to is not None else [],
        disable_tqdm=False,
        save_only_model=False,
    )


def materialize(model_or_loader):
    """A model, or the model a zero-argument loader returns (called only now: after the training
    arguments, so a DeepSpeed ZeRO-3 config is registered and ``from_pretrained`` builds it partitioned)."""
    import torch

    if isinstance(model_or_loader, torch.nn.Module) or not callable(model_or_loader):
        return model_or_loader
    return model_or_loader()


def freeze(model, vision_tower: bool, projector: bool) -> list[str]:
    """Turn off gradients of the vision tower and/or projector; return the frozen module names."""
    frozen = []
    inner = model.model
    for name, flag in (("vision_tower", vision_tower), ("multi_modal_projector", projector)):
        if flag:
            for p in getattr(inner, name).parameters():
                p.requires_grad_(False)
            frozen.append(name)
    return frozen
