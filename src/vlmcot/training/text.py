"""Language pretraining of the tiny LLaVA's language model on plain text (embedded scale).

The stand-in for the pretrained LLM inside a real VLM: before the base stage teaches the model to see,
its language model (embeddings, decoder, LM head) learns next-token prediction on the world's text
corpus (vlmcot.world.text: arithmetic, comparisons, labelled values, food chains). Without it, SFT had to
teach a randomly initialised 3-layer LM to add from ~10k QA rows, and it did not ("8 + 8 = 14. So the
answer is 10", issue #18). Text rows are short and carry no image tokens, so this phase is cheap.

A plain PyTorch loop (like vision.py): documents are tokenized once, packed end to end (EOS between
documents) into rows of ``seq_len`` tokens, and drawn in a seeded order. The vision tower and projector
get no gradient (no image is ever fed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.progress import Progress
from vlmcot.world.text import TextCorpusConfig

log = logging.getLogger(__name__)


class TextPretrainConfig(StrictModel):
    """params.yaml ``base.text_pretrain``."""

    steps: int = Field(0, ge=0)  # optimizer steps; 0 skips the phase
    documents: int = Field(40000, ge=1)  # corpus size (documents drawn from vlmcot.world.text)
    batch_size: int = Field(32, ge=1)  # packed rows per step
    seq_len: int = Field(64, ge=8)  # tokens per packed row
    learning_rate: float = Field(2e-3, gt=0)  # AdamW peak lr, cosine decay after warmup
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    logging_steps: int = Field(100, ge=1)  # loss to MLflow every N steps
    seed: int = 0  # corpus draw and batch order
    bf16: bool = True  # bfloat16 autocast (float32 weights), as in vision_pretrain
    corpus: TextCorpusConfig = TextCorpusConfig()


def pack(docs: list[str], tokenizer, seq_len: int):
    """``docs`` tokenized and packed into a [rows, seq_len] LongTensor (EOS after every document)."""
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for d in docs:
        ids.extend(tokenizer(d, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"text corpus too small: {len(ids)} tokens < seq_len {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def fact_accuracy(model, tokenizer, facts: list[tuple[str, str]], bf16: bool) -> float:
    """Share of ``(prefix, answer)`` facts ("7 + 8 =", "15") whose greedy continuation is the answer."""
    import torch

    model.eval()
    right = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for prefix, answer in facts:
            ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            want = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids])
            ok = True
            for t in want:
                nxt = int(model(input_ids=x).logits[0, -1].argmax())
                if nxt != t:
                    ok = False
                    break
                x = torch.cat([x, torch.tensor([[nxt]])], dim=1)
            right += ok
    model.train()
    return right / len(facts) if facts else 0.0


def arithmetic_facts(n: int, seed: int, max_digit: int) -> list[tuple[str, str]]:
    """``n`` random one-digit sums, differences and products, as (prefix, answer)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, max_digit), rng.randint(1, max_digit)
        op = rng.choice("+-×")
        if op == "-":
            a, b = max(a, b), min(a, b)
        out.append((f"{a} {op} {b} =", str(a + b if op == "+" else a - b if op == "-" else a * b)))
    return out


def heldout_loss(model, rows, batch_size: int, bf16: bool) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(rows), batch_size):
            x = rows[i : i + batch_size]
            losses.append(float(model(input_ids=x, labels=x).loss))
    model.train()
    return sum(losses) / len(losses)


def pretrain_language_model(
    model,
    tokenizer,
    docs: list[str],
    cfg: TextPretrainConfig,
    heldout_docs: list[str] | None = None,
    log_metrics: Callable[[dict, int], None] | None = None,
) -> dict[str, float]:
    """Train ``model``'s language side in place on ``docs``; returns loss figures and timing."""
    import torch

    rows = pack(docs, tokenizer, cfg.seq_len)
    held = pack(heldout_docs, tokenizer, cfg.seq_len) if heldout_docs else None
    params = [p for n, p in model.named_parameters() if p.requires_grad and "vision_tower" not in n
              and "multi_modal_projector" not in n]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup_ratio * cfg.steps))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, cfg.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(rows), generator=gen)
    pos = 0
    stats: dict[str, float] = {"rows": len(rows), "tokens": rows.numel()}
    facts = arithmetic_facts(200, cfg.seed + 7, cfg.corpus.max_digit)
    if held is not None:
        stats["heldout_loss_before"] = heldout_loss(model, held, cfg.batch_size, cfg.bf16)
    model.train()
    t0 = time.perf_counter()
    running = []
    progress = Progress("text pretraining", cfg.steps, logger=log)
    for step in range(cfg.steps):
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(rows), generator=gen), 0
        x = rows[order[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running.append(float(loss.detach()))
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == cfg.steps:
            mean = sum(running) / len(running)
            running = []
            log.info("text pretraining step %d/%d: loss %.4f", step + 1, cfg.steps, mean)
            if log_metrics is not None:
                log_metrics({"text_pretrain.loss": mean}, step + 1)
            stats["final_loss"] = mean
        progress.update(1)
    stats["seconds"] = time.perf_counter() - t0
    if held is not None:
        stats["heldout_loss"] = heldout_loss(model, held, cfg.batch_size, cfg.bf16)
    # one-digit arithmetic the world's rationales need (what the SFT'd model got wrong before, #18)
    stats["arithmetic_acc"] = fact_accuracy(model, tokenizer, facts, cfg.bf16)
    return stats
