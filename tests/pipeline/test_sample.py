"""Stage `sample`: candidates are scored records; a run killed with SIGKILL mid-way and rerun writes
exactly what an uninterrupted run writes; a partial file from another config is not reused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import mixed_records
from vlmcot.io import read_json, read_jsonl
from vlmcot.records import Candidate

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=1, text_heads=2, text_intermediate=96, max_position=256, vocab_size=300, seed=2)


def make_model_and_records(root: Path, n: int = 8) -> None:
    from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer

    mixed_records(root, n, 32, "train.jsonl")
    tok = train_bpe_tokenizer(["The sum is 8.\n\n### Answer: 8", "### Answer: B", "USER:\nASSISTANT:\n"] * 4,
                              vocab_size=300)
    build_tiny_llava(TinyLlavaConfig(**SMALL), tok).save_pretrained(root / "model")
    build_processor(tok, 32, 16).save_pretrained(root / "model")


def write_params(root: Path, out_dir: str, **over) -> Path:
    params = {"sample": {"model": str(root / "model"), "out_dir": str(root / out_dir),
                         "metrics_dir": str(root / out_dir / "metrics"), "root": str(root),
                         "items": {"train": {"records": str(root / "train.jsonl")}},
                         "num_samples": 4, "max_new_tokens": 10, "batch_size": 2, "chunk_size": 1, "seed": 5,
                         **over}}
    path = root / f"params_{out_dir}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    make_model_and_records(root)
    return root


@pytest.mark.slow
def test_sample_writes_scored_candidates(world):
    from vlmcot.stage import main

    assert main("sample", str(write_params(world, "plain")), item="train") == 0
    rows = read_jsonl(world / "plain/train/candidates.jsonl")
    cands = [Candidate.model_validate({"extracted": None, **r}) for r in rows]
    assert len(cands) == 8 * 4
    assert [(c.id, c.sample) for c in cands] == sorted((c.id, c.sample) for c in cands)
    assert {c.sample for c in cands} == {0, 1, 2, 3}
    assert all(c.correct is False or c.extracted is not None for c in cands)
    m = read_json(world / "plain/metrics/sample_train.json")
    assert m["all.questions"] == 8 and m["all.candidates"] == 32
    assert 0 <= m["synth_sci.sample_accuracy"] <= 1 and 0 <= m["all.extract_fail_rate"] <= 1
    assert m["all.samples_per_s"] > 0
    assert not (world / "plain/train/candidates.partial.jsonl").exists()
    # an unknown item fails cleanly
    assert main("sample", str(write_params(world, "plain")), item="nope") != 0


KILLABLE = """
import sys, time
from vlmcot import sampling
orig = sampling.PartialFile.append
def slow_append(self, chunk, cands):
    orig(self, chunk, cands)
    if chunk == 2:
        print("READY", flush=True)
        time.sleep(120)  # killed here with SIGKILL
sampling.PartialFile.append = slow_append
from vlmcot.stage import main
sys.exit(main("sample", sys.argv[1], item="train"))
"""


@pytest.mark.slow
def test_kill_and_resume_gives_identical_output(world):
    from vlmcot.stage import main

    params = write_params(world, "killed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(params)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "READY" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "READY" in line, "the sampling subprocess never reached chunk 2"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = world / "killed/train/candidates.partial.jsonl"
    assert not (world / "killed/train/candidates.jsonl").exists()
    assert len(partial.read_text().splitlines()) == 1 + 3  # header + chunks 0..2
    with partial.open("a") as f:  # a torn line, as a kill during a write leaves it
        f.write('{"chunk": 3, "candidates": [{"id": "mc_')

    assert main("sample", str(params), item="train") == 0
    assert read_json(world / "killed/metrics/sample_train.json")["all.resumed_chunks"] == 3
    assert main("sample", str(write_params(world, "straight")), item="train") == 0
    resumed = (world / "killed/train/candidates.jsonl").read_bytes()
    straight = (world / "straight/train/candidates.jsonl").read_bytes()
    assert resumed == straight


def test_partial_from_another_config_is_discarded(world, tmp_path):
    from vlmcot.sampling import PartialFile

    p = PartialFile(tmp_path / "p.jsonl", "aaa")
    assert p.load() == {}
    c = Candidate(id="q", sample=0, text="x", extracted=None, correct=False, dataset="d")
    p.append(0, [c])
    assert PartialFile(tmp_path / "p.jsonl", "aaa").load() == {0: [c]}
    assert PartialFile(tmp_path / "p.jsonl", "bbb").load() == {}  # other config: fresh start
    assert PartialFile(tmp_path / "p.jsonl", "aaa").load() == {}  # and the old chunks are gone


@pytest.mark.slow
def test_chunks_of_a_model_since_retrained_in_place_are_not_resumed(world):
    """The sft stage retrains into the same folder: a partial file left by the old model must not be
    resumed into the new one's candidates (it once supplied 32 of 38 chunks of a committed run)."""
    import shutil

    from vlmcot.sampling import model_identity
    from vlmcot.pipeline.sample import Config, select_questions, spec_for
    from vlmcot.sampling import PartialFile

    model = world / "model_retrained"
    shutil.copytree(world / "model", model, dirs_exist_ok=True)
    params = write_params(world, "stale", model=str(model))
    cfg = Config.model_validate(yaml.safe_load(params.read_text())["sample"])
    ids = sorted(r.id for r in select_questions(cfg.items["train"], cfg.max_bad_rate))  # chunk_size 1: one a chunk
    partial_path = world / "stale/train/candidates.partial.jsonl"

    def plant_stale_chunks():  # every chunk, written under the model folder as it is now
        partial_path.parent.mkdir(parents=True, exist_ok=True)
        partial_path.unlink(missing_ok=True)
        p = PartialFile(partial_path, spec_for(cfg, "train").fingerprint(ids, model_identity(str(model))))
        p.load()
        for k, qid in enumerate(ids):
            p.append(k, [Candidate(id=qid, sample=j, text="STALE", extracted=None, correct=False,
                                   dataset="synth_chart") for j in range(4)])

    from vlmcot.stage import main

    plant_stale_chunks()  # same model: the chunks are this run's own, and resume
    assert main("sample", str(params), item="train") == 0
    assert read_json(world / "stale/metrics/sample_train.json")["all.resumed_chunks"] == len(ids)

    plant_stale_chunks()
    time.sleep(0.01)
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes())  # retrained in place
    assert main("sample", str(params), item="train") == 0
    assert read_json(world / "stale/metrics/sample_train.json")["all.resumed_chunks"] == 0
    assert all(r["text"] != "STALE" for r in read_jsonl(world / "stale/train/candidates.jsonl"))


def test_model_identity_follows_the_files_not_the_path(tmp_path):
    from vlmcot.sampling import model_identity

    assert model_identity("org/hub-model") == "org/hub-model"  # not a folder: the name is all there is
    assert model_identity("") == ""  # no name: not the working directory's files
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"old")
    first = model_identity(str(tmp_path / "m"))
    assert first == model_identity(str(tmp_path / "m")) and first.startswith(str(tmp_path / "m") + "@")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"newer")
    assert model_identity(str(tmp_path / "m")) != first
