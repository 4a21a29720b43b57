"""Stage `control`: how many steps it trains (DPO's, unless set) and clear errors when inputs are missing."""

import pytest
import yaml

from vlmcot.config import ConfigError
from vlmcot.pipeline.control import Config, _item, steps, trainer_steps
from vlmcot.stage import StageError
from vlmcot.training.sft import TrainConfig


def _params(tmp_path, **dpo_train):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"dpo": {"pairs": str(tmp_path / "pairs.jsonl"), "train": dpo_train}}))
    return str(p)


def test_trainer_steps_counts_like_the_trainer():
    # the committed embedded run: 567 pairs, batch 16, 2 epochs -> DPO's global_step was 72
    assert trainer_steps(567, 16, 1, 2) == 72
    assert trainer_steps(567, 16, 4, 1) == 9  # 36 batches, accumulation 4: ceil(36 / 4)
    assert trainer_steps(3, 16, 1, 1) == 1
    assert trainer_steps(100, 10, 1, 0.5) == 5


def test_steps_match_dpo_unless_set(tmp_path):
    assert steps(Config(train=TrainConfig(max_steps=5)), _params(tmp_path)) == 5
    assert steps(Config(), _params(tmp_path, max_steps=9)) == 9  # DPO's own fixed budget
    with pytest.raises(StageError, match="run the pairs stage"):
        steps(Config(), _params(tmp_path))
    with pytest.raises(ConfigError):
        steps(Config(steps_from=None), _params(tmp_path))


def test_unknown_item():
    with pytest.raises(ConfigError, match="cont_sft"):
        _item("sft")


def test_multi_process_control_relaunches_under_accelerate(tmp_path, monkeypatch):
    """launch.num_processes > 1: run() writes the spec and starts `accelerate launch -m vlmcot.pipeline.control`;
    each worker trains the item for the matched steps; rank 0's stats become the stage metrics."""
    import json
    import subprocess

    from tests.conftest import FakeTracker
    from vlmcot.pipeline import control
    from vlmcot.training.launch import LaunchConfig

    cfg = Config(train=TrainConfig(max_steps=12), out_dir=str(tmp_path / "models"),
                 metrics_dir=str(tmp_path / "metrics"),
                 launch=LaunchConfig(num_processes=8, accelerate_config="configs/accelerate/zero3.yaml"))
    trained = []
    monkeypatch.setattr(control, "train_item", lambda c, item, n, report_to: trained.append((item, n)) or
                        {"global_step": n, "train_loss": 1.5})
    launched = []

    def fake_accelerate(cmd, env):
        launched.append(cmd)
        assert env[control.WORKER_ENV] == "1"
        assert control.worker_main(cmd[-1]) == 0  # what each of the 8 processes runs
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(control.subprocess, "run", fake_accelerate)
    tracker = FakeTracker()
    tracker.run_id = "r"
    control.run(cfg, tracker, "rft")
    cmd = launched[0]
    assert cmd[1:6] == ["launch", "--config_file", "configs/accelerate/zero3.yaml", "--num_processes", "8"]
    assert cmd[-3:-1] == ["-m", "vlmcot.pipeline.control"]
    assert json.loads(open(cmd[-1]).read())["item"] == "rft" and trained == [("rft", 12)]
    assert json.loads((tmp_path / "metrics" / "rft.json").read_text())["global_step"] == 12.0
