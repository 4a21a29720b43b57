"""The sft stage's configuration: paper profile validates, --dry-run prints the accelerate command."""

import json
import shlex

import pytest
import yaml

from vlmcot.config import ConfigError, load_section
from vlmcot.pipeline import base, evaluate, sft
from vlmcot.stage import main

PAPER = "configs/paper.yaml"


def test_paper_profile_validates_with_the_papers_numbers():
    cfg = load_section(sft.Config, "sft", PAPER)
    t = cfg.train
    assert (t.learning_rate, t.vision_learning_rate) == (5e-6, 5e-7)
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * cfg.launch.num_processes == 32
    assert (t.num_train_epochs, t.lr_scheduler_type, t.warmup_ratio, t.weight_decay) == (1, "cosine", 0.03, 0.0)
    assert t.bf16 and t.max_length == 6144 and cfg.dtype == "bfloat16"
    assert "llava-next-8b" in cfg.base_model
    assert load_section(base.Config, "base", PAPER).enabled is False
    assert load_section(evaluate.Config, "evaluate", PAPER).modes == ["direct", "cot"]
    ds = json.loads(open("configs/deepspeed/zero3.json").read())
    assert ds["zero_optimization"]["stage"] == 3
    acc = yaml.safe_load(open(cfg.launch.accelerate_config))
    assert acc["distributed_type"] == "DEEPSPEED"
    assert acc["deepspeed_config"]["deepspeed_config_file"] == "configs/deepspeed/zero3.json"


def test_dry_run_prints_the_launch_command_and_resolved_config(capsys):
    assert main("sft", PAPER, item="both", dry_run=True) == 0
    out = capsys.readouterr().out
    cmd_line = out.strip().splitlines()[-1]
    cmd = shlex.split(cmd_line)
    assert cmd[0].endswith("accelerate") and cmd[1] == "launch"
    assert cmd[cmd.index("--config_file") + 1] == "configs/accelerate/zero3.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    assert cmd[-3:-1] == ["-m", "vlmcot.pipeline.sft"] and cmd[-1].endswith("models/sft/both/launch_config.json")
    resolved = json.loads(out[: out.rindex("}") + 1])
    assert resolved["mix"] == "both" and resolved["config"]["train"]["learning_rate"] == 5e-6


def test_dry_run_single_process_and_bad_items(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"sft": {"mixes": ["both"]}, "prepare": {}}))
    assert main("sft", str(params), item="both", dry_run=True) == 0
    assert "single process" in capsys.readouterr().out
    assert main("sft", str(params), item="cot", dry_run=True) == 2
    assert "sft.mixes: mix 'cot' not listed" in capsys.readouterr().err
    assert main("sft", str(params), dry_run=True) == 2  # no --mix


def test_unknown_train_key_names_the_key(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"sft": {"train": {"learning_rat": 1e-3}}}))
    with pytest.raises(ConfigError, match=r"sft\.train\.learning_rat: unknown key"):
        load_section(sft.Config, "sft", params)


def test_cli_passes_mix_and_dry_run(capsys):
    from typer.testing import CliRunner

    from vlmcot.cli import app

    res = CliRunner().invoke(app, ["sft", "--params", PAPER, "--mix", "cot", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "--num_processes 8" in res.output
