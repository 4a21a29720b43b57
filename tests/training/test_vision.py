"""Reading pretraining of the vision tower: accuracy bookkeeping and that training learns the labels."""

from __future__ import annotations

import torch

from vlmcot.training.vision import VisionPretrainConfig, patch_accuracy, pretrain_vision_tower


def test_patch_accuracy_splits_text_digits_words_background():
    gold = torch.tensor([[0, 1, 2, 2, 3, 0]])
    pred = torch.tensor([[0, 1, 2, 0, 1, 1]])
    acc = patch_accuracy(pred, gold, torch.tensor([[1, 2]]), torch.tensor([[1, 1]]), digit_ids={2})
    assert acc["text_acc"] == 2 / 4
    assert acc["digit_acc"] == 1 / 2
    assert acc["word_acc"] == 1 / 2
    assert acc["background_acc"] == 1 / 2
    assert acc["colour_acc"] == 1 / 2


def _tower():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, image_size=16, patch_size=8))


def _data(n=32):
    # 4 patches per image; a patch's token is 1 when its top-left pixel is bright, colour = its channel
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 16, 16, generator=g)
    tok = (x[:, 0, ::8, ::8] > 0).long().flatten(1)
    col = x[:, :, ::8, ::8].argmax(1).flatten(1)
    return x, tok, col


def test_pretraining_learns_patch_labels_and_logs():
    data = _data()
    logged = []
    before = pretrain_vision_tower(_tower(), -1, data, VisionPretrainConfig(steps=0), 2, 3, evaluation=data)
    after = pretrain_vision_tower(_tower(), -1, data, VisionPretrainConfig(steps=60, batch_size=16, learning_rate=3e-3,
                                  logging_steps=20), 2, 3, evaluation=data, log_metrics=lambda m, s: logged.append(s))
    assert after["steps"] == 60 and logged == [20, 40, 60]
    assert after["text_acc"] > before["text_acc"] + 0.2
    assert after["colour_acc"] > before["colour_acc"] + 0.2


def test_pretraining_changes_only_the_tower_and_is_deterministic():
    data = _data()
    cfg = VisionPretrainConfig(steps=5, batch_size=8)
    a, b = _tower(), _tower()
    pretrain_vision_tower(a, -1, data, cfg, 2, 3)
    pretrain_vision_tower(b, -1, data, cfg, 2, 3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    fresh = dict(_tower().named_parameters())
    assert any(not torch.equal(p, fresh[n]) for n, p in a.named_parameters())


def test_bf16_autocast_learns_and_keeps_float32_weights():
    data = _data()
    tower = _tower()
    stats = pretrain_vision_tower(tower, -1, data, VisionPretrainConfig(steps=60, batch_size=16, learning_rate=3e-3,
                                  bf16=True), 2, 3, evaluation=data)
    assert stats["text_acc"] > 0.7 and stats["colour_acc"] > 0.7
    assert all(p.dtype == torch.float32 for p in tower.parameters())
