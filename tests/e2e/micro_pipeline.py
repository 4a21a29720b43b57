"""A micro base -> sft -> dpo -> control pipeline on real world images, and a driver that runs its
stages in a subprocess, for the exact-resume and reproducibility tests.

As a script it runs stages through the real stage entry (vlmcot.stage.main) in ``workdir``:

    python micro_pipeline.py WORKDIR [--pause STEP] STAGE[@ITEM] ...

with two test hooks on the Trainer's callback handler (they observe, never change training): every
logged loss is printed as ``LOSS <stage> <step> <loss>``, and ``--pause STEP`` stops the *last* stage
listed at the end of optimizer step STEP (prints ``PAUSED``, then sleeps) so a test can SIGKILL it
between two checkpoints. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve()
STAGES = ("base", "sft@both", "dpo", "control@cont_sft")
OUTPUTS = {  # the weights each stage writes
    "base": "models/base/model.safetensors",
    "sft@both": "models/sft/both/model.safetensors",
    "dpo": "models/dpo/model.safetensors",
    "control@cont_sft": "models/control/cont_sft/model.safetensors",
    "grpo": "models/grpo/model.safetensors",
}
CHECKPOINTS = {
    "base": "models/checkpoints/base",
    "sft@both": "models/checkpoints/sft/both",
    "dpo": "models/checkpoints/dpo",
    "control@cont_sft": "models/checkpoints/control/cont_sft",
    "grpo": "models/checkpoints/grpo",
}


def make_workdir(root: Path, threads: int = 2, wide: bool = False) -> None:
    """World records + images (4 per family), a 'both' mix, DPO pairs and params.yaml in ``root``.

    Step counts put checkpoints both at an epoch boundary (base: 4 steps an epoch, checkpoint 4) and
    inside an epoch (the others: checkpoint 3), so both ways the Trainer resumes its data are covered.
    ``wide``: activations above ATen's parallel grain size (32768 elements), so with ``threads`` > 1
    the elementwise and reduction kernels really split work between threads.
    """
    from vlmcot.io import write_jsonl
    from vlmcot.prompts import build_prompt, format_response
    from vlmcot.world import WorldConfig, generate

    root.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(root)  # records name their images relative to the workdir
    try:
        cfg = WorldConfig()
        for k in ("chart", "doc", "geo", "sci"):
            getattr(cfg, k).n_train, getattr(cfg, k).n_eval = 4, 1
        records = generate(cfg, "data/prepared", progress=False)
    finally:
        os.chdir(cwd)
    train = sorted((r for r in records if r.split == "train"), key=lambda r: r.id)
    for split in ("train", "eval"):
        write_jsonl(root / f"data/prepared/{split}.jsonl", [r for r in records if r.split == split], sort_key="id")
    mix, pairs = [], []
    for r in train:
        for mode, rationale in (("direct", None), ("cot", f"I read the image. It shows {r.answer}.")):
            mix.append({"id": f"{r.id}-{mode}", "image": r.image, "dataset": r.dataset, "kind": mode,
                        "conversations": [{"from": "human", "value": "<image>\n" + build_prompt(r, mode)},
                                          {"from": "gpt", "value": format_response(rationale, r.answer)}]})
        pairs.append({"id": f"{r.id}-p0", "image": r.image, "prompt": build_prompt(r, "cot"),
                      "chosen": format_response(f"It shows {r.answer}.", r.answer),
                      "rejected": format_response("It shows nothing.", "none")})
    write_jsonl(root / "data/mix/both.jsonl", mix, sort_key="id")
    write_jsonl(root / "data/pairs/pairs.jsonl", pairs, sort_key="id")

    w = 2 if wide else 1
    model = dict(image_size=64, patch_size=8, vision_hidden=32 * w, vision_layers=1, vision_heads=2,
                 text_hidden=48 * w, text_layers=w, text_heads=2, text_intermediate=96 * w, max_position=384,
                 vocab_size=400)
    # bf16 as in params.yaml (autocast on the CPU): the kernels production trains with
    common = dict(learning_rate=3e-3, per_device_train_batch_size=4 * w, logging_steps=1, save_total_limit=2,
                  max_length=384, bf16=True)
    steps = 5 if wide else 10  # wide (the reproducibility test) only needs both phases to run a few steps
    params = {
        "base": {"model": model, "torch_threads": threads, "eval_images": 0,
                 "vision_pretrain": {"steps": steps - 4, "batch_size": 8, "eval_images": 0, "logging_steps": 1,
                                     "bf16": True},
                 "train": {**common, "max_steps": steps, "save_steps": 4, "freeze_vision_tower": True}},
        "sft": {"torch_threads": threads, "mixes": ["both"],
                "train": {**common, "max_steps": steps - 2, "save_steps": 3, "vision_learning_rate": 1e-4}},
        "dpo": {"torch_threads": threads,
                "train": {**common, "learning_rate": 1e-3, "max_steps": 8, "save_steps": 3,
                          "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}},
        "control": {"torch_threads": threads, "steps_from": None,
                    "train": {**common, "learning_rate": 1e-3, "max_steps": 8, "save_steps": 3}},
        # grpo (not in STAGES: its test gives it an SFT model of its own): the 16 train questions, 2 a step
        "sample": {"items": {"train": {"records": "data/prepared/train.jsonl"}}},
        "grpo": {"torch_threads": threads,
                 "train": {"learning_rate": 3e-3, "per_device_train_batch_size": 8, "num_generations": 4,
                           "max_completion_length": 12, "logging_steps": 1, "save_total_limit": 2, "bf16": True,
                           "max_steps": 6, "save_steps": 3, "band_low": 0.0, "band_high": 1.0}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _env(root: Path) -> dict:
    src = str(HERE.parents[2] / "src")
    # the test session's MLflow store when there is one (a new sqlite store costs seconds of migrations)
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root}/mlflow.db"
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": tracking, "MLFLOW_EXPERIMENT_NAME": "micro-pipeline",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def losses(stdout: str) -> dict[str, dict[int, float]]:
    """``{stage: {step: loss}}`` from the driver's LOSS lines."""
    out: dict[str, dict[int, float]] = {}
    for line in stdout.splitlines():
        if line.startswith("LOSS "):
            _, stage, step, loss = line.split()
            out.setdefault(stage, {})[int(step)] = float(loss)
    return out


