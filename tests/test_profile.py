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
    assert "llama3-llava-next-8b" in sft.base_model
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
    assert c["sample"].backend == "vllm"
    p = c["pairs"]
    assert (p.low, p.high, p.max_pairs_per_question, p.truncate_words) == (0.25, 0.85, 3, 90)
    assert c["distill"].backend == "openai" and c["distill"].openai.model == "gpt-4o-2024-05-13"
    assert c["mix"].format_per_dataset == 50
    assert c["prepare"].source == "hub"
    train = {s.name for s in c["prepare"].train_sources}
    assert train == {"aokvqa", "chartqa_train", "docvqa", "infovqa", "textvqa", "scienceqa", "ai2d",
                     "mathvision", "gllava"}
    assert c["base"].enabled is False


def test_profile_keeps_comments_and_touches_only_its_keys(paper):
    text = paper.read_text()
    assert "# which teacher writes the rationales" in text  # a params.yaml comment survived
    merged, base = yaml.safe_load(text), yaml.safe_load((ROOT / "params.yaml").read_text())
    assert merged["credit"] == base["credit"]  # not in the profile: unchanged
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
    assert any(l.startswith("sample@train:") and "backend vllm" in l for l in lines)
    assert any(l.startswith("evaluate@both:") and "backend vllm" in l for l in lines)
    assert any(l.startswith("base: skipped") for l in lines)


@pytest.mark.parametrize("stage,zero", [("zero3", 3), ("zero2", 2)])
def test_accelerate_and_deepspeed_files_agree(stage, zero):
    acc = yaml.safe_load((ROOT / f"configs/accelerate/{stage}.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED"
    ds_path = ROOT / acc["deepspeed_config"]["deepspeed_config_file"]
    ds = json.loads(ds_path.read_text())
    assert ds["zero_optimization"]["stage"] == zero
    assert ds["bf16"]["enabled"] in ("auto", True)
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # the Trainer fills it from params
