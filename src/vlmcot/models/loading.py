"""Loading a VLM and its processor by local path or hub id (the same call at both scales)."""

from __future__ import annotations

from pathlib import Path


def load_model_and_processor(path_or_id: str, dtype: str = "float32", device: str | None = None):
    """``AutoModelForImageTextToText`` + ``AutoProcessor``; a missing local path fails with a clear error.

    Offline by default (HF_HUB_OFFLINE=1 is set by vlmcot.tracking.configure): a hub id works only
    when it is in the local cache or the user turned the hub on.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    looks_local = path_or_id.startswith((".", "/")) or Path(path_or_id).exists() or path_or_id.count("/") != 1
    if looks_local and not Path(path_or_id).is_dir():
        raise FileNotFoundError(f"model directory not found: {path_or_id} (run the stage that writes it first)")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = AutoModelForImageTextToText.from_pretrained(path_or_id, dtype=torch_dtype)
    if device:
        model = model.to(device)
    processor = AutoProcessor.from_pretrained(path_or_id)
    return model, processor
