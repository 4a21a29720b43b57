"""bf16 weights and AdamW: a small update rounds away unless DeepSpeed keeps fp32 master weights, so the
training stages load float32 weights (under bf16 autocast) wherever DeepSpeed does not manage them."""

import subprocess
import sys
import textwrap

import pytest

from vlmcot.training.launch import LaunchConfig
from vlmcot.training.common import deepspeed_manages_weights, master_dtype
from vlmcot.training.dpo import DPOTrainConfig
from vlmcot.training.lora import LoraSpec
from vlmcot.training.sft import TrainConfig

from tests.training.test_sft import SETUP


def test_master_dtype_is_float32_only_without_deepspeed(tmp_path):
    zero3 = tmp_path / "zero3.yaml"
    zero3.write_text("distributed_type: DEEPSPEED\nnum_processes: 8\n")
    ddp = tmp_path / "ddp.yaml"
    ddp.write_text("distributed_type: MULTI_GPU\n")
    one, eight = LaunchConfig(), LaunchConfig(num_processes=8, accelerate_config=str(zero3))
    assert master_dtype("bfloat16", TrainConfig(), one) == "float32"  # the CPU smoke's sft, one GPU
    assert master_dtype("bfloat16", TrainConfig(), eight) == "bfloat16"  # the paper's ZeRO-3 launch
    # the accelerate config is read only by a launch: one process trains without ZeRO-3
    assert master_dtype("bfloat16", TrainConfig(), LaunchConfig(accelerate_config=str(zero3))) == "float32"
    assert master_dtype("bfloat16", TrainConfig(), LaunchConfig(num_processes=8, accelerate_config=str(ddp))) \
        == "float32"
    assert master_dtype("bfloat16", DPOTrainConfig(deepspeed="configs/deepspeed/zero2.json"), one) == "bfloat16"
    assert master_dtype("bfloat16", TrainConfig(lora=LoraSpec(enabled=True)), one) == "bfloat16"  # fp32 adapters
    assert master_dtype("float32", TrainConfig(), one) == "float32"
    assert not deepspeed_manages_weights(TrainConfig(), LaunchConfig(num_processes=8, accelerate_config="nope.yaml"))


@pytest.mark.slow
def test_tiny_lr_updates_survive_only_with_float32_master_weights(tmp_path):
    """AdamW at the paper's DPO lr (5e-7): bf16 parameters keep (almost) every value, float32 ones (what
    master_dtype loads, trained under bf16 autocast) change nearly all of them."""
    script = SETUP + textwrap.dedent(
        """
        import copy, torch
        tc = TrainConfig(learning_rate=5e-7, max_steps=3, save_steps=100, per_device_train_batch_size=4,
                         bf16=True, warmup_ratio=0.0, lr_scheduler_type="constant", weight_decay=0.0)
        name = "model.language_model.layers.0.mlp.down_proj.weight"
        for dtype in (torch.bfloat16, torch.float32):
            m = copy.deepcopy(model).to(dtype)
            before = m.state_dict()[name].clone()
            train_sft(m, processor, rows, tc, f"{root}/out-{dtype}", f"{root}/ckpt-{dtype}", "h")
            after = m.state_dict()[name]
            assert after.dtype == dtype
            print("CHANGED", str(dtype), (after != before).float().mean().item())
        """
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    changed = {ln.split()[1]: float(ln.split()[2]) for ln in out.stdout.splitlines() if ln.startswith("CHANGED")}
    print(changed)
    assert changed["torch.bfloat16"] < 0.05 and changed["torch.float32"] > 0.9, changed
