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
