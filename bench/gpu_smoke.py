"""GPU smoke of the paper path on one GPU with tiny models built here (no downloads): bf16 SFT under
accelerate + DeepSpeed ZeRO-3, bf16 DPO under ZeRO-2, then sampling through the server backend from
`vllm serve` (the separate vLLM env), which the sample stage starts and stops itself (server.launch, as in
the paper profile): once from one server, once spread over two (the sharded path),
reporting whether the two outputs are byte-identical (VLLM_BATCH_INVARIANT=1 on the servers). Driven by bench/gpu_smoke.sh, which builds the environments.

    python bench/gpu_smoke.py WORKDIR --vllm-python .venv-vllm/bin/python    # on a GPU
    python bench/gpu_smoke.py WORKDIR --cpu-dry-run                           # every piece a CPU can run

The dry run trains in-process on the CPU (the same worker entry points, without accelerate/DeepSpeed)
and samples from tests/teacher/server.py standing in for `vllm serve`. Figures (steps/s, samples/s,
seconds per phase) are printed as JSON and written to $OUT/gpu_smoke.json when OUT is set. Any failure
raises (non-zero exit): a smoke that quietly skips a phase would prove nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_QUESTIONS = 16  # sampled questions (x NUM_SAMPLES each)
NUM_SAMPLES = 8
SFT_ROWS = 64
TEXTS = ["What is the sum of the bars?", "The bars are 3 and 4, so the sum is 7.", "### Answer: 7",
         "Which color is the square?", "The square is blue.", "### Answer: B", "Answer the question."]


def build_tiny_llava_next(out: Path) -> str:
    """The tiny LLaVA-NeXT (anyres tiles, Llama text model): the project's builder when it has one.
    Text heads of 64 dims: vLLM's attention kernels take head sizes 32..256, not the tests' 16."""
    try:
        from vlmcot.models.tiny import TinyLlavaNextConfig, build_tiny_llava_next as build
    except ImportError:
        build = None
    if build is not None:
        cfg = TinyLlavaNextConfig(text_hidden=128, text_heads=2, text_kv_heads=1, text_intermediate=256,
                                  vision_hidden=64, vision_heads=1, max_position=2048)
        model, processor = build(cfg, texts=TEXTS)
        kind = "vlmcot.models.tiny.build_tiny_llava_next"
    else:
        model, processor = _fallback_llava_next()
        kind = "bench fallback (vlmcot.models.tiny has no build_tiny_llava_next)"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return kind


def _fallback_llava_next():
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextProcessor)
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from vlmcot.models.processor import CHAT_TEMPLATE, CLIP_MEAN, CLIP_STD
    from vlmcot.models.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(TEXTS * 4 + ["USER:\nASSISTANT:\n"] * 4, vocab_size=400)
    grid = [[32, 64], [64, 32], [64, 64]]
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                              image_size=32, patch_size=16, projection_dim=64)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=tok.image_token_id,
                             image_grid_pinpoints=grid, vision_feature_select_strategy="default",
                             vision_feature_layer=-2)
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, k, getattr(tok, k))
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                    image_grid_pinpoints=grid, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=16,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=CHAT_TEMPLATE)
    return model, processor


def write_data(work: Path) -> None:
    """Images, an SFT mix (LLaVA conversations), DPO pairs and VQA records for sampling."""
    from PIL import Image

    from vlmcot.io import write_jsonl
    from vlmcot.records import VQARecord

    (work / "img").mkdir(parents=True, exist_ok=True)
    mix, pairs, records = [], [], []
    for i in range(SFT_ROWS):
        img = f"img/{i}.png"
        Image.new("RGB", (48 + 8 * (i % 3), 40), (7 * i % 255, 90, 200)).save(work / img)
        a, b = i % 5, i % 7
        q = f"What is the sum of the bars {a} and {b}?"
        cot = f"The bars are {a} and {b}, so the sum is {a + b}.\n\n### Answer: {a + b}"
        mix.append({"id": f"s{i:03d}", "image": img, "conversations": [
            {"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": cot}]})
        pairs.append({"id": f"p{i:03d}", "image": img, "prompt": q, "chosen": cot, "answer": str(a + b),
                      "rejected": f"The bars are {a} and {b}, so the sum is {a + b + 1}.\n\n### Answer: {a + b + 1}",
                      "dataset": "smoke"})
        if i < N_QUESTIONS:
            records.append(VQARecord(id=f"q{i:03d}", image=img, question=q, answer=str(a + b), dataset="smoke",
                                     qtype="numeric", split="train", metric="relaxed_accuracy"))
    write_jsonl(work / "mix/both.jsonl", mix, sort_key="id")
    write_jsonl(work / "pairs.jsonl", pairs, sort_key="id")
    write_jsonl(work / "records.jsonl", records, sort_key="id")


def _train_common(cpu: bool) -> dict:
    return {"bf16": True, "num_train_epochs": 1, "max_steps": -1, "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1, "logging_steps": 1, "save_steps": 1000, "max_length": 512,
            "gradient_checkpointing": not cpu}


def run_worker(module: str, spec: Path, accelerate_config: str, cpu: bool, worker_env: str) -> float:
    """One training stage's worker entry, under `accelerate launch` (GPU) or in-process (CPU dry run)."""
    from vlmcot.training.launch import LaunchConfig, accelerate_launch

    if cpu:
        cmd = [sys.executable, "-m", module, str(spec)]
    else:
        launch = LaunchConfig(num_processes=1, accelerate_config=str(ROOT / accelerate_config),
                              main_process_port=29517)
        cmd = accelerate_launch(launch, module, str(spec))
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, worker_env: "1", "MLFLOW_TRACKING_URI": f"sqlite:///{spec.parent / 'mlflow.db'}"}
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def _checked(stats: dict, what: str) -> dict:
    """Training that ran no step or diverged is a failure, not a figure."""
    import math

    loss = stats.get("train_loss")
    if not stats.get("global_step") or loss is None or not math.isfinite(loss):
        raise RuntimeError(f"{what}: no steps or a non-finite loss: {stats}")
    return stats


