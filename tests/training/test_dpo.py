"""The DPO wrapper on a tiny LLaVA: a few steps give a finite loss, the policy moves, the reference and
the vision tower + projector stay frozen, and the chosen-vs-rejected margin grows."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from vlmcot.logprobs import ScoreRequest, response_logprobs
from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer
from vlmcot.training.dpo import DPOTrainConfig, dpo_rows, train_dpo

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=1, text_heads=2, text_intermediate=96, max_position=256, vocab_size=300, seed=4)


def _pairs(root):
    pairs = []
    for i in range(8):
        Image.new("RGB", (32, 32), (20 * i, 100, 50)).save(root / f"{i}.png")
        pairs.append({"id": f"q{i}-p0", "image": f"{i}.png", "prompt": "What is the sum?\nGenerate a reason first.",
                      "chosen": f"The bars are 3 and {i}.\n\n### Answer: {3 + i}",
                      "rejected": f"The bars are 3 and {i}.\n\n### Answer: {i}", "answer": str(3 + i),
                      "dataset": "synth_chart"})
    return pairs


def test_dpo_rows_skip_bad_pairs(tmp_path):
    pairs = _pairs(tmp_path)
    pairs.append({**pairs[0], "id": "bad-img", "image": "missing.png"})
    pairs.append({**pairs[0], "id": "same", "rejected": pairs[0]["chosen"]})
    rows, errors = dpo_rows(pairs, tmp_path)
    assert len(rows) == 8 and len(errors) == 2
    assert "bad-img" in errors[0] and "image file not found" in errors[0] and "same" in errors[1]
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"][0]["role"] == "assistant"


def test_config_checks_loss_weights():
    with pytest.raises(ValueError, match="loss_weights"):
        DPOTrainConfig(loss_type=["sigmoid", "sft"], loss_weights=[1.0])


@pytest.mark.slow
def test_few_dpo_steps_move_policy_not_reference(tmp_path):
    tok = train_bpe_tokenizer(["The bars are 3 and 4.\n\n### Answer: 7", "What is the sum?", "USER:\nASSISTANT:\n"] * 4,
                              vocab_size=300)
    processor = build_processor(tok, 32, 16)
    policy = build_tiny_llava(TinyLlavaConfig(**SMALL), tok)
    ref = copy.deepcopy(policy)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    ref_before = {n: p.detach().clone() for n, p in ref.named_parameters()}
    rows, errors = dpo_rows(_pairs(tmp_path), tmp_path)
    assert not errors
    reqs = [ScoreRequest(r["id"], r["images"][0], r["prompt"][0]["content"], r[side][0]["content"])
            for r in rows for side in ("chosen", "rejected")]
    lp0 = [o.total for o in response_logprobs(policy, processor, reqs, batch_size=16)]

    cfg = DPOTrainConfig(learning_rate=5e-3, max_steps=6, per_device_train_batch_size=4, logging_steps=2,
                         save_steps=100, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.2], warmup_ratio=0.0)
    stats = train_dpo(policy, ref, processor, rows, cfg, tmp_path / "out", tmp_path / "ckpt", run_hash="h")
    assert stats["global_step"] == 6
    assert torch.isfinite(torch.tensor(stats["train_loss"]))
    assert (tmp_path / "out/model.safetensors").is_file() and (tmp_path / "out/processor_config.json").exists()
    assert not (tmp_path / "ckpt").exists()

    moved = [n for n, p in policy.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("language_model" in n for n in moved)
    assert not [n for n in moved if "vision_tower" in n or "multi_modal_projector" in n]
    assert all(torch.equal(p.detach(), ref_before[n]) for n, p in ref.named_parameters())

    # the implicit reward margin (chosen - rejected log-ratio) grew on the training pairs
    lp1 = [o.total for o in response_logprobs(policy, processor, reqs, batch_size=16)]
    margin0 = sum(lp0[0::2]) - sum(lp0[1::2])
    margin1 = sum(lp1[0::2]) - sum(lp1[1::2])
    assert margin1 > margin0
