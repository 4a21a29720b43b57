"""Every training stage keys its checkpoints on the model folder it starts from and on its rows' content:
a run killed mid-way resumes only when neither changed. The stage code runs for real up to its trainer
call (rows read from its input files, the model checked); the trainer is a stand-in that answers what the
real wrappers ask first, ``prepare_checkpoint_dir(checkpoint_dir, run_hash)``, and then dies the way a
killed run does, after its checkpoint at step 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vlmcot.io import write_jsonl
from vlmcot.pipeline import control, dpo, grpo, sft
from vlmcot.records import VQARecord
from vlmcot.training.checkpoints import prepare_checkpoint_dir


def _image(path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return str(path)


def _start_model(path: Path, weights: bytes = b"v1") -> str:
    """A model folder (what a stage finds at sft_model / base_model); its processor load is stubbed."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    f = path / "model.safetensors"
    old = f.stat().st_mtime_ns if f.exists() else 0
    f.write_bytes(weights)
    st = f.stat()  # a retrain a second later: never the same mtime, even on a coarse clock
    os.utime(f, ns=(st.st_atime_ns, max(st.st_mtime_ns, old + 10**9)))
    return str(path)


def _mix(path: Path, image: str, answer: str) -> None:
    write_jsonl(path, [{"id": "q1-cot", "image": image, "conversations": [
        {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": f"### Answer: {answer}"}]}])


def _pairs(path: Path, image: str, chosen: str) -> None:
    write_jsonl(path, [{"id": "q1-p0", "image": image, "prompt": "What is shown?", "chosen": chosen,
                        "rejected": "### Answer: none"}])


@pytest.fixture
def trainers(monkeypatch):
    """Stand-ins for the four wrappers: each answers prepare_checkpoint_dir (recorded), then leaves a
    complete checkpoint-2 behind as a killed run would."""
    import vlmcot.models.loading as loading
    import vlmcot.rewards as rewards
    import vlmcot.training.dpo as tdpo
    import vlmcot.training.grpo as tgrpo
    import vlmcot.training.sft as tsft

    answers: list[Path | None] = []

    def killed(ckpt, run_hash):
        ckpt = Path(ckpt)
        answers.append(prepare_checkpoint_dir(ckpt, run_hash))
        (ckpt / "checkpoint-2").mkdir(exist_ok=True)
        (ckpt / "checkpoint-2" / "trainer_state.json").write_text("{}")
        return {"global_step": 2}

    monkeypatch.setattr(loading, "load_processor", lambda path: None)
    monkeypatch.setattr(tsft, "train_sft", lambda m, p, rows, c, out, ckpt, run_hash, **kw: killed(ckpt, run_hash))
    monkeypatch.setattr(tdpo, "train_dpo", lambda m, r, p, rows, c, out, ckpt, run_hash, **kw: killed(ckpt, run_hash))
    monkeypatch.setattr(tgrpo, "train_grpo",
                        lambda m, p, rows, f, w, c, out, ckpt, run_hash, **kw: killed(ckpt, run_hash))
    monkeypatch.setattr(rewards, "reward_functions", lambda records, *a: ([], []))
    return answers


def _resumes(answers, run, ckpt: Path) -> bool:
    """Run the stage's training once more; True when it resumed the killed run's checkpoint."""
    run()
    answer = answers[-1]
    assert answer in (None, ckpt / "checkpoint-2")
    return answer is not None


def test_sft_and_control_resume_only_onto_the_same_start_model_and_mix(tmp_path, trainers):
    image = _image(tmp_path / "img/q1.png")
    base = _start_model(tmp_path / "models/base")
    _mix(tmp_path / "mix/both.jsonl", image, "3")
    scfg = sft.Config(base_model=base, mix_dir=str(tmp_path / "mix"), out_dir=str(tmp_path / "out"),
                      checkpoint_dir=str(tmp_path / "ckpt"))
    ccfg = control.Config(sft_model=base, mix=str(tmp_path / "mix/both.jsonl"), out_dir=str(tmp_path / "out"),
                          checkpoint_dir=str(tmp_path / "cckpt"))
    for run, ckpt in ((lambda: sft.train_mix(scfg, "both", []), tmp_path / "ckpt/both"),
                      (lambda: control.train_item(ccfg, "cont_sft", 3, []), tmp_path / "cckpt/cont_sft")):
        _mix(tmp_path / "mix/both.jsonl", image, "3")
        assert not _resumes(trainers, run, ckpt)  # the first run, killed
        assert _resumes(trainers, run, ckpt)  # rerun, nothing changed
        _mix(tmp_path / "mix/both.jsonl", image, "4")  # the mix rewritten: same id, other answer
        assert not _resumes(trainers, run, ckpt)
        assert _resumes(trainers, run, ckpt)
        _start_model(tmp_path / "models/base", f"retrained before {ckpt.name}".encode())  # base, in place
        assert not _resumes(trainers, run, ckpt)
        assert _resumes(trainers, run, ckpt)


def test_dpo_resumes_only_onto_the_same_sft_model_and_pairs(tmp_path, trainers):
    image = _image(tmp_path / "img/q1.png")
    model = _start_model(tmp_path / "models/sft/both")
    _pairs(tmp_path / "pairs.jsonl", image, "### Answer: 3")
    cfg = dpo.Config(sft_model=model, pairs=str(tmp_path / "pairs.jsonl"), out_dir=str(tmp_path / "out"),
                     checkpoint_dir=str(tmp_path / "ckpt"))
    run, ckpt = (lambda: dpo.train(cfg, [])), tmp_path / "ckpt"
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)
    _pairs(tmp_path / "pairs.jsonl", image, "### Answer: 4")  # new pairs, same ids
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)
    _start_model(tmp_path / "models/sft/both", b"v2")  # sft@both retrained in place
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)


def test_grpo_resumes_only_onto_the_same_sft_model_questions_and_answers(tmp_path, trainers, monkeypatch):
    image = _image(tmp_path / "img/q1.png")
    model = _start_model(tmp_path / "models/sft/both")
    record = VQARecord(id="q1", image=image, question="What is shown?", answer="3", dataset="synth_chart",
                       qtype="numeric", split="train", metric="relaxed_accuracy")
    records = [record]
    monkeypatch.setattr(grpo, "questions", lambda cfg, params_path=None: records)
    cfg = grpo.Config(sft_model=model, out_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ckpt"))
    run, ckpt = (lambda: grpo.train(cfg, [])), tmp_path / "ckpt"
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)
    records[0] = record.model_copy(update={"question": "How many bars?"})  # the prompt rows change
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)
    records[0] = records[0].model_copy(update={"answer": "4"})  # only what the reward scores against
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)
    _start_model(tmp_path / "models/sft/both", b"v2")
    assert not _resumes(trainers, run, ckpt)
    assert _resumes(trainers, run, ckpt)
