"""Resume that really resumes: every training stage (base with its reading phase, sft, dpo, a control) is
SIGKILLed between two checkpoints and rerun; its final weights must be byte-identical to an uninterrupted
run's, and the loss right after resuming must be the uninterrupted run's loss at that step.

Before the fix a resumed run kept its step counter, schedule and optimizer but restarted from the weights
it started with (transformers loaded none of the checkpoint's keys, vlmcot.training.resume): loss jumped
back up after the resume and the final model differed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_module


def _micro():
    return load_module(Path(__file__).parent / "micro_pipeline.py")


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_weights(tmp_path):
    mp = _micro()
    ref, run = tmp_path / "ref", tmp_path / "run"
    mp.make_workdir(ref)
    mp.make_workdir(run)
    ref_losses = mp.losses(mp.run(ref, *mp.STAGES).stdout)

    # (stage, its first checkpoint, the step it is killed after): killed 2 steps past a checkpoint, so the
    # resumed run must redo steps it had already taken, from the checkpoint's weights, data and RNG state
    plan = [("base", 4, 6), ("sft@both", 3, 5), ("dpo", 3, 5), ("control@cont_sft", 3, 5)]
    previous = None
    for stage, ckpt, kill_at in plan:
        # one process: finish the previous stage's resume, then start this one and kill it mid-run
        out = mp.run_and_kill(run, kill_at, *([previous[0]] if previous else []), stage)
        if previous:
            _check(mp, ref, run, previous, ref_losses, mp.losses(out))
        assert (run / mp.CHECKPOINTS[stage] / f"checkpoint-{ckpt}" / "trainer_state.json").is_file()
        assert not (run / mp.OUTPUTS[stage]).exists()  # it never finished
        # up to the kill it ran the uninterrupted run's steps (the loss of step kill_at is logged after the pause)
        assert mp.losses(out)[stage] == {s: v for s, v in ref_losses[stage].items() if s < kill_at}, stage
        previous = (stage, ckpt)
    _check(mp, ref, run, previous, ref_losses, mp.losses(mp.run(run, previous[0]).stdout))


def _check(mp, ref, run, previous, ref_losses, resumed_losses):
    stage, ckpt = previous
    steps = resumed_losses[stage]
    # it resumed from the checkpoint (first logged step is the one after it), not from step 1
    assert min(steps) == ckpt + 1, (stage, sorted(steps))
    # the curve goes on exactly where the uninterrupted run was (before the fix: a jump back up)
    assert steps == {s: v for s, v in ref_losses[stage].items() if s > ckpt}, stage
    assert mp.sha(run / mp.OUTPUTS[stage]) == mp.sha(ref / mp.OUTPUTS[stage]), f"{stage}: weights differ"
    assert not (run / mp.CHECKPOINTS[stage]).exists()  # cleaned once the final model is saved


@pytest.mark.slow
def test_grpo_kill_and_resume_gives_the_uninterrupted_weights(tmp_path):
    """The same for grpo, whose steps also sample: the resumed run draws the uninterrupted run's rollouts
    (the checkpoint's RNG state and data position), so its losses and final weights are identical."""
    import shutil

    from tests.pipeline.test_grpo import _tiny_sft

    mp = _micro()
    ref, run = tmp_path / "ref", tmp_path / "run"
    mp.make_workdir(ref)
    mp.make_workdir(run)
    _tiny_sft(ref)
    shutil.copytree(ref / "models/sft/both", run / "models/sft/both")
    ref_losses = mp.losses(mp.run(ref, "grpo").stdout)["grpo"]
    assert sorted(ref_losses) == list(range(1, 7))
    out = mp.run_and_kill(run, 5, "grpo")
    assert (run / mp.CHECKPOINTS["grpo"] / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (run / mp.OUTPUTS["grpo"]).exists()
    assert mp.losses(out)["grpo"] == {s: v for s, v in ref_losses.items() if s < 5}
    resumed = mp.losses(mp.run(run, "grpo").stdout)["grpo"]
    assert min(resumed) == 4, sorted(resumed)
    assert resumed == {s: v for s, v in ref_losses.items() if s > 3}
    assert mp.sha(run / mp.OUTPUTS["grpo"]) == mp.sha(ref / mp.OUTPUTS["grpo"]), "grpo: weights differ"
    assert not (run / mp.CHECKPOINTS["grpo"]).exists()
