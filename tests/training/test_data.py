"""LLaVA rows -> TRL rows, and the collator's labels: only assistant tokens (and EOS) carry loss."""

import pytest
from PIL import Image

from vlmcot.models import build_processor, train_bpe_tokenizer
from vlmcot.training.data import llava_to_messages, sft_rows, to_dataset


def _conv(q="<image>\nWhat is 3+4?", a="3 + 4 = 7.\n\n### Answer: 7"):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


def test_llava_to_messages_strips_image_token():
    assert llava_to_messages(_conv()) == [
        {"role": "user", "content": "What is 3+4?"},
        {"role": "assistant", "content": "3 + 4 = 7.\n\n### Answer: 7"},
    ]
    with pytest.raises(ValueError, match="expected a user turn"):
        llava_to_messages(_conv()[::-1])
    with pytest.raises(ValueError, match="end with an assistant"):
        llava_to_messages(_conv()[:1])


def test_sft_rows_skips_bad_records_by_id(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    recs = [
        {"id": "ok", "image": "a.png", "conversations": _conv()},
        {"id": "noimg", "image": "missing.png", "conversations": _conv()},
        {"id": "empty", "image": "a.png", "conversations": _conv(a=" ")},
    ]
    rows, errors = sft_rows(recs, root=tmp_path)
    assert [r["id"] for r in rows] == ["ok"] and rows[0]["images"] == [str(tmp_path / "a.png")]
    assert len(errors) == 2 and errors[0].startswith("record noimg: image file not found")
    assert errors[1].startswith("record empty:")


def test_collator_labels_only_assistant_tokens(tmp_path):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    tok = train_bpe_tokenizer(["What is 3+4? ### Answer: 7", "USER:\nASSISTANT:\n"] * 4, vocab_size=300)
    processor = build_processor(tok, 32, 16)
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "a.png")
    recs = [{"id": "a", "image": "a.png", "conversations": _conv()},
            {"id": "b", "image": "a.png", "conversations": _conv(a="7")}]
    rows, _ = sft_rows(recs, root=tmp_path)
    ds = to_dataset(rows)
    collator = DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True)
    batch = collator([dict(ds[i]) for i in range(2)])
    for i, answer in enumerate(["3 + 4 = 7.\n\n### Answer: 7", "7"]):
        labels = batch["labels"][i]
        kept = labels[labels != -100].tolist()
        # exactly the assistant text and the EOS that ends it; prompt, image tokens and padding masked
        assert tok.decode(kept) == answer + tok.eos_token
        assert kept[-1] == tok.eos_token_id
        assert tok.image_token_id not in kept
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
