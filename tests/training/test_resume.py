"""restore_weights: a Trainer checkpoint (save_pretrained layout, the hub's key names) goes back into the
model in memory (other key names) completely, or fails naming the keys; never a silent fresh start."""

import pytest

from vlmcot.models import TinyLlavaConfig, build_tiny_llava, train_bpe_tokenizer
from vlmcot.training.resume import CheckpointMismatch, restore_weights


def _model(seed: int, text_hidden: int = 48):
    tok = train_bpe_tokenizer(["What color? red", "USER:\nASSISTANT:\n"] * 4, vocab_size=280)
    cfg = TinyLlavaConfig(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2,
                          text_hidden=text_hidden, text_layers=1, text_heads=2, text_intermediate=96,
                          max_position=64, seed=seed)
    return build_tiny_llava(cfg, tok)


def test_checkpoint_keys_differ_from_the_model_and_are_restored_all(tmp_path):
    import safetensors.torch
    import torch

    saved, other = _model(seed=1), _model(seed=2)
    saved.save_pretrained(tmp_path)
    on_disk = set(safetensors.torch.load_file(tmp_path / "model.safetensors"))
    # the root cause: a raw load_state_dict of the checkpoint (what Trainer._load_from_checkpoint does)
    # matches none of the model's keys
    assert not on_disk & set(other.state_dict())
    assert other.load_state_dict(safetensors.torch.load_file(tmp_path / "model.safetensors"), strict=False).missing_keys
    before = torch.get_rng_state()
    restore_weights(other, str(tmp_path))
    assert torch.equal(torch.get_rng_state(), before)
    want, got = saved.state_dict(), other.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_a_checkpoint_of_another_model_fails_naming_keys(tmp_path):
    _model(seed=1, text_hidden=64).save_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatch, match="size mismatch"):
        restore_weights(_model(seed=1), str(tmp_path))
