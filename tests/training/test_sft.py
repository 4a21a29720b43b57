"""SFT wrapper: vision-tower learning rate and resume after SIGKILL (bookkeeping: test_checkpoints.py)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vlmcot.training.sft import TrainConfig

SETUP = textwrap.dedent(
    """
    import os, sys
    os.environ["OMP_NUM_THREADS"] = "1"
    from PIL import Image
    from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer
    from vlmcot.training.data import sft_rows
    from vlmcot.training.checkpoints import config_hash
    from vlmcot.training.sft import TrainConfig, train_sft

    root = sys.argv[1]
    Image.new("RGB", (32, 32), "red").save(f"{root}/a.png")
    conv = [{"from": "human", "value": "<image>\\nWhat color?"}, {"from": "gpt", "value": "red"}]
    rows, _ = sft_rows([{"id": str(i), "image": "a.png", "conversations": conv} for i in range(16)], root)
    tok = train_bpe_tokenizer(["What color? red", "USER:\\nASSISTANT:\\n"] * 4, vocab_size=280)
    cfg = TinyLlavaConfig(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2,
                          text_hidden=48, text_layers=1, text_heads=2, text_intermediate=96, max_position=64)
    processor, model = build_processor(tok, 32, 16), build_tiny_llava(cfg, tok)
    """
)


def test_bf16_on_cpu_means_autocast_on_the_cpu():
    import torch

    from vlmcot.training.sft import sft_config

    args = sft_config(TrainConfig(bf16=True), "/tmp/unused")
    assert args.bf16 and args.use_cpu == (not torch.cuda.is_available())
    assert not sft_config(TrainConfig(), "/tmp/unused").use_cpu


def _run_ok(script: str, tmp_path) -> None:
    """Run ``script`` (SETUP + a test body that prints OK) in a fresh interpreter: bf16/autocast state and
    monkeypatched trainer classes stay out of the test process."""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


@pytest.mark.slow
def test_bf16_training_on_cpu_runs_under_autocast(tmp_path):
    script = SETUP + textwrap.dedent(
        """
        import torch
        tc = TrainConfig(learning_rate=1e-3, max_steps=3, save_steps=100, per_device_train_batch_size=4, bf16=True)
        seen = []
        # a linear layer's output is bfloat16 only under autocast (the norms upcast, so not the last hidden state)
        model.model.language_model.layers[0].mlp.down_proj.register_forward_hook(
            lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), o.dtype)))
        stats = train_sft(model, processor, rows, tc, f"{root}/out", f"{root}/ckpt", "h")
        assert stats["global_step"] == 3 and seen and all(a and d == torch.bfloat16 for a, d in seen), seen
        assert all(p.dtype == torch.float32 for p in model.parameters())
        print("OK", stats["train_loss"])
        """
    )
    _run_ok(script, tmp_path)


@pytest.mark.slow
def test_vision_tower_gets_its_own_learning_rate(tmp_path):
    script = SETUP + textwrap.dedent(
        """
        tc = TrainConfig(learning_rate=1e-3, vision_learning_rate=1e-5, max_steps=1, save_steps=100,
                         per_device_train_batch_size=4, warmup_ratio=0.0, lr_scheduler_type="constant")
        from vlmcot.training import sft
        seen = {}
        orig = sft._make_trainer_class
        def spy():
            cls = orig()
            class Spy(cls):
                def create_optimizer(self, *a, **k):
                    opt = super().create_optimizer(*a, **k)
                    names = {id(p): n for n, p in self.model.named_parameters()}
                    for g in opt.param_groups:
                        for p in g["params"]:
                            seen[names[id(p)]] = g["lr"]
                    return opt
            return Spy
        sft._make_trainer_class = spy
        train_sft(model, processor, rows, tc, f"{root}/out", f"{root}/ckpt", "h")
        vis = {v for n, v in seen.items() if "vision_tower" in n}
        rest = {v for n, v in seen.items() if "vision_tower" not in n}
        assert vis == {1e-5} and rest == {1e-3}, (vis, rest)
        print("OK", len(seen))
        """
    )
    _run_ok(script, tmp_path)


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume(tmp_path):
    script = SETUP + textwrap.dedent(
        """
        tc = TrainConfig(learning_rate=1e-3, max_steps=int(sys.argv[2]), save_steps=3, save_total_limit=2,
                         per_device_train_batch_size=4, logging_steps=1)
        stats = train_sft(model, processor, rows, tc, f"{root}/out", f"{root}/ckpt", "same-run")
        print("STATS", stats["global_step"], stats["resumed_from_step"])
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), "120"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ckpt = tmp_path / "ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and not any(ckpt.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, "training ended before writing a checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out").exists()  # it never finished

    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), "120"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    step, resumed = next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("STATS"))
    assert int(step) == 120 and int(resumed) >= 3 and int(resumed) % 3 == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not ckpt.exists()  # cleaned once the final model is saved
