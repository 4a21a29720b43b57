"""Open the generation backend a stage's ``backend`` setting names (shared by evaluate and sample).

``hf``: transformers in this process (vlmcot.generation.HFBackend); ``vllm``: vLLM in this process
(vlmcot.vllm_backend); ``server``: vLLM OpenAI-compatible servers (vlmcot.server_backend). A backend that
cannot start (no server answering, vllm not installed) is a clean StageError naming the stage's key.
"""

from __future__ import annotations

from typing import Literal

from vlmcot.errors import StageError
from vlmcot.server_backend import ServerConfig
from vlmcot.vllm_backend import VLLMConfig

BackendKind = Literal["hf", "vllm", "server"]


def open_backend(kind: BackendKind, model: str, *, server: ServerConfig, vllm: VLLMConfig, root: str,
                 dtype: str, device: str, progress: bool, section: str):
    """The backend ``kind`` for ``model`` (a folder or hub id); ``section`` names the params section in errors."""
    if kind == "server":
        from vlmcot.server_backend import ServerBackend

        try:
            return ServerBackend(model, server, root=root)
        except ConnectionError as e:
            raise StageError(f"{section}.server: {e}") from None
    if kind == "vllm":
        from vlmcot.vllm_backend import VLLMBackend

        try:
            return VLLMBackend(model, vllm, root=root)
        except ImportError as e:
            raise StageError(f"{section}.backend: {e}") from None
    from vlmcot.generation import HFBackend
    from vlmcot.models import load_model_and_processor

    model_, processor = load_model_and_processor(model, dtype=dtype, device=device)
    return HFBackend(model_, processor, root=root, progress=progress)
