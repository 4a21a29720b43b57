"""DeepSpeed ZeRO-3 on the CPU, one process (gloo): the model is built partitioned (from_pretrained runs
after the training arguments registered the ZeRO-3 config), trains, and saving writes a full model.
Several ranks cannot run on a CPU (accelerate starts DeepSpeed only on an accelerator backend); that
saving runs on every rank, not only rank 0, is checked with the rank faked."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=sys.argv[2])
    root = sys.argv[1]
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.models.tiny import build_tiny_llava_next
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import TrainConfig, train_sft

    Image.new("RGB", (50, 30), "red").save(f"{root}/a.png")
    m, p = build_tiny_llava_next(texts=["What color? red"])
    m.save_pretrained(f"{root}/base"); p.save_pretrained(f"{root}/base")
    init = {k: v.clone() for k, v in m.state_dict().items()}
    n_full = sum(x.numel() for x in m.parameters())
    conv = [{"from": "human", "value": "<image>\\nWhat color?"}, {"from": "gpt", "value": "red"}]
    rows, _ = sft_rows([{"id": str(i), "image": "a.png", "conversations": conv} for i in range(8)], root)
    json.dump({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
               "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
               "train_batch_size": "auto", "gradient_clipping": "auto", "bf16": {"enabled": "auto"}},
              open(f"{root}/z3.json", "w"))
    seen = {}
    load = model_loader(f"{root}/base")
    # loaded before the training arguments exist (the old order): whole, not partitioned
    assert not hasattr(next(load().parameters()), "ds_numel")

    def loader():
        model = load()
        ps = list(model.parameters())
        seen.update(ds=all(hasattr(x, "ds_numel") for x in ps), local=sum(x.numel() for x in ps),
                    full=sum(x.ds_numel for x in ps))
        return model

    ds_arg = f"{root}/z3.json"
    if sys.argv[3] == "accelerate":
        # what `accelerate launch --config_file configs/accelerate/zero3.yaml` sets: the paper profile's path
        # (train.deepspeed: null; the DeepSpeed config comes from the accelerate config)
        os.environ.update(ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_CONFIG_FILE=ds_arg,
                          ACCELERATE_DEEPSPEED_ZERO3_INIT="true")
        ds_arg = None
    tc = TrainConfig(learning_rate=1e-2, max_steps=2, save_steps=100, per_device_train_batch_size=4,
                     deepspeed=ds_arg)
    stats = train_sft(loader, load_processor(f"{root}/base"), rows, tc, f"{root}/out", f"{root}/ckpt", "h")
    assert seen["ds"] and seen["local"] == 0 and seen["full"] == n_full, seen  # no rank held it whole
    assert stats["global_step"] == 2
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # load the saved files as a later stage would: plainly, whole
    back = AutoModelForImageTextToText.from_pretrained(f"{root}/out")
    sd = back.state_dict()
    assert sum(x.numel() for x in back.parameters()) == n_full
    assert all(torch.isfinite(v).all() for v in sd.values())
    changed = [k for k in init if k in sd and not torch.equal(init[k], sd[k])]
    assert changed, "saved weights equal the initial ones"
    print("OK", seen, len(changed))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (gpu extra)")
@pytest.mark.parametrize("via", ["train.deepspeed", "accelerate"])
def test_zero3_partitions_at_load_and_saves_a_full_model(tmp_path, via):
    import random

    port = str(random.randint(29000, 29900))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), port, via], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
def test_save_model_runs_on_every_rank(tmp_path, monkeypatch):
    """Under ZeRO-3 save_model gathers weights from all ranks: a rank that skipped it would leave rank 0
    waiting. Here the process is told it is not rank 0; it must still call save_model."""
    from PIL import Image
    from trl import SFTTrainer

    from vlmcot.models.tiny import build_tiny_llava_next
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import TrainConfig, train_sft

    Image.new("RGB", (50, 30), "red").save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": "red"}]
    rows, _ = sft_rows([{"id": str(i), "image": "a.png", "conversations": conv} for i in range(4)], tmp_path)
    model, processor = build_tiny_llava_next(texts=["What color? red"])
    calls, after_training = [], []
    train = SFTTrainer.train

    def train_then_be_rank_1(self, *a, **kw):
        out = train(self, *a, **kw)
        after_training.append(True)
        return out

    monkeypatch.setattr(SFTTrainer, "train", train_then_be_rank_1)
    monkeypatch.setattr(SFTTrainer, "is_world_process_zero", lambda self: not after_training)
    save = SFTTrainer.save_model

    def record_final_save(self, d=None, **kw):
        if after_training:
            calls.append(d)  # the final save (checkpoints during training go through unchanged)
        else:
            save(self, d, **kw)

    monkeypatch.setattr(SFTTrainer, "save_model", record_final_save)
    train_sft(model, processor, rows, TrainConfig(max_steps=1, save_steps=100, per_device_train_batch_size=4),
              tmp_path / "out", tmp_path / "ckpt", "h")
    assert calls == [str(tmp_path / "out")]
    assert not (tmp_path / "out" / "processor_config.json").exists()  # rank 0 alone writes the processor


DPO_SCRIPT = """import json, os, sys
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
root = sys.argv[1]
import torch
from PIL import Image
from vlmcot.models.loading import load_processor, model_loader
from vlmcot.models.tiny import build_tiny_llava_next
from vlmcot.training.dpo import DPOTrainConfig, dpo_rows, train_dpo
from vlmcot.training.lora import LoraSpec
m, p = build_tiny_llava_next(texts=["What color? red blue", "### Answer: 7"])
m.save_pretrained(f"{root}/base"); p.save_pretrained(f"{root}/base")
pairs = []
for i in range(8):
    Image.new("RGB", (50, 30), (20 * i, 100, 50)).save(f"{root}/{i}.png")
    pairs.append({"id": f"q{i}-p0", "image": f"{i}.png", "prompt": "What color?", "chosen": "### Answer: red", "rejected": "### Answer: blue"})