def sft(work: Path, cpu: bool) -> dict:
    from vlmcot.pipeline.sft import Config

    train = {**_train_common(cpu), "learning_rate": 1e-4, "vision_learning_rate": 1e-5, "freeze_vision_tower": False,
             "lr_scheduler_type": "cosine", "warmup_ratio": 0.03, "save_total_limit": 1}
    if cpu:
        train["deepspeed"] = None
    cfg = Config.model_validate({"base_model": str(work / "base"), "mix_dir": str(work / "mix"), "mixes": ["both"],
                                 "out_dir": str(work / "sft"), "checkpoint_dir": str(work / "ckpt/sft"),
                                 "metrics_dir": str(work / "metrics"), "root": str(work), "dtype": "bfloat16",
                                 "train": train})
    spec = work / "sft_launch.json"
    spec.write_text(json.dumps({"mix": "both", "config": cfg.model_dump(mode="json")}))
    wall = run_worker("vlmcot.pipeline.sft", spec, "configs/accelerate/zero3.yaml", cpu, "VLMCOT_SFT_WORKER")
    stats = _checked(json.loads((work / "sft/both/train_stats.json").read_text()), "sft")
    return {"sft_steps_per_s": stats.get("train_steps_per_second"),
            "sft_launch": "in-process (cpu dry run)" if cpu else "accelerate + DeepSpeed ZeRO-3, bf16", "sft_steps": stats.get("global_step"),
            "sft_loss": stats.get("train_loss"), "sft_wall_s": round(wall, 1)}


def dpo(work: Path, cpu: bool) -> dict:
    from vlmcot.pipeline.dpo import Config

    train = {**_train_common(cpu), "beta": 0.1, "learning_rate": 1e-4, "freeze_vision_tower": True,
             "freeze_projector": True, "deepspeed": None if cpu else str(ROOT / "configs/deepspeed/zero2.json")}
    cfg = Config.model_validate({"sft_model": str(work / "sft/both"), "pairs": str(work / "pairs.jsonl"),
                                 "out_dir": str(work / "dpo"), "checkpoint_dir": str(work / "ckpt/dpo"),
                                 "metrics": str(work / "metrics/dpo.json"), "root": str(work), "dtype": "bfloat16",
                                 "train": train})
    spec = work / "dpo_launch.json"
    spec.write_text(json.dumps(cfg.model_dump(mode="json")))
    wall = run_worker("vlmcot.pipeline.dpo", spec, "configs/accelerate/zero2.yaml", cpu, "VLMCOT_DPO_WORKER")
    stats = _checked(json.loads((work / "dpo/train_stats.json").read_text()), "dpo")
    return {"dpo_steps_per_s": stats.get("train_steps_per_second"),
            "dpo_launch": "in-process (cpu dry run)" if cpu else "accelerate + DeepSpeed ZeRO-2, bf16", "dpo_steps": stats.get("global_step"),
            "dpo_loss": stats.get("train_loss"), "dpo_wall_s": round(wall, 1)}


