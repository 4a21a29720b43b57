"""The paper-scale profile: it overlays params.yaml, every section validates, and it carries the
paper's hyperparameters (FACTS.md); the plan shows the multi-GPU and vLLM commands."""

import json
from pathlib import Path

import pytest
import yaml

from vlmcot.config import ConfigError
from vlmcot.profile import apply_profile, plan, validate_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "params.yaml"
    out.write_text(apply_profile(ROOT / "params.yaml", ROOT / "configs/paper.yaml"))
    return out


def test_embedded_params_validate():
    assert set(validate_params(ROOT / "params.yaml")) >= {"prepare", "sft", "dpo", "rerank", "report"}


def test_paper_profile_carries_the_papers_hyperparameters(paper):
    c = validate_params(paper)
    sft = c["sft"]
    assert sft.base_model == "models/llava-next-8b"  # vlmcot convert-llava of Open-LLaVA-NeXT (docs/paper.md)
    assert sft.train.learning_rate == 5e-6 and sft.train.vision_learning_rate == 5e-7
    assert sft.train.per_device_train_batch_size * sft.train.gradient_accumulation_steps * sft.launch.num_processes == 32
    assert sft.train.bf16 and sft.train.max_length == 6144 and sft.train.num_train_epochs == 1
    assert sft.train.lr_scheduler_type == "cosine" and sft.train.warmup_ratio == 0.03
    assert sft.train.weight_decay == 0.0
    dpo = c["dpo"]
    assert dpo.train.learning_rate == 5e-7 and dpo.train.beta == 0.1 and dpo.train.loss_type == ["sigmoid"]
    assert dpo.train.per_device_train_batch_size * dpo.train.gradient_accumulation_steps * dpo.launch.num_processes == 32
    assert dpo.train.freeze_vision_tower and dpo.train.freeze_projector
    assert c["sample"].num_samples == 32 and c["sample"].temperature_short == 1.0 and c["sample"].temperature_mc == 1.2
    assert c["sample"].backend == "server" and len(c["sample"].server.urls) == 8
    p = c["pairs"]
    assert (p.low, p.high, p.max_pairs_per_question, p.truncate_words) == (0.25, 0.85, 3, 90)
    assert c["control"].rft_truncate_unit == p.truncate_unit == "space"  # RFT text cut like DPO's
    assert c["distill"].backend == "openai" and c["distill"].openai.model == "gpt-4o-2024-05-13"
    assert c["mix"].format_per_dataset == 50
    assert c["prepare"].source == "hub"
    train = {s.name for s in c["prepare"].train_sources}
    assert train == {"aokvqa", "chartqa_train", "docvqa", "infovqa", "textvqa", "scienceqa", "ai2d_official",
                     "mathvision", "gllava"}
    info = next(s for s in c["prepare"].train_sources if s.name == "infovqa")
    assert info.data_files == {"train": "InfographicVQA/train-*.parquet"} and len(info.revision) == 40
    assert c["prepare"].offline is False and validate_params(ROOT / "params.yaml")["prepare"].offline is True
    assert c["evaluate"].scoring == "vlmevalkit" and c["evaluate"].judge is None
    assert c["base"].enabled is False


def test_profile_keeps_comments_and_touches_only_its_keys(paper):
    text = paper.read_text()
    assert "# which teacher writes the rationales" in text  # a params.yaml comment survived
    merged, base = yaml.safe_load(text), yaml.safe_load((ROOT / "params.yaml").read_text())
    assert merged["table"] == base["table"]  # not in the profile: unchanged
    assert merged["distill"]["openai"]["max_retries"] == base["distill"]["openai"]["max_retries"]