rows, _ = dpo_rows(pairs, root)
json.dump({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
           "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
           "train_batch_size": "auto", "gradient_clipping": "auto", "bf16": {"enabled": "auto"}}, open(f"{root}/z3.json", "w"))
lora = LoraSpec(enabled=True, r=4, alpha=8, dropout=0.0) if sys.argv[3] == "lora" else LoraSpec()
cfg = DPOTrainConfig(learning_rate=5e-2, max_steps=2, per_device_train_batch_size=4, save_steps=100, warmup_ratio=0.0,
                     deepspeed=f"{root}/z3.json", lora=lora)
b = f"{root}/base"
stats = train_dpo(model_loader(b), model_loader(b), load_processor(b), rows, cfg, f"{root}/out", f"{root}/ckpt", run_hash="h")
from transformers.integrations import unset_hf_deepspeed_config
unset_hf_deepspeed_config()
from transformers import AutoModelForImageTextToText
back = AutoModelForImageTextToText.from_pretrained(f"{root}/out").state_dict()
base = m.state_dict()
changed = [k for k in base if not torch.equal(base[k], back[k])]
assert stats["global_step"] == 2 and changed
# vision tower and projector stay frozen (DPO); with LoRA only the adapted linear layers move
assert not [k for k in changed if "vision_tower" in k or "multi_modal_projector" in k], changed
if sys.argv[3] == "lora":
    assert os.path.isfile(f"{root}/out/adapter/adapter_config.json")
    assert all(k.endswith("proj.weight") and "language_model" in k for k in changed), changed
print("OK", len(changed))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (gpu extra)")
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_zero3_dpo_full_and_lora(tmp_path, mode):
    """DPO under ZeRO-3 (policy and reference partitioned); with LoRA the merged model is rebuilt from the
    base files and the gathered adapter (partitioned weights cannot be merged in place)."""
    import random

    port = str(random.randint(29000, 29900))
    out = subprocess.run([sys.executable, "-c", DPO_SCRIPT, str(tmp_path), port, mode], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
