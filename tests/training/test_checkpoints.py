"""Checkpoint bookkeeping shared by the SFT and DPO wrappers: resume only into the run that wrote them."""

from vlmcot.training.checkpoints import CONFIG_HASH_FILE, config_hash, prepare_checkpoint_dir, save_final
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


def test_save_final_saves_model_and_processor_then_drops_checkpoints(tmp_path):
    class Saver:
        def __init__(self, main=True):
            self.main, self.saved = main, []

        def save_model(self, path):
            self.saved.append(("model", path))

        def is_world_process_zero(self):
            return self.main

        def save_pretrained(self, path):
            self.saved.append(("processor", path))

    for keep, main in ((False, True), (True, True), (False, False)):
        ckpt, out = tmp_path / f"ckpt{keep}{main}", tmp_path / f"out{keep}{main}"
        (ckpt / "checkpoint-1").mkdir(parents=True)
        trainer, processor = Saver(main), Saver()
        save_final(trainer, processor, TrainConfig(keep_checkpoints=keep), out, ckpt)
        assert out.is_dir() and trainer.saved == [("model", str(out))]  # every rank saves (ZeRO-3 gathers)
        assert processor.saved == ([("processor", str(out))] if main else [])  # rank 0 writes the processor
        assert ckpt.is_dir() == (keep or not main)  # rank 0 drops the checkpoints unless kept
