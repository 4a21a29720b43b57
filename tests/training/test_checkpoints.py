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


def _model_folder(path, weights: bytes = b"weights-v1"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return str(path)


def _checkpoint(ckpt_dir, step: int) -> None:
    (ckpt_dir / f"checkpoint-{step}").mkdir(parents=True)
    (ckpt_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")


def test_a_checkpoint_resumes_only_onto_the_same_start_model_and_rows(tmp_path):
    """run_hash (what every training stage keys its checkpoints on) changes when the start model folder
    is retrained in place or a row is rewritten under the same id; prepare_checkpoint_dir (what every
    wrapper asks first) then starts fresh. Nothing changed: it resumes."""
    import os

    from vlmcot.training.checkpoints import run_hash

    model = _model_folder(tmp_path / "models/sft/both")
    rows = [{"id": "q1", "images": ["a.png"], "messages": [{"role": "assistant", "content": "It shows 3."}]}]
    ckpt = tmp_path / "ckpt"

    def key(rows=rows):
        return run_hash(TrainConfig(), "both", start_model=model, rows=rows)

    assert prepare_checkpoint_dir(ckpt, key()) is None  # the first run
    _checkpoint(ckpt, 2)  # ... killed after its checkpoint at step 2
    assert prepare_checkpoint_dir(ckpt, key()) == ckpt / "checkpoint-2"  # rerun, nothing changed: resumes

    # a row's text rewritten (same id, same count): the ids alone would have resumed
    changed = [{**rows[0], "messages": [{"role": "assistant", "content": "It shows 4."}]}]
    assert key(changed) != key()
    assert prepare_checkpoint_dir(ckpt, key(changed)) is None and not (ckpt / "checkpoint-2").exists()

    # the start model retrained into the same folder (same path, same config): starts fresh again
    assert prepare_checkpoint_dir(ckpt, key()) is None
    _checkpoint(ckpt, 2)
    before = key()
    _model_folder(tmp_path / "models/sft/both", b"weights-v2")
    st = os.stat(tmp_path / "models/sft/both/model.safetensors")
    os.utime(tmp_path / "models/sft/both/model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert key() != before
    assert prepare_checkpoint_dir(ckpt, key()) is None and not (ckpt / "checkpoint-2").exists()

    # a hub id (no folder) is its own identity; no start model (built in the process) hashes as such
    assert run_hash(TrainConfig(), start_model="org/model", rows=rows) != run_hash(TrainConfig(), start_model=None,
                                                                                  rows=rows)
    assert run_hash(TrainConfig(), start_model=None, rows=rows) == run_hash(TrainConfig(), start_model=None, rows=rows)
