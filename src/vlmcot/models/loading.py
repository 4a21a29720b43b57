"""Loading a VLM and its processor by local path or hub id (the same call at both scales)."""

from __future__ import annotations

import hashlib
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(device: str | None) -> str:
    """``"auto"`` (or None): cuda when available, else cpu; anything else as given (``cuda:1``, ``cpu``)."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _check_path(path_or_id: str) -> None:
    hub_like = path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/"))
    if not Path(path_or_id).is_dir() and not hub_like:
        raise FileNotFoundError(f"model directory not found: {path_or_id} (run the stage that writes it first)")


def model_identity(model: str) -> str:
    """What a model name stands for right now, for keying work that must not outlive the model: a local
    model folder's path plus every file's relative path, size and modification time; any other name (a hub
    id, a served model) as it is. Two users: `sample`'s partial file (the sft stage retrains into the same
    folder, and a partial file keyed on the path alone once resumed 32 of 38 chunks drawn from the model
    before) and the training checkpoints' run hash (vlmcot.training.checkpoints: a killed run must not
    resume on top of a retrained starting model). Metadata, not content: hashing an 8B model's 16 GB on
    every run is not worth it, and a false "changed" only costs a re-sample or a fresh start. Here, beside
    loading (the same local-folder-or-name reading), because sampling and the training layer both key on
    it and training, the lower layer, may not import sampling."""
    p = Path(model)
    if not model or not p.is_dir():  # Path("") is the working directory: never walk it
        return model
    h = hashlib.sha256(model.encode())
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        st = f.stat()
        h.update(f"\x00{f.relative_to(p).as_posix()}\x00{st.st_size}\x00{st.st_mtime_ns}".encode())
    return f"{model}@{h.hexdigest()[:16]}"


def load_model(path_or_id: str, dtype: str = "float32", device: str | None = None, **pretrained_kw):
    """``AutoModelForImageTextToText`` in ``dtype`` on ``device`` (``auto``: cuda when available, else cpu;
    None: where from_pretrained puts it, for training, where the Trainer places it per rank).

    Offline by default (HF_HUB_OFFLINE=1 is set by vlmcot.tracking.configure): a hub id works only
    when it is in the local cache or the user turned the hub on. Under a registered DeepSpeed ZeRO-3
    config (the training arguments exist) from_pretrained builds the model partitioned across ranks.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    _check_path(path_or_id)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    try:
        model = AutoModelForImageTextToText.from_pretrained(path_or_id, dtype=torch_dtype, **pretrained_kw)
    except OSError as e:
        raise FileNotFoundError(
            f"model {path_or_id!r} is neither a local directory nor in the hub cache (offline: HF_HUB_OFFLINE=1): {e}"
        ) from None
    if device is not None:
        model = model.to(resolve_device(device))
    return model


def load_processor(path_or_id: str):
    from transformers import AutoProcessor

    _check_path(path_or_id)
    return AutoProcessor.from_pretrained(path_or_id)


def load_model_and_processor(path_or_id: str, dtype: str = "float32", device: str | None = None):
    """:func:`load_model` + :func:`load_processor`; a missing local path fails with a clear error."""
    return load_model(path_or_id, dtype, device), load_processor(path_or_id)


def model_loader(path_or_id: str, dtype: str = "float32", **pretrained_kw):
    """A zero-argument function loading the model, for the training wrappers (they call it once the
    training arguments exist, so ZeRO-3 partitions it at load time). ``pretrained_kw`` go to
    from_pretrained (QLoRA's quantization_config: vlmcot.training.lora.quantization_kwargs)."""
    _check_path(path_or_id)  # fail before any training setup
    return lambda: load_model(path_or_id, dtype, **pretrained_kw)


def free_device_memory() -> None:
    """Return a deleted model's accelerator memory before the next one loads."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