def run(root: Path, *stages: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``stages`` to completion in a driver subprocess; fail with its stderr tail."""
    out = subprocess.run([sys.executable, str(HERE), str(root), *stages], env=_env(root), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def run_and_kill(root: Path, pause: int, *stages: str, timeout: float = 900) -> str:
    """Run ``stages``; SIGKILL the process once the last one paused after step ``pause``. Its stdout."""
    proc = subprocess.Popen([sys.executable, str(HERE), str(root), "--pause", str(pause), *stages], env=_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:  # blocks line by line; the driver flushes each
            lines.append(line)
            if line.startswith("PAUSED") or time.time() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err[-4000:]
    assert any(line.startswith("PAUSED") for line in lines), err[-4000:]
    return "".join(lines)


def _driver(argv: list[str]) -> int:
    root, rest = Path(argv[0]), argv[1:]
    pause = None
    if rest[:1] == ["--pause"]:
        pause, rest = int(rest[1]), rest[2:]
    os.chdir(root)
    from transformers.trainer_callback import CallbackHandler

    from vlmcot.stage import main

    current = {"stage": None, "pause": None}
    orig_log, orig_step = CallbackHandler.on_log, CallbackHandler.on_step_end

    def on_log(self, args, state, control, logs):
        if "loss" in logs:
            print(f"LOSS {current['stage']} {state.global_step} {logs['loss']!r}", flush=True)
        return orig_log(self, args, state, control, logs)

    def on_step_end(self, args, state, control):
        control = orig_step(self, args, state, control)
        if current["pause"] is not None and state.global_step == current["pause"]:
            print(f"PAUSED {current['stage']} {state.global_step}", flush=True)
            time.sleep(3600)
        return control

    CallbackHandler.on_log, CallbackHandler.on_step_end = on_log, on_step_end
    for i, spec in enumerate(rest):
        name, _, item = spec.partition("@")
        current.update(stage=spec, pause=pause if i == len(rest) - 1 else None)
        if main(name, "params.yaml", item=item or None) != 0:
            return 1
        import torch

        print(f"THREADS {spec} {torch.get_num_threads()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_driver(sys.argv[1:]))
