"""Stage `control`: how many steps it trains (DPO's, unless set) and clear errors when inputs are missing."""

import pytest

from vlmcot.config import ConfigError
from vlmcot.io import write_json
from vlmcot.pipeline.control import Config, _item, steps
from vlmcot.stage import StageError
from vlmcot.training.sft import TrainConfig


def test_steps_match_dpo_unless_set(tmp_path):
    write_json(tmp_path / "dpo.json", {"global_step": 37.0})
    assert steps(Config(steps_from=str(tmp_path / "dpo.json"))) == 37
    assert steps(Config(steps_from=str(tmp_path / "dpo.json"), train=TrainConfig(max_steps=5))) == 5
    with pytest.raises(StageError, match="run the dpo stage"):
        steps(Config(steps_from=str(tmp_path / "missing.json")))
    with pytest.raises(ConfigError):
        steps(Config(steps_from=None))


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
    from vlmcot.pipeline.sft import LaunchConfig

    write_json(tmp_path / "dpo.json", {"global_step": 12})
    cfg = Config(steps_from=str(tmp_path / "dpo.json"), out_dir=str(tmp_path / "models"),
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
