"""SFT of a tiny LLaVA-NeXT whose chat template ships without generation markers (the paper-scale case)."""

import pytest


@pytest.mark.slow
def test_sft_trains_llava_next_with_shipped_llama3_template(tmp_path):
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmcot.models.chat_template import has_generation_markers
    from vlmcot.models.tiny import build_tiny_llava_next
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import TrainConfig, train_sft

    Image.new("RGB", (50, 30), "red").save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": "red"}]
    rows, _ = sft_rows([{"id": str(i), "image": "a.png", "conversations": conv} for i in range(8)], tmp_path)
    model, processor = build_tiny_llava_next(texts=["What color? red"])
    assert not has_generation_markers(processor.chat_template)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tc = TrainConfig(learning_rate=1e-3, max_steps=2, save_steps=100, per_device_train_batch_size=4)
    stats = train_sft(model, processor, rows, tc, tmp_path / "out", tmp_path / "ckpt", "h")
    assert stats["global_step"] == 2 and stats["train_loss"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    back = AutoProcessor.from_pretrained(tmp_path / "out")
    assert has_generation_markers(back.chat_template)
    assert type(AutoModelForImageTextToText.from_pretrained(tmp_path / "out")).__name__ == \
        "LlavaNextForConditionalGeneration"


def test_collator_masks_everything_but_the_assistant_turn(tmp_path):
    """The labels TRL builds with the rewritten template: only the answer and <|eot_id|> carry loss."""
    from PIL import Image
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from vlmcot.models.chat_template import ensure_training_template
    from vlmcot.models.tiny import build_tiny_llava_next

    _, processor = build_tiny_llava_next(texts=["What color? red"])
    ensure_training_template(processor)
    coll = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
    ex = {"images": [Image.new("RGB", (50, 30))], "messages": [
        {"role": "user", "content": "What color?"}, {"role": "assistant", "content": "red"}]}
    batch = coll([ex])
    labels = batch["labels"][0]
    kept = processor.tokenizer.decode(labels[labels != -100].tolist(), skip_special_tokens=False)
    assert kept.strip() == "red<|eot_id|>"
