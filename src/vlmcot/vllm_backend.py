"""vLLM generation backend (paper scale): the same ``GenerationBackend`` interface as HFBackend.

Imported only when selected (``backend: vllm`` in sample/evaluate params); vLLM itself is imported
inside :class:`VLLMBackend`, so this module and its request building are usable and tested without
it. Requests become vLLM prompt dicts ``{"prompt": <chat-templated text>, "multi_modal_data":
{"image": PIL.Image}}`` and one ``SamplingParams`` per call (``n`` = num_return_sequences, greedy as
temperature 0). Install on a GPU machine with ``pip install vllm`` (it brings its own CUDA torch:
use a separate environment from the CPU one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vlmcot.config import StrictModel
from vlmcot.generation import GenerationConfig, GenOutput, GenRequest, user_message


class VLLMConfig(StrictModel):
    # tensor parallel degree (GPUs per model replica); 8B LLaVA-NeXT fits on one 80 GB GPU
    tensor_parallel_size: int = 1
    # context length the engine reserves (prompt + image tokens + generation); anyres images take ~2.9k
    max_model_len: int = 8192
    # fraction of GPU memory for weights + KV cache
    gpu_memory_utilization: float = 0.9
    # images per prompt the engine accepts
    max_images_per_prompt: int = 1
    # dtype of the weights
    dtype: str = "bfloat16"


def sampling_kwargs(cfg: GenerationConfig) -> dict[str, Any]:
    """GenerationConfig -> vllm.SamplingParams kwargs. Greedy is temperature 0 in vLLM."""
    kw: dict[str, Any] = {"n": cfg.num_return_sequences, "max_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    if cfg.do_sample:
        kw.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=-1)
    else:
        if cfg.num_return_sequences > 1:
            raise ValueError("greedy decoding with num_return_sequences > 1 returns identical copies; "
                             "set do_sample: true")
        kw.update(temperature=0.0)
    return kw


def strip_duplicate_bos(text: str, tokenizer) -> str:
    """``text`` without its leading BOS when ``tokenizer`` adds one itself.

    vLLM tokenizes a text prompt with ``add_special_tokens=True``; a chat template that writes BOS
    (Llama-3: ``<|begin_of_text|>``) would then give the model two. The HF backend passes
    ``add_special_tokens=False`` instead; both end up with exactly one BOS.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not text.startswith(bos):
        return text
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return text[len(bos):] if ids and ids[0] == tokenizer.bos_token_id else text


def build_prompts(requests: list[GenRequest], render: Callable[[list[dict]], str],
                  load_image: Callable[[str], Any]) -> list[dict[str, Any]]:
    """One vLLM prompt dict per request. ``render`` applies the model's chat template (with the
    generation prompt); ``load_image`` opens a path as an RGB PIL image."""
    prompts = []
    for r in requests:
        text = render(user_message(r.prompt, with_image=r.image is not None))
        p: dict[str, Any] = {"prompt": text}
        if r.image is not None:
            p["multi_modal_data"] = {"image": load_image(r.image)}
        prompts.append(p)
    return prompts


@dataclass
class _Out:  # what we read of vLLM's RequestOutput, for tests and type clarity
    texts: list[str]
    num_tokens: list[int]


def collect(requests: list[GenRequest], outputs: list[Any]) -> list[GenOutput]:
    """vLLM RequestOutputs (same order as requests) -> GenOutputs."""
    if len(outputs) != len(requests):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
    res = []
    for r, o in zip(requests, outputs):
        comps = list(o.outputs)
        res.append(GenOutput(id=r.id, texts=[c.text.strip() for c in comps],
                             num_tokens=[len(c.token_ids) for c in comps]))
    return res


class VLLMBackend:
    """Offline vLLM engine over a local path or hub id (LLaVA / LLaVA-NeXT in HF format)."""

    def __init__(self, model: str, cfg: VLLMConfig | None = None, root: str | Path = "."):
        try:
            from vllm import LLM  # noqa: F401
        except ImportError as e:
            raise ImportError("backend 'vllm' selected but vllm is not installed: `pip install vllm` on a "
                              "GPU machine, or use backend: hf") from e
        from transformers import AutoProcessor
        from vllm import LLM

        cfg = cfg or VLLMConfig()
        self.root = Path(root)
        self.processor = AutoProcessor.from_pretrained(model)
        self.llm = LLM(model=model, tensor_parallel_size=cfg.tensor_parallel_size, max_model_len=cfg.max_model_len,
                       gpu_memory_utilization=cfg.gpu_memory_utilization, dtype=cfg.dtype,
                       limit_mm_per_prompt={"image": cfg.max_images_per_prompt})

    def _render(self, messages: list[dict]) -> str:
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return strip_duplicate_bos(text, self.processor.tokenizer)

    def _image(self, path: str):
        from PIL import Image

        p = Path(path)
        with Image.open(p if p.is_absolute() else self.root / p) as im:
            return im.convert("RGB")

    def generate(self, requests: list[GenRequest], cfg: GenerationConfig) -> list[GenOutput]:
        from vllm import SamplingParams

        prompts = build_prompts(requests, self._render, self._image)
        outputs = self.llm.generate(prompts, SamplingParams(**sampling_kwargs(cfg)), use_tqdm=True)
        return collect(requests, outputs)