def test_unknown_profile_section_is_an_error(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("sfft: {train: {learning_rate: 1}}\n")
    with pytest.raises(ConfigError, match="sections not in .*: sfft"):
        apply_profile(ROOT / "params.yaml", prof)


def test_plan_shows_accelerate_deepspeed_and_vllm(paper):
    lines = plan(paper)
    sft = next(l for l in lines if l.startswith("sft@both:"))
    assert "accelerate launch --config_file configs/accelerate/zero3.yaml --num_processes 8" in sft
    dpo = next(l for l in lines if l.startswith("dpo:"))
    assert "configs/accelerate/zero2.yaml --num_processes 8" in dpo
    assert any(l.startswith("sample@train:") and "backend server (8 vLLM server(s)" in l for l in lines)
    assert any(l.startswith("evaluate@both:") and "backend server" in l for l in lines)
    assert any(l.startswith("base: skipped") for l in lines)


def test_plan_says_use_the_server_backend_when_vllm_does_not_import(paper, tmp_path, monkeypatch):
    import importlib.util

    prof = tmp_path / "inproc.yaml"
    prof.write_text("sample: {backend: vllm}\n")
    inproc = tmp_path / "params.yaml"
    inproc.write_text(apply_profile(paper, prof))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a))
    line = next(l for l in plan(inproc) if l.startswith("sample@train:"))
    assert "vllm is not importable" in line and "sample.backend: server" in line and "make vllm-env" in line
    # a DPO round samples and then trains in one process: an in-process engine would keep the GPUs
    assert any("dpo_round r2 WILL FAIL" in l and "sample.backend vllm" in l for l in plan(inproc))
    assert not any("not importable" in l for l in plan(paper))  # the server backend needs no vllm here


def test_plan_says_what_to_download_and_convert(paper):
    lines = plan(paper)
    assert "  ! prepare: hub access on (prepare.offline: false)" in lines
    ai2d = next(l for l in lines if "ai2d_official" in l)
    assert "MISSING" in ai2d and "data/raw/ai2d" in ai2d and "ai2d-all.zip" in ai2d and "ai2d_test_ids.csv" in ai2d
    assert any("MISSING sft.base_model models/llava-next-8b" in l and "convert-llava" in l for l in lines)


