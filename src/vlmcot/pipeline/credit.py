"""Stage `credit`: token-level credit assignment by the DPO model (paper section 5.4, Figure 8).

    python stages/credit.py          # same as: vlmcot credit

Takes a handful of preference pairs (chosen and rejected responses of the same question), scores every
response token under the DPO and the SFT model (vlmcot.logprobs), and draws log pi_dpo - log pi_sft,
normalised to mean 0 per response, as an HTML page and a PNG heat map (vlmcot.token_credit). Writes
``<out_dir>/credit.html``, ``credit.png`` and ``tokens.jsonl`` (tokens and raw/normalised scores), and
logs them to MLflow. Pairs are picked deterministically: shortest responses first, one per question,
spread over datasets, so the figure stays readable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.io import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

SECTION = "credit"


class Config(StrictModel):
    # preference pairs (the pairs stage's output)
    pairs: str = "data/pairs/pairs.jsonl"
    # the model whose per-token log-ratio is drawn, and the reference it was trained from: the DPO model and
    # its SFT reference (`-S credit.policy=models/grpo` draws the GRPO model's; dvc.yaml's deps follow both keys)
    policy: str = "models/dpo"
    reference: str = "models/sft/both"
    # how many pairs to draw (each gives a chosen and a rejected example)
    num_pairs: int = Field(3, ge=1)
    # only pairs of these datasets (None: all)
    datasets: list[str] | None = None
    # outputs: credit.html, credit.png, tokens.jsonl
    out_dir: str = "data/credit"
    # summary numbers (mean token reward of chosen vs rejected before normalisation)
    metrics: str = "metrics/credit.json"
    # image paths are relative to this folder
    root: str = "."
    # weights dtype (paper scale: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuda when available, else cpu (or "cuda:1", "cpu")
    device: str = "auto"
    # sequences per teacher-forced forward
    batch_size: int = Field(16, ge=1)


def pick_pairs(pairs: list[dict], n: int, datasets: list[str] | None) -> list[dict]:
    """Up to n pairs, one per question, round-robin over datasets, shortest (chosen+rejected) first."""
    by_ds: dict[str, list[dict]] = {}
    seen_q: set[str] = set()
    for p in sorted(pairs, key=lambda p: (len(p["chosen"]) + len(p["rejected"]), p["id"])):
        q = p["id"].rsplit("-p", 1)[0]
        if q in seen_q or (datasets is not None and p.get("dataset") not in datasets):
            continue
        seen_q.add(q)
        by_ds.setdefault(p.get("dataset", ""), []).append(p)
    picked: list[dict] = []
    queues = [by_ds[d] for d in sorted(by_ds)]
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def run(cfg: Config, tracker) -> None:
    import numpy as np

    from vlmcot.token_credit import CreditExample, normalize, render_png, token_rewards, write_html
    from vlmcot.logprobs import ScoreRequest, response_logprobs
    from vlmcot.models import load_model_and_processor
    from vlmcot.models.loading import free_device_memory

    if not Path(cfg.pairs).is_file():
        raise StageError(f"{cfg.pairs} not found (run the pairs stage first)")
    for p in (cfg.policy, cfg.reference):
        if not Path(p).is_dir():
            raise StageError(f"model not found: {p}")
    picked = pick_pairs(read_jsonl(cfg.pairs), cfg.num_pairs, cfg.datasets)
    if not picked:
        raise StageError(f"{cfg.pairs}: no pairs to draw (dataset filter: {cfg.datasets})")
    reqs = [ScoreRequest(f"{p['id']}:{side}", p["image"], p["prompt"], p[side])
            for p in picked for side in ("chosen", "rejected")]
    scored = {}
    tokenizer = None
    for name, path in (("dpo", cfg.policy), ("sft", cfg.reference)):
        # one model at a time on the device (two 8B models need not fit together)
        model, processor = load_model_and_processor(path, dtype=cfg.dtype, device=cfg.device)
        tokenizer = processor.tokenizer
        # EOS left out: the figure shows the words of the response
        scored[name] = response_logprobs(model, processor, reqs, batch_size=cfg.batch_size, root=cfg.root,
                                         include_eos=False)
        del model
        free_device_memory()
    examples, rows = [], []
    means = {"chosen": [], "rejected": []}
    for req, d, s in zip(reqs, scored["dpo"], scored["sft"], strict=True):
        if d.token_ids != s.token_ids:
            raise StageError(f"{req.id}: the DPO and SFT tokenizers disagree; credit needs one vocabulary")
        raw = token_rewards(d.logprobs, s.logprobs)
        norm = normalize(raw)
        tokens = [tokenizer.decode([t]) for t in d.token_ids]
        pid, side = req.id.rsplit(":", 1)
        pair = next(p for p in picked if p["id"] == pid)
        means[side].append(float(np.mean(raw)) if raw.size else 0.0)
        examples.append(CreditExample(title=f"{pid} ({pair.get('dataset', '')}, answer {pair.get('answer', '')})",
                                      tokens=tokens, scores=norm.tolist(), label=side))
        rows.append({"id": pid, "side": side, "dataset": pair.get("dataset"), "tokens": tokens,
                     "raw": [round(float(x), 6) for x in raw], "normalized": [round(float(x), 6) for x in norm]})
    out = Path(cfg.out_dir)
    html = write_html(out / "credit.html", examples)
    png = render_png(out / "credit.png", examples)
    write_jsonl(out / "tokens.jsonl", rows)
    metrics = {
        "examples": len(examples),
        "chosen.mean_token_reward": round(float(np.mean(means["chosen"])), 6),
        "rejected.mean_token_reward": round(float(np.mean(means["rejected"])), 6),
    }
    write_json(cfg.metrics, metrics)
    tracker.log_metrics(metrics)
    for p in (html, png, out / "tokens.jsonl"):
        tracker.log_artifact(p, "credit")
    log.info("credit: %d examples -> %s, %s", len(examples), html, png)
