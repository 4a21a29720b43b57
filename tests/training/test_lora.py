"""LoRA through PEFT on a tiny LLaVA-NeXT: SFT and DPO train only the adapter, the stage output is the
merged full model (it loads like any model and equals base + adapter merged), and QLoRA on a machine
without CUDA is refused with what to do."""

import pytest
import torch
from PIL import Image

from vlmcot.training.lora import LoraSpec, check_lora

LORA = LoraSpec(enabled=True, r=4, alpha=8, dropout=0.0)


def test_qlora_without_cuda_is_a_clear_error():
    spec = LoraSpec(enabled=True, quantize="4bit")
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match=r"sft.train.lora.quantize: 4bit \(QLoRA\) needs a CUDA GPU"):
        check_lora(spec, "sft.train")
    with pytest.raises(ValueError, match="enabled is false"):
        check_lora(LoraSpec(quantize="4bit"), "dpo.train")
    check_lora(LORA, "sft.train")  # plain LoRA runs anywhere peft is installed


def _base(tmp_path):
    from vlmcot.models.tiny import build_tiny_llava_next

    model, processor = build_tiny_llava_next(texts=["What color? red blue", "### Answer: 7"])
    model.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    return {k: v.clone() for k, v in model.state_dict().items()}


def _check_merged(tmp_path, out, base_sd):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    assert set(merged) == set(base_sd)  # a plain full model, no adapter keys
    changed = {k for k in base_sd if not torch.equal(base_sd[k], merged[k])}
    assert changed and all("language_model" in k and k.endswith("proj.weight") for k in changed), sorted(changed)
    assert not [k for k in changed if "vision_tower" in k or "multi_modal_projector" in k or "embed" in k]
    # the merged weights are base + the saved adapter
    again = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tmp_path / "base"),
                                      str(out / "adapter"))
    ref = again.merge_and_unload().state_dict()
    assert all(torch.allclose(ref[k], merged[k], atol=1e-6) for k in merged)


@pytest.mark.slow
def test_sft_with_lora_trains_only_the_adapter(tmp_path):
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import TrainConfig, train_sft

    base_sd = _base(tmp_path)
    Image.new("RGB", (50, 30), "red").save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": "red"}]
    rows, _ = sft_rows([{"id": str(i), "image": "a.png", "conversations": conv} for i in range(8)], tmp_path)
    tc = TrainConfig(learning_rate=5e-2, max_steps=3, save_steps=100, per_device_train_batch_size=4, lora=LORA)
    stats = train_sft(model_loader(str(tmp_path / "base")), load_processor(str(tmp_path / "base")), rows, tc,
                      tmp_path / "out", tmp_path / "ckpt", "h")
    assert stats["global_step"] == 3
    assert (tmp_path / "out/adapter/adapter_config.json").is_file()
    _check_merged(tmp_path, tmp_path / "out", base_sd)


@pytest.mark.slow
def test_dpo_with_lora_uses_no_second_model(tmp_path):
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.training.dpo import DPOTrainConfig, dpo_rows, train_dpo

    base_sd = _base(tmp_path)
    pairs = []
    for i in range(8):
        Image.new("RGB", (50, 30), (20 * i, 100, 50)).save(tmp_path / f"{i}.png")
        pairs.append({"id": f"q{i}-p0", "image": f"{i}.png", "prompt": "What color?",
                      "chosen": "### Answer: red", "rejected": "### Answer: blue"})
    rows, errors = dpo_rows(pairs, tmp_path)
    assert not errors

    def no_reference():
        raise AssertionError("with LoRA the reference is the adapter-off policy; no second model loads")

    cfg = DPOTrainConfig(learning_rate=5e-2, max_steps=3, per_device_train_batch_size=4, save_steps=100,
                         warmup_ratio=0.0, lora=LORA)
    stats = train_dpo(model_loader(str(tmp_path / "base")), no_reference, load_processor(str(tmp_path / "base")),
                      rows, cfg, tmp_path / "out", tmp_path / "ckpt", run_hash="h")
    assert stats["global_step"] == 3 and torch.isfinite(torch.tensor(stats["train_loss"]))
    _check_merged(tmp_path, tmp_path / "out", base_sd)