@pytest.mark.parametrize("stage,zero", [("zero3", 3), ("zero2", 2)])
def test_accelerate_and_deepspeed_files_agree(stage, zero):
    acc = yaml.safe_load((ROOT / f"configs/accelerate/{stage}.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED"
    ds_path = ROOT / acc["deepspeed_config"]["deepspeed_config_file"]
    ds = json.loads(ds_path.read_text())
    assert ds["zero_optimization"]["stage"] == zero
    assert ds["bf16"]["enabled"] in ("auto", True)
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # the Trainer fills it from params


def test_paper_profile_controls_run_at_sft_scale(paper):
    c = validate_params(paper)
    ctl, sft = c["control"], c["sft"]
    assert ctl.dtype == "bfloat16" and ctl.train.bf16 and ctl.train.gradient_checkpointing
    assert (ctl.train.learning_rate, ctl.train.vision_learning_rate) == (sft.train.learning_rate,
                                                                         sft.train.vision_learning_rate)
    assert ctl.train.per_device_train_batch_size * ctl.launch.num_processes == 32
    assert ctl.launch.accelerate_config == "configs/accelerate/zero3.yaml"
    lines = plan(paper)
    assert any(l.startswith("control@rft:") and "zero3.yaml --num_processes 8 -m vlmcot.pipeline.control" in l
               for l in lines)
    for stage in ("credit", "rerank", "sample", "evaluate"):
        assert c[stage].dtype == "bfloat16", stage
    assert c["pairs"].truncate_unit == "space"


def test_plan_refuses_qlora_without_cuda(paper, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    y = yaml.safe_load(paper.read_text())
    y["sft"]["train"]["lora"] = {"enabled": True, "quantize": "4bit"}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(y))
    with pytest.raises(ConfigError, match=r"sft.train.lora.quantize: 4bit \(QLoRA\) needs a CUDA GPU"):
        plan(p)


def test_cpu_smoke_overlay_changes_only_sizes_device_and_locations(paper, tmp_path):
    """configs/paper-cpu-smoke.yaml (tests/e2e/test_paper_profile.py) must run the paper's code paths:
    same stages, backends, scoring, prompts, loss and learning rates; only sizes, device, URLs, data
    paths, the one-process launch and the vLLM stand-in (which a CPU cannot avoid) differ."""
    smoke = tmp_path / "params.yaml"
    smoke.write_text(apply_profile(paper, ROOT / "configs/paper-cpu-smoke.yaml"))
    p, s = validate_params(paper), validate_params(smoke)
    for stage, keys in {"base": ["enabled"], "distill": ["backend"], "sft": ["base_model", "mixes", "dtype"],
                        "evaluate": ["backend", "scoring", "style", "modes", "dtype"],
                        "sample": ["backend", "temperature_short", "temperature_mc"],
                        "pairs": ["low", "high", "truncate_unit"], "dpo": ["sft_model", "dtype"],
                        "mix": ["include_general", "general_source", "general_image_root"], "rerank": ["dtype"], "credit": ["dtype"]}.items():
        for k in keys:
            assert getattr(s[stage], k) == getattr(p[stage], k), f"{stage}.{k}"
    for stage in ("sft", "dpo", "control"):
        pt, st = p[stage].train, s[stage].train
        assert (st.learning_rate, st.bf16, st.lr_scheduler_type) == (pt.learning_rate, pt.bf16, pt.lr_scheduler_type)
        assert s[stage].launch.accelerate_config == p[stage].launch.accelerate_config
        assert s[stage].launch.num_processes == 1
    assert (s["dpo"].train.beta, s["dpo"].train.loss_type) == (p["dpo"].train.beta, p["dpo"].train.loss_type)
    assert s["dpo"].train.deepspeed == p["dpo"].train.deepspeed == "configs/deepspeed/zero2.json"
    for stage in ("sample", "evaluate"):
        assert p[stage].server.launch.startswith("CUDA_VISIBLE_DEVICES={index} .venv-vllm/bin/vllm serve {model}")
        assert s[stage].server.launch == "python tests/teacher/server.py --student {model} --port {port}"
    assert {x.name for x in s["prepare"].train_sources} <= {x.name for x in p["prepare"].train_sources}
    assert all(x.local_path and x.local_path.startswith("data/hub/") for x in s["prepare"].train_sources)
    assert s["distill"].openai.model == p["distill"].openai.model


def test_plan_says_where_bf16_weights_load_as_float32(paper, tmp_path):
    """Without DeepSpeed's fp32 master weights (one process: the CPU smoke's sft, controls and grpo) a bf16 full
    fine-tune loads float32 weights; the paper's ZeRO launches keep bf16, and the plan says which."""
    assert not [ln for ln in plan(paper) if "load as float32" in ln]
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(apply_profile(paper, ROOT / "configs/paper-cpu-smoke.yaml"))
    notes = [ln.split(":")[0].strip(" !") for ln in plan(smoke) if "load as float32" in ln]
    assert notes == ["sft", "control", "grpo"]  # dpo keeps train.deepspeed (ZeRO-2) in its one-rank world


def test_plan_warns_when_qlora_adapters_cannot_take_the_learning_rate(paper, tmp_path, monkeypatch):
    """TRL trains a quantized model's adapters in bf16: the paper's DPO lr (5e-7) would round away."""
    monkeypatch.setattr("vlmcot.training.lora.check_lora", lambda spec, where: None)  # CUDA checks: not here
    y = yaml.safe_load(paper.read_text())
    y["dpo"]["train"]["lora"] = {"enabled": True, "quantize": "4bit"}
    y["sft"]["train"]["lora"] = {"enabled": True, "quantize": "4bit"}
    y["sft"]["train"]["learning_rate"] = 1e-4
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(y))
    notes = [ln for ln in plan(p) if "QLoRA trains its adapters in bfloat16" in ln]
    assert len(notes) == 1 and "dpo.train.learning_rate >= 1e-05" in notes[0]


def test_plan_shows_how_a_dpo_round_samples_and_trains(paper):
    """A DPO round runs the sample and dpo sections' own backends: vLLM servers, then 8-GPU ZeRO-2 DPO from the
    round-1 model (read from the profile's file, not params.yaml: plan points the stage at it)."""
    lines = plan(paper)
    note = next(ln for ln in lines if "dpo_round r2:" in ln)
    assert "32 samples per question from models/dpo (8 vLLM server(s))" in note and "[0.25, 0.85]" in note
    assert "accelerate launch --config_file configs/accelerate/zero2.yaml --num_processes 8" in note
    assert "-m vlmcot.pipeline.dpo models/dpo_rounds/r2/launch_config.json" in note
