"""Stage `grpo`: it trains on exactly the questions the sample stage's item selects, fails clearly on a
missing item or records, re-launches under accelerate with the params path for its workers, shows its
settings in `vlmcot plan` (paper profile: vLLM server, ZeRO-3), and end to end on a tiny model through the
real stage entry writes the model, its metrics and the DVC plots CSV of reward / KL / length / band."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from vlmcot.config import ConfigError
from vlmcot.errors import StageError
from vlmcot.pipeline import grpo
from vlmcot.pipeline.grpo import Config
from vlmcot.training.grpo import GRPOTrainConfig

ROOT = Path(__file__).resolve().parents[2]


def _helpers():
    spec = importlib.util.spec_from_file_location("micro_sft", ROOT / "tests/e2e/test_micro_sft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _params(root: Path, grpo_section: dict | None = None, item: dict | None = None) -> str:
    p = root / "params.yaml"
    item = item or {"records": "data/prepared/train.jsonl", "datasets": ["synth_chart"], "offset": 2,
                    "max_per_dataset": 5}
    p.write_text(yaml.safe_dump({"sample": {"items": {"train": item}}, "grpo": grpo_section or {}}))
    return str(p)


def test_questions_are_the_sample_items(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _helpers().make_world(tmp_path, n_train=8, n_eval=1)
    params = _params(tmp_path)
    qs = grpo.questions(Config(), params)
    # synth_chart only, sorted by id, the first 2 skipped, then 5: what `sample --item train` samples
    from vlmcot.pipeline.sample import ItemConfig, select_questions

    want = select_questions(ItemConfig(records="data/prepared/train.jsonl", datasets=["synth_chart"], offset=2,
                                       max_per_dataset=5), 0.01)
    assert [r.id for r in qs] == [r.id for r in want] and len(qs) == 5
    assert {r.dataset for r in qs} == {"synth_chart"}
    with pytest.raises(ConfigError, match="no item 'tune'"):
        grpo.questions(Config(questions="tune"), params)
    with pytest.raises(StageError, match="run the prepare stage"):
        grpo.questions(Config(), _params(tmp_path, item={"records": "nowhere.jsonl"}))


def test_multi_process_grpo_relaunches_with_the_params_path(tmp_path, monkeypatch):
    import subprocess

    from tests.conftest import FakeTracker
    from vlmcot.training.launch import LaunchConfig

    cfg = Config(out_dir=str(tmp_path / "models"), metrics=str(tmp_path / "m.json"),
                 launch=LaunchConfig(num_processes=6, accelerate_config="configs/accelerate/zero3.yaml"))
    launched = []

    def fake(cmd, env, check=False):
        launched.append(cmd)
        assert env[grpo.WORKER_ENV] == "1"
        (tmp_path / "models" / "train_stats.json").write_text(json.dumps({"global_step": 3, "last_reward": 0.5}))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(grpo.subprocess, "run", fake)
    tracker = FakeTracker()
    tracker.run_id = "parent"
    grpo.run(cfg, tracker)
    assert launched and "vlmcot.pipeline.grpo" in launched[0] and "--num_processes" in launched[0]
    spec = json.loads((tmp_path / "models" / "launch_config.json").read_text())
    assert Path(spec["params_path"]).is_absolute() and spec["config"]["launch"]["num_processes"] == 6
    assert json.loads((tmp_path / "m.json").read_text()) == {"global_step": 3.0, "last_reward": 0.5}


def test_plan_shows_the_paper_profile_grpo(tmp_path):
    from vlmcot.profile import apply_profile, plan

    merged = tmp_path / "params.yaml"
    merged.write_text(apply_profile(ROOT / "params.yaml", ROOT / "configs/paper.yaml"))
    from vlmcot.pipeline import load_config

    cfg = load_config(grpo, str(merged))
    t = cfg.train
    assert (t.use_vllm, t.vllm_mode, t.deepspeed, t.band_low, t.band_high) == (
        True, "server", "configs/deepspeed/zero3.json", 0.25, 0.85)
    assert cfg.launch.num_processes == 6 and cfg.dtype == "bfloat16" and t.learning_rate == 1e-6
    # TRL's generation batch (responses per step) holds whole groups
    assert (t.per_device_train_batch_size * cfg.launch.num_processes * t.gradient_accumulation_steps) % \
        t.num_generations == 0
    lines = [x for x in plan(merged) if "grpo" in x]
    assert any("accelerate launch" in x and "zero3" in x for x in lines), lines
    assert any("vLLM server" in x and "band [0.25, 0.85]" in x for x in lines), lines


def _tiny_sft(root: Path) -> None:
    """An untrained tiny LLaVA + processor saved where the stage reads the SFT model."""
    from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["What is the sum of the bars? Which bar is taller?", "### Answer: 7",
                               "Generate a reason first and then output a short answer.", "USER:\nASSISTANT:\n"] * 4,
                              vocab_size=300)
    model = build_tiny_llava(TinyLlavaConfig(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1,
                                             vision_heads=2, text_hidden=48, text_layers=1, text_heads=2,
                                             text_intermediate=96, max_position=256, vocab_size=300, seed=1), tok)
    model.save_pretrained(root / "models/sft/both")
    build_processor(tok, 32, 16).save_pretrained(root / "models/sft/both")


@pytest.mark.slow
def test_micro_grpo_stage_end_to_end(tmp_path, monkeypatch):
    from vlmcot.io import read_json
    from vlmcot.stage import main

    monkeypatch.chdir(tmp_path)
    _helpers().make_world(tmp_path, n_train=6, n_eval=1)
    _tiny_sft(tmp_path)
    train = GRPOTrainConfig(max_steps=4, num_generations=4, per_device_train_batch_size=8, max_completion_length=12,
                            learning_rate=1e-3, logging_steps=1, save_steps=100, band_low=0.0, band_high=1.0)
    params = _params(tmp_path, {"format_weight": 0.2, "train": train.model_dump(mode="json")},
                     item={"records": "data/prepared/train.jsonl"})
    assert main("grpo", params) == 0
    m = read_json("metrics/grpo.json")
    assert m["global_step"] == 4 and m["questions"] == 12 and m["bad_questions"] == 0
    for key in ("last_reward", "last_accuracy", "last_reward_all", "last_kl", "last_completions_mean_length",
                "first_reward_all", "train_loss"):
        assert key in m, sorted(m)
    assert 0 <= m["last_accuracy"] <= 1 and m["last_completions_mean_length"] <= 12
    assert Path("models/grpo/model.safetensors").is_file() and Path("models/grpo/vlmcot_config.json").is_file()
    assert not Path("models/checkpoints/grpo").exists()
    with open("metrics/plots/train/grpo.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "reward", "reward_all", "accuracy", "kl", "completions_mean_length"} <= set(rows[0])
    assert all(r["reward_all"] != "" and r["completions_mean_length"] != "" for r in rows)
