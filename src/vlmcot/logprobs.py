"""Per-token log-probabilities of a response under a VLM, teacher-forced and batched.

Used by the ``rerank`` stage (the DPO reward r(y) = beta * sum_t [log pi_dpo - log pi_sft]) and the
``credit`` stage (the same log-ratio per token). The token layout is the one TRL's DPO collator trains
on: the prompt rendered by the chat template with the generation prompt (image tokens expanded by the
processor), followed by the completion the template writes for the assistant turn. Only completion
tokens are scored, up to and including EOS (``include_eos=True``) or up to it (``False``); whatever the
template writes after EOS (a newline) is never generated, so it is never scored.

    out = response_logprobs(model, processor, [ScoreRequest("q1", "img.png", prompt, response)], batch_size=16)
    out[0].logprobs  # numpy float64, one per response token
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmcot.generation import user_message


@dataclass
class ScoreRequest:
    id: str
    image: str | None  # path (repo-relative or absolute); None for text-only
    prompt: str  # human text without <image>
    response: str  # assistant text to score


@dataclass
class ResponseLogprobs:
    id: str
    token_ids: list[int]  # scored response tokens (EOS last when include_eos)
    logprobs: np.ndarray = field(repr=False)  # log p(token | prompt, image, previous tokens), float64

    @property
    def total(self) -> float:
        return float(self.logprobs.sum())


def completion_ids(processor, prompt: str, response: str, with_image: bool, include_eos: bool = True) -> list[int]:
    """The response's token ids as the chat template lays them out after the generation prompt."""
    tok = processor.tokenizer
    user = user_message(prompt, with_image=with_image)
    prompt_text = processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template(
        user + [{"role": "assistant", "content": [{"type": "text", "text": response}]}], tokenize=False
    )
    # The common prefix, as TRL computes it (templates may differ in what the generation prompt adds).
    n = 0
    for a, b in zip(prompt_text, full):
        if a != b:
            break
        n += 1
    if n < len(prompt_text):
        raise ValueError("the chat template renders the prompt differently with and without the generation prompt")
    completion = full[n:]
    eos = tok.eos_token
    if eos and eos in completion:
        cut = completion.index(eos)
        completion = completion[: cut + (len(eos) if include_eos else 0)]
    return tok(completion, add_special_tokens=False)["input_ids"]


def model_inputs(enc, device, dtype) -> dict:
    """Everything the processor returned beside the text (``pixel_values``, LLaVA-NeXT's ``image_sizes``,
    any other model input), on ``device``; floating tensors in the model's ``dtype``."""
    import torch

    out = {}
    for k, v in enc.items():
        if k in ("input_ids", "attention_mask") or not isinstance(v, torch.Tensor):
            continue
        out[k] = v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
    return out


class _Images:
    """Decoded RGB images by path: the candidates of one question share their image."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, object] = {}

    def __call__(self, path: str):
        if path not in self._cache:
            from PIL import Image

            p = Path(path)
            p = p if p.is_absolute() else self.root / p
            with Image.open(p) as im:
                self._cache[path] = im.convert("RGB")
            if len(self._cache) > 512:  # bound memory on long runs
                self._cache.pop(next(iter(self._cache)))
        return self._cache[path]


def response_logprobs(
    model,
    processor,
    requests: list[ScoreRequest],
    batch_size: int,
    root: str | Path = ".",
    include_eos: bool = True,
    progress: bool = False,
) -> list[ResponseLogprobs]:
    """Teacher-forced log-probs of each request's response tokens; one result per request, same order.

    Sequences are right-padded (prompt then response per row), so positions match an unpadded forward.
    """
    import torch
    from tqdm.auto import tqdm

    tok = processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    images = _Images(Path(root))
    model.eval()
    device = next(model.parameters()).device
    # Sort by response length so each batch pads little; results go back in request order.
    order = sorted(range(len(requests)), key=lambda i: (len(requests[i].response), i))
    results: dict[int, ResponseLogprobs] = {}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc="logprobs", disable=not progress, mininterval=5):
        reqs = [requests[i] for i in idx]
        with_img = [r.image is not None for r in reqs]
        if any(with_img) and not all(with_img):
            raise ValueError("a log-prob batch mixes requests with and without images")
        prompt_texts = [
            processor.apply_chat_template(user_message(r.prompt, r.image is not None), tokenize=False,
                                          add_generation_prompt=True)
            for r in reqs
        ]
        enc = processor(
            text=prompt_texts,
            images=[images(r.image) for r in reqs] if all(with_img) else None,
            padding=True,
            padding_side="right",
            add_special_tokens=False,  # the chat template already wrote BOS
            return_tensors="pt",
        )
        rows, spans = [], []
        for j, r in enumerate(reqs):
            p_ids = enc["input_ids"][j][enc["attention_mask"][j].bool()].tolist()
            if not p_ids:
                raise ValueError(f"request {r.id}: empty prompt (the first response token needs a context)")
            c_ids = completion_ids(processor, r.prompt, r.response, r.image is not None, include_eos)
            rows.append(p_ids + c_ids)
            spans.append((len(p_ids), len(c_ids)))
        width = max(len(x) for x in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for j, x in enumerate(rows):
            input_ids[j, : len(x)] = torch.tensor(x, dtype=torch.long)
            attention[j, : len(x)] = 1
        kwargs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "use_cache": False}
        kwargs.update(model_inputs(enc, device, model.dtype))
        with torch.inference_mode():
            logits = model(**kwargs).logits.float()
        # token t is predicted at position t-1
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1))
        logp = logp.squeeze(-1).double().cpu().numpy()
        for j, (i, (start, n)) in enumerate(zip(idx, spans)):
            ids = rows[j][start : start + n]
            results[i] = ResponseLogprobs(requests[i].id, ids, logp[j, start - 1 : start - 1 + n].copy())
    return [results[i] for i in range(len(requests))]
