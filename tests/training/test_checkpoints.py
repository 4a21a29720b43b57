"""Checkpoint bookkeeping shared by the SFT and DPO wrappers: resume only into the run that wrote them."""

from vlmcot.training.checkpoints import CONFIG_HASH_FILE, config_hash, prepare_checkpoint_dir
from vlmcot.training.sft import TrainConfig


def test_prepare_checkpoint_dir_resumes_only_same_config(tmp_path):
    d = tmp_path / "ckpt"
    assert prepare_checkpoint_dir(d, "h1") is None and (d / CONFIG_HASH_FILE).read_text().strip() == "h1"
    for step, complete in ((2, True), (4, True), (6, False)):  # 6: a run killed mid-save
        (d / f"checkpoint-{step}").mkdir()
        if complete:
            (d / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert prepare_checkpoint_dir(d, "h1") == d / "checkpoint-4"
    assert not (d / "checkpoint-6").exists()
    assert prepare_checkpoint_dir(d, "h2") is None  # another config: wiped, fresh marker
    assert not (d / "checkpoint-4").exists() and (d / CONFIG_HASH_FILE).read_text().strip() == "h2"


def test_config_hash_changes_with_params():
    assert config_hash(TrainConfig(), ["a"]) == config_hash(TrainConfig(), ["a"])
    assert config_hash(TrainConfig(), ["a"]) != config_hash(TrainConfig(learning_rate=0.1), ["a"])
