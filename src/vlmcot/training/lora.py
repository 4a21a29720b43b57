"""LoRA / QLoRA through PEFT for the SFT and DPO wrappers (params: ``<stage>.train.lora``).

With ``lora.enabled`` the trainer gets a ``peft.LoraConfig`` (TRL wraps the model itself, so gradient
checkpointing and DPO's reference work as TRL designed them: DPO with LoRA uses the policy with its
adapter switched off as the reference, no second model). Only the adapter trains. The stage output stays
a full model, so every later stage loads it unchanged: the adapter is saved to ``<out>/adapter`` and
merged into the base weights, written to ``<out>``.

``lora.quantize: 4bit`` is QLoRA: the base weights load in 4-bit NF4 through bitsandbytes, which needs a
CUDA GPU. :func:`check_lora` says so at ``vlmcot plan`` time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel

# the Llama decoder's linear layers inside a LLaVA(-NeXT): the vision tower and projector keep no adapter
LANGUAGE_MODEL_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class LoraSpec(StrictModel):
    """LoRA adapter settings (params.yaml ``sft.train.lora``, ``dpo.train.lora``)."""

    enabled: bool = False  # False: full fine-tuning (the paper's)
    r: int = Field(16, ge=1)  # adapter rank
    alpha: int = Field(32, ge=1)  # scaling numerator (scale = alpha / r)
    dropout: float = Field(0.05, ge=0, lt=1)  # dropout on the adapter input
    # modules that get adapters: a regex over module names (default: the language model's linear layers)
    # or a list of module-name suffixes
    target_modules: str | list[str] = LANGUAGE_MODEL_LINEAR
    # modules trained in full beside the adapters (e.g. ["multi_modal_projector"]); [] = adapters only
    modules_to_save: list[str] = []
    # null: base weights in the stage's dtype; "4bit": QLoRA (NF4 via bitsandbytes, CUDA only)
    quantize: Literal["4bit"] | None = None
    # save the merged full model to the stage's output (later stages load it as any model)
    merge: bool = True


def check_lora(spec: LoraSpec, where: str) -> None:
    """Raise ValueError with what to do when ``spec`` cannot run on this machine."""
    if not spec.enabled:
        if spec.quantize:
            raise ValueError(f"{where}.lora.quantize is set but {where}.lora.enabled is false")
        return
    if importlib.util.find_spec("peft") is None:
        raise ValueError(f"{where}.lora.enabled needs the peft package: pip install 'peft>=0.21'")
    if spec.quantize == "4bit":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"{where}.lora.quantize: 4bit (QLoRA) needs a CUDA GPU (bitsandbytes 4-bit kernels); "
                             f"on this machine set {where}.lora.quantize: null (plain LoRA)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(f"{where}.lora.quantize: 4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes")


def peft_config(spec: LoraSpec):
    """The ``peft.LoraConfig`` for the trainer, or None when LoRA is off."""
    if not spec.enabled:
        return None
    check_lora(spec, "train")
    from peft import LoraConfig

    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, modules_to_save=spec.modules_to_save or None,
                      task_type="CAUSAL_LM")


def quantization_kwargs(spec: LoraSpec, dtype: str) -> dict:
    """from_pretrained kwargs that load the base weights in 4-bit for QLoRA ({} otherwise)."""
    if not (spec.enabled and spec.quantize == "4bit"):
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    compute = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype, torch.bfloat16)
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=True, bnb_4bit_quant_storage=compute)}


def save_adapter_and_merged(trainer, spec: LoraSpec, output_dir: Path) -> None:
    """Adapter to ``<output_dir>/adapter`` (every rank: under ZeRO-3 saving gathers); rank 0 then writes
    the merged full model to ``output_dir``."""
    adapter_dir = output_dir / "adapter"
    trainer.save_model(str(adapter_dir))
    if not spec.merge or not trainer.is_world_process_zero():
        return
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    if spec.quantize or is_deepspeed_zero3_enabled():
        # partitioned or 4-bit weights cannot be merged in place: reload the base (plain, whole) and the
        # saved adapter, then merge
        merged = _merge_from_files(peft_model.peft_config["default"].base_model_name_or_path, adapter_dir,
                                   peft_model.get_base_model().dtype)
    else:
        merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(output_dir))


def _merge_from_files(base: str | None, adapter_dir: Path, dtype):
    import transformers.integrations.deepspeed as hf_ds
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    if not base or not Path(base).exists() and base.count("/") != 1:
        raise ValueError(f"cannot merge the adapter: base model path {base!r} unknown; the adapter is in {adapter_dir}")
    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None  # load whole on this rank, not partitioned
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype if dtype.is_floating_point else None)
        return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved
