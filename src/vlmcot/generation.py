"""Batched generation behind one small interface, shared by the evaluate, sample and rerank stages.

A :class:`GenerationBackend` turns (image, prompt text) requests into ``num_return_sequences`` texts
each. :class:`HFBackend` runs a transformers model in-process (left padding, so a batch gives the same
greedy output as one request at a time). For Llama-based models it computes each prompt (vision tower +
prefill) once and decodes its ``num_return_sequences`` rows against the shared prompt cache
(:mod:`vlmcot.prefix_sharing`); other models go through ``model.generate``. The vLLM backend
(:mod:`vlmcot.vllm_backend`) plugs in behind the same interface.
The prompt text is the human turn *without* ``<image>``: the backend's chat template places the image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import Field

from vlmcot.config import StrictModel

log = logging.getLogger(__name__)


class GenerationConfig(StrictModel):
    """Decoding settings (params.yaml ``evaluate.generation``; ``sample`` reuses it)."""

    max_new_tokens: int = Field(128, ge=1)  # CoT answers peak near 100 tokens in the paper
    do_sample: bool = False  # False: greedy decoding (evaluation default)
    temperature: float = Field(1.0, gt=0)  # only with do_sample (paper: 1.0 short answer, 1.2 multiple choice)
    top_p: float = Field(1.0, gt=0, le=1)  # nucleus sampling mass, only with do_sample
    num_return_sequences: int = Field(1, ge=1)  # candidates per request (paper: 32 for DPO pairs)
    batch_size: int = Field(32, ge=1)  # requests per forward batch
    seed: int = 0  # sampling seed (torch.manual_seed before each batch, so results do not depend on order)


@dataclass
class GenRequest:
    id: str
    image: str | None  # path (repo-relative or absolute); None for text-only
    prompt: str  # human text without <image>


@dataclass
class GenOutput:
    id: str
    texts: list[str]  # num_return_sequences generations
    num_tokens: list[int]  # generated tokens per text (EOS excluded)


class GenerationBackend(Protocol):
    """What evaluation and sampling need from a model server."""

    def generate(self, requests: list[GenRequest], cfg: GenerationConfig) -> list[GenOutput]:
        """One output per request, same order."""
        ...


class LazyBackend:
    """A backend built at its first generate call: merging finished shards loads no model."""

    def __init__(self, make):
        self._make, self._backend = make, None

    def generate(self, requests: list[GenRequest], cfg: GenerationConfig) -> list[GenOutput]:
        if self._backend is None:
            self._backend = self._make()
        return self._backend.generate(requests, cfg)


def user_message(prompt: str, with_image: bool = True) -> list[dict]:
    """The conversation for one request, in content-block form (the chat template renders the image)."""
    content: list[dict] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


class HFBackend:
    """In-process transformers generation with left padding.

    ``prefix_sharing`` (default on): decode with :func:`vlmcot.prefix_sharing.generate_shared` when the
    model supports it (greedy output equals ``generate``'s token for token; sampled draws are seeded
    but differ from ``generate``'s). Off, or for an unsupported model: ``model.generate``.
    """

    def __init__(self, model, processor, root: str | Path = ".", progress: bool = True,
                 prefix_sharing: bool = True):
        from vlmcot.prefix_sharing import unsupported_reason

        self.model = model.eval()
        self.processor = processor
        self.root = Path(root)
        self.progress = progress
        self._image_cache: dict[str, object] = {}
        reason = unsupported_reason(self.model) if prefix_sharing else "turned off"
        self.prefix_sharing = reason is None
        if prefix_sharing and reason is not None:
            log.info("prefix sharing unavailable (%s): decoding with model.generate", reason)

    @classmethod
    def from_pretrained(cls, path: str, root: str | Path = ".", dtype: str = "float32", device: str = "auto",
                        **kw) -> HFBackend:
        from vlmcot.models.loading import load_model_and_processor

        model, processor = load_model_and_processor(path, dtype=dtype, device=device)
        return cls(model, processor, root=root, **kw)

    def _image(self, path: str):
        from PIL import Image

        p = Path(path)
        p = p if p.is_absolute() else self.root / p
        with Image.open(p) as im:
            return im.convert("RGB")

    def _prompt_text(self, req: GenRequest) -> str:
        msgs = user_message(req.prompt, with_image=req.image is not None)
        return self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[GenRequest], cfg: GenerationConfig) -> list[GenOutput]:
        import torch
        from tqdm.auto import tqdm

        from vlmcot.prefix_sharing import generate_shared

        tok = self.processor.tokenizer
        # Sort by prompt length so each batch pads little; outputs go back in request order.
        texts = [self._prompt_text(r) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (len(texts[i]), i))
        results: dict[int, GenOutput] = {}
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for b, idx in enumerate(tqdm(batches, desc="generate", disable=not self.progress, mininterval=5)):
            with_img = [i for i in idx if requests[i].image is not None]
            if with_img and len(with_img) != len(idx):
                raise ValueError("a generation batch mixes requests with and without images")
            images = [self._image(requests[i].image) for i in idx] if with_img else None
            inputs = self.processor(
                text=[texts[i] for i in idx],
                images=images,
                padding=True,
                padding_side="left",
                add_special_tokens=False,  # the chat template already wrote BOS
                return_tensors="pt",
            ).to(device=self.model.device, dtype=self.model.dtype)  # floats (pixel_values) only
            if cfg.do_sample:
                # Seeded per batch index, so a resumed or re-batched run reproduces the same draws.
                torch.manual_seed(cfg.seed + b)
            n = cfg.num_return_sequences
            if self.prefix_sharing:
                new = generate_shared(
                    self.model, inputs, n, cfg.max_new_tokens, tok.eos_token_id, tok.pad_token_id,
                    do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                    # generate honours the model's generation_config.min_new_tokens too
                    min_new_tokens=getattr(self.model.generation_config, "min_new_tokens", None) or 0,
                )
            else:
                gen_kw = dict(
                    max_new_tokens=cfg.max_new_tokens,
                    do_sample=cfg.do_sample,
                    num_return_sequences=n,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
                if cfg.do_sample:
                    gen_kw.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
                with torch.inference_mode():
                    out = self.model.generate(**inputs, **gen_kw)
                new = out[:, inputs["input_ids"].shape[1] :]
            for j, i in enumerate(idx):
                rows = new[j * n : (j + 1) * n]
                decoded, lengths = [], []
                for row in rows:
                    ids = row.tolist()
                    # cut at the first EOS (later positions are padding)
                    if tok.eos_token_id in ids:
                        ids = ids[: ids.index(tok.eos_token_id)]
                    ids = [t for t in ids if t != tok.pad_token_id]
                    decoded.append(tok.decode(ids, skip_special_tokens=True).strip())
                    lengths.append(len(ids))
                results[i] = GenOutput(id=requests[i].id, texts=decoded, num_tokens=lengths)
        return [results[i] for i in range(len(requests))]
