"""Dense reading pretraining of the CLIP vision tower (embedded scale): the stand-in for CLIP's own
web-scale pretraining, which is why a real LLaVA can read a chart before it ever sees a QA pair.

A tower trained from scratch only through the language-model loss stayed image-blind for hundreds of
steps and never learned to read words (README, "base"). Here each patch feature of the layer the
projector reads is trained, through two throw-away linear heads, to classify the printed token covering
that patch and its colour (targets from vlmcot.world.layout). The heads are discarded; the tower's
weights go on into the base stage's description training.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.progress import Progress

log = logging.getLogger(__name__)


class VisionPretrainConfig(StrictModel):
    """params.yaml ``base.vision_pretrain``."""

    steps: int = Field(0, ge=0)  # optimizer steps; 0 skips the phase (the tower learns only from the LM loss)
    batch_size: int = Field(64, ge=1)  # images per step
    learning_rate: float = Field(1e-3, gt=0)  # AdamW peak lr, cosine decay after warmup
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    # a patch is labelled with a token when the token's box covers at least this many of its pixels
    min_overlap: float = Field(6.0, ge=0)
    eval_images: int = Field(400, ge=0)  # eval images scored (patch accuracy) after training
    logging_steps: int = Field(50, ge=1)  # loss to MLflow every N steps
    seed: int = 0  # head init and batch order
    # bfloat16 autocast for the forward pass (weights and optimizer stay float32): on a CPU with
    # avx512_bf16 the step ran faster (README, "bf16 on CPU"); without it, slower but still correct
    bf16: bool = False


def _features(tower, pixel_values, layer: int):
    # the projector's input: the chosen layer's patch tokens, CLS dropped (LLaVA "default" strategy)
    return tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[layer][:, 1:]


def patch_accuracy(pred_tok, gold_tok, pred_col, gold_col, digit_ids: set[int]) -> dict[str, float]:
    """Share of patches labelled right: text patches (split into digits and words), background
    patches (no token: the prediction must say none), and colour over all patches."""
    import torch

    text = gold_tok > 0
    digit = torch.zeros_like(text)
    for i in digit_ids:
        digit |= gold_tok == i

    def acc(mask) -> float:
        n = int(mask.sum())
        return float(((pred_tok == gold_tok) & mask).sum()) / n if n else 0.0

    return {
        "text_acc": acc(text),
        "digit_acc": acc(digit),
        "word_acc": acc(text & ~digit),
        "background_acc": acc(~text),
        "colour_acc": float((pred_col == gold_col).float().mean()) if gold_col.numel() else 0.0,
    }


def pretrain_vision_tower(
    tower,
    feature_layer: int,
    train: tuple,
    cfg: VisionPretrainConfig,
    n_tokens: int,
    n_colours: int,
    evaluation: tuple | None = None,
    digit_ids: set[int] | None = None,
    log_metrics: Callable[[dict[str, float], int], None] | None = None,
) -> dict[str, float]:
    """Train ``tower`` in place on ``train = (pixel_values [N,3,H,W], token ids [N,P], colour ids [N,P])``.

    Token id 0 means "no token"; ids the train set never saw should be mapped to ``n_tokens - 1`` (an
    "unknown" class) by the caller. Returns final loss, runtime and, with ``evaluation``, patch accuracies.
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    x, y_tok, y_col = train
    hidden = tower.config.hidden_size
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tok_head = torch.nn.Linear(hidden, n_tokens)
    col_head = torch.nn.Linear(hidden, n_colours)
    params = [p for p in tower.parameters() if p.requires_grad] + [*tok_head.parameters(), *col_head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * cfg.steps), cfg.steps)
    ce = torch.nn.functional.cross_entropy
    tower.train()
    start, loss_v = time.perf_counter(), float("nan")
    progress = Progress("vision pretraining", cfg.steps, logger=log)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, len(x), (min(cfg.batch_size, len(x)),), generator=gen)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            h = _features(tower, x[idx], feature_layer)
            logits_t, logits_c = tok_head(h).flatten(0, 1), col_head(h).flatten(0, 1)
        # the loss in float32: autocast would otherwise leave bf16 logits to the cross-entropy
        loss = ce(logits_t.float(), y_tok[idx].flatten()) + ce(logits_c.float(), y_col[idx].flatten())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"vision pretraining loss is {loss.item()} at step {step} (lower base.vision_pretrain.learning_rate)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_v = loss.item()
        progress.update(extra=f"loss {loss_v:.4f}")
        if log_metrics and (step % cfg.logging_steps == 0 or step == cfg.steps):
            log_metrics({"vision_pretrain.loss": loss_v, "vision_pretrain.lr": sched.get_last_lr()[0]}, step)
    stats = {"steps": cfg.steps, "final_loss": loss_v, "runtime_s": time.perf_counter() - start}
    if evaluation is not None and len(evaluation[0]):
        ex, ey_tok, ey_col = evaluation
        tower.eval()
        with torch.no_grad():
            preds_t, preds_c = [], []
            for i in range(0, len(ex), 256):
                h = _features(tower, ex[i : i + 256], feature_layer)
                preds_t.append(tok_head(h).argmax(-1))
                preds_c.append(col_head(h).argmax(-1))
        stats.update(patch_accuracy(torch.cat(preds_t), ey_tok, torch.cat(preds_c), ey_col, digit_ids or set()))
    tower.train()
    return stats
