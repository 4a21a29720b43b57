"""Language pretraining of the tiny LLaVA's LM: it learns the facts it reads, and leaves vision alone."""

from __future__ import annotations

import pytest
import torch

from vlmcot.models import TinyLlavaConfig, build_tiny_llava, train_bpe_tokenizer
from vlmcot.training.text import TextPretrainConfig, arithmetic_facts, fact_accuracy, pack, pretrain_language_model
from vlmcot.world.text import TextCorpusConfig, corpus


def _model(docs):
    tok = train_bpe_tokenizer(docs, vocab_size=300, min_frequency=1)
    cfg = TinyLlavaConfig(image_size=16, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2,
                          text_hidden=64, text_layers=2, text_heads=2, text_intermediate=128, max_position=128,
                          vocab_size=300)
    return build_tiny_llava(cfg, tok), tok


def test_pack_rows_are_seq_len_tokens_with_eos_between_documents():
    docs = corpus(40, 0, TextCorpusConfig())
    _, tok = _model(docs)
    rows = pack(docs, tok, 16)
    assert rows.shape[1] == 16 and rows.shape[0] > 10
    assert int((rows == tok.eos_token_id).sum()) >= len(docs) - 2


@pytest.mark.slow  # ~40 s: the facts are learned only after a plateau (300 steps: 4%, 900: 100%)
def test_pretraining_learns_small_multiplication_table_and_freezes_vision():
    cfg_c = TextCorpusConfig(kinds={"mul": 1.0}, max_digit=3, sentences=3)
    docs = corpus(600, 0, cfg_c)
    model, tok = _model(docs)
    facts = [(p, a) for p, a in arithmetic_facts(60, 0, 3) if "×" in p]
    before = fact_accuracy(model, tok, facts, bf16=False)
    vision = {n: p.detach().clone() for n, p in model.named_parameters() if "vision_tower" in n or "projector" in n}
    cfg = TextPretrainConfig(steps=900, batch_size=16, seq_len=32, learning_rate=3e-3, corpus=cfg_c)
    stats = pretrain_language_model(model, tok, docs, cfg, heldout_docs=corpus(40, 1, cfg_c))
    after = fact_accuracy(model, tok, facts, bf16=False)
    assert stats["heldout_loss"] < stats["heldout_loss_before"] - 1.0
    assert after >= 0.9 > before
    for n, p in model.named_parameters():
        if n in vision:
            assert torch.equal(p, vision[n]), n
