import pytest
import torch
from PIL import Image

from vlmcot.models import (
    TinyLlavaConfig,
    build_processor,
    build_tiny_llava,
    count_parameters,
    load_model_and_processor,
    train_bpe_tokenizer,
)

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=1, text_heads=2, text_intermediate=96, max_position=128, vocab_size=300)


@pytest.fixture(scope="module")
def parts():
    tok = train_bpe_tokenizer(["The red bar is 12.", "USER:\nASSISTANT:\n", "What is this?"] * 4, vocab_size=300)
    cfg = TinyLlavaConfig(**SMALL)
    return cfg, tok, build_processor(tok, cfg.image_size, cfg.patch_size), build_tiny_llava(cfg, tok)


def _batch(processor):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": "The red bar is 12."}]
    text = processor.apply_chat_template(msgs, tokenize=False)
    return processor(text=[text], images=[Image.new("RGB", (40, 30), "red")], return_tensors="pt",
                     add_special_tokens=False)


def test_build_and_forward(parts):
    cfg, tok, processor, model = parts
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert cfg.num_image_tokens == 4
    assert model.config.image_token_index == tok.image_token_id
    assert 10_000 < count_parameters(model) < 200_000
    batch = _batch(processor)
    assert batch["pixel_values"].shape == (1, 3, 32, 32)  # resized + cropped to the tiny size
    assert int((batch["input_ids"] == tok.image_token_id).sum()) == cfg.num_image_tokens
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)


def test_save_and_reload_with_auto_classes(parts, tmp_path):
    _, tok, processor, model = parts
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model2, processor2 = load_model_and_processor(str(tmp_path))
    assert type(model2).__name__ == "LlavaForConditionalGeneration"
    assert processor2.chat_template == processor.chat_template
    assert type(processor2.image_processor).__name__ == "CLIPImageProcessorPil"
    batch = _batch(processor2)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, model2(**batch).logits)


def test_bad_sizes_and_missing_model(tmp_path):
    tok = train_bpe_tokenizer(["abc"] * 3, vocab_size=270)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_tiny_llava(TinyLlavaConfig(**{**SMALL, "image_size": 30}), tok)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model_and_processor(str(tmp_path / "nope"))