def server_launch(cpu: bool, vllm_python: str | None) -> str:
    """The `server.launch` command the sample stage starts (and stops) one server per url with, as the
    paper profile's sample/evaluate stages start `vllm serve`. Both servers share the one GPU (no
    CUDA_VISIBLE_DEVICES={index}: a 1-GPU machine), each taking a quarter of its memory."""
    import shlex

    if cpu:  # the test suite's chat-completions server, answering as `vllm serve` would
        return (f"PYTHONPATH={shlex.quote(str(ROOT))} {shlex.quote(sys.executable)} "
                f"{shlex.quote(str(ROOT / 'tests/teacher/server.py'))} --port {{port}} --student {{model}}")
    vllm = shlex.quote(str(Path(vllm_python).parent / "vllm"))
    # batch-invariant kernels (compute capability >= 9): the same draws whichever server and batch;
    # --enforce-eager: no CUDA-graph capture, so a tiny model starts in seconds
    return ("VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 VLLM_BATCH_INVARIANT=1 "
            f"{vllm} serve {{model}} --port {{port}} --dtype bfloat16 --max-model-len 2048 "
            "--gpu-memory-utilization 0.25 --limit-mm-per-prompt '{\"image\": 1}' --seed 0 --enforce-eager")


def _sample_run(work: Path, name: str, model: str, urls: list[str], launch: str, cpu: bool) -> dict:
    import yaml

    from vlmcot.io import read_json
    from vlmcot.stage import main

    server = {"urls": urls, "max_concurrency": 16, "launch": launch, "launch_timeout_s": 60 if cpu else 300}
    params = {"sample": {"model": model, "out_dir": str(work / name), "metrics_dir": str(work / name),
                         "root": str(work), "items": {"smoke": {"records": str(work / "records.jsonl")}},
                         "num_samples": NUM_SAMPLES, "max_new_tokens": 64, "chunk_size": N_QUESTIONS,
                         "backend": "server", "server": server}}
    p = work / f"params_{name}.yaml"
    p.write_text(yaml.safe_dump(params))
    t0 = time.perf_counter()
    if main("sample", str(p), item="smoke") != 0:
        raise RuntimeError(f"the sample stage failed against {urls} (see above: the server's log on a launch failure)")
    m = read_json(work / name / "sample_smoke.json")
    if m["all.candidates"] != N_QUESTIONS * NUM_SAMPLES:
        raise RuntimeError(f"expected {N_QUESTIONS * NUM_SAMPLES} candidates, got {m['all.candidates']}")
    m["wall_s"] = time.perf_counter() - t0  # the stage: servers started, sampled, stopped
    return m


def sample(work: Path, cpu: bool, vllm_python: str | None) -> dict:
    """The SFT model sampled by the sample stage through servers it starts itself (server.launch): from
    one server, then from two (the sharded path); the two outputs compared."""
    model, ports = str(work / "sft/both"), [18471, 18472]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    launch = server_launch(cpu, vllm_python)
    one = _sample_run(work, "sample_1server", model, urls[:1], launch, cpu)
    two = _sample_run(work, "sample_2servers", model, urls, launch, cpu)
    same = ((work / "sample_1server/smoke/candidates.jsonl").read_bytes()
            == (work / "sample_2servers/smoke/candidates.jsonl").read_bytes())
    return {"sample_samples_per_s": one["all.samples_per_s"], "sample_2servers_samples_per_s": two["all.samples_per_s"],
            "sample_candidates": one["all.candidates"], "sample_2servers_identical": same,
            "sample_1server_stage_wall_s": round(one["wall_s"], 1),
            "sample_2servers_stage_wall_s": round(two["wall_s"], 1)}


def main_cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="scratch folder (models, data, outputs)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="CPU: no accelerate/DeepSpeed/vLLM (see module doc)")
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm/bin/python"), help="python of the vLLM env")
    args = ap.parse_args(argv)
    cpu = args.cpu_dry_run
    if not cpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible to torch: run on a GPU, or pass --cpu-dry-run")
        if not Path(args.vllm_python).exists():
            raise SystemExit(f"{args.vllm_python} missing: `make vllm-env` first")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fig: dict = {"mode": "cpu-dry-run" if cpu else "gpu", "builder": build_tiny_llava_next(work / "base")}
    write_data(work)
    fig.update(sft(work, cpu))
    fig.update(dpo(work, cpu))
    fig.update(sample(work, cpu, None if cpu else args.vllm_python))
    fig["total_s"] = round(time.perf_counter() - t0, 1)
    if not cpu:
        import torch

        fig["device"] = torch.cuda.get_device_name(0)
    text = json.dumps(fig, indent=2, sort_keys=True)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "gpu_smoke.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
