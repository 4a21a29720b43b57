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
