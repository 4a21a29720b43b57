"""`--shard i/N` for sample and evaluate: two shards of the in-process hf backend on the tiny model
(sample: two concurrent processes) each do half, the plain stage command merges them (loading no model), and the merged output
equals an unsharded run byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.pipeline.test_sample import make_model_and_records
from vlmcot.io import read_json

SRC = str(Path(__file__).resolve().parents[2] / "src")


def write_params(root: Path, out: str) -> Path:
    p = {
        "sample": {"model": str(root / "model"), "out_dir": str(root / out / "sample"),
                   "metrics_dir": str(root / out / "m"), "root": str(root),
                   "items": {"train": {"records": str(root / "train.jsonl")}},
                   "num_samples": 3, "max_new_tokens": 8, "batch_size": 2, "chunk_size": 2, "seed": 3},
        "evaluate": {"records": str(root / "train.jsonl"), "models": {"tiny": str(root / "model")},
                     "predictions_dir": str(root / out / "eval"), "metrics_dir": str(root / out / "m"),
                     "summary_dir": str(root / out / "paper"), "root": str(root), "generation": {"max_new_tokens": 8, "batch_size": 3}},
    }
    path = root / f"params_{out}.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def run_shards(stage: str, flag: str, item: str, params: Path, n: int) -> None:
    """n concurrent stage processes, one per shard (as n GPUs or nodes would run them)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "vlmcot.cli", stage, "-p", str(params), flag, item,
                               "--shard", f"{i}/{n}"], env=env, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    make_model_and_records(root, n=7)  # odd: the shards differ in size, the last sample chunk is short
    return root


@pytest.mark.slow
def test_two_shards_merge_to_the_unsharded_output(world):
    from vlmcot.stage import main

    plain = write_params(world, "plain")
    assert main("sample", str(plain), item="train") == 0
    assert main("evaluate", str(plain), item="tiny") == 0

    sharded = write_params(world, "sharded")
    run_shards("sample", "--item", "train", sharded, 2)
    for i in range(2):  # in this process, to keep the test short
        assert main("evaluate", str(sharded), item="tiny", shard=f"{i}/2") == 0
    out = world / "sharded"
    assert len(list((out / "sample/train").glob("candidates.shard-*-of-2.partial.jsonl"))) == 2
    assert len(list((out / "eval").glob("tiny.shard-*-of-2.jsonl"))) == 2
    assert not (out / "sample/train/candidates.jsonl").exists()  # a shard alone writes no output

    (world / "model").rename(world / "model.away")  # the merge must not need the model
    try:
        assert main("sample", str(sharded), item="train") == 0
        assert main("evaluate", str(sharded), item="tiny") == 0
    finally:
        (world / "model.away").rename(world / "model")

    a, b = world / "plain", world / "sharded"
    assert (a / "sample/train/candidates.jsonl").read_bytes() == (b / "sample/train/candidates.jsonl").read_bytes()
    assert (a / "eval/tiny.jsonl").read_bytes() == (b / "eval/tiny.jsonl").read_bytes()
    assert read_json(a / "m/tiny.json") == read_json(b / "m/tiny.json")
    assert sorted(p.name for p in (b / "sample/train").iterdir()) == ["candidates.jsonl"]  # shard files merged away
    assert sorted(p.name for p in (b / "eval").iterdir()) == ["tiny.jsonl"]
    ma = read_json(a / "m/sample_train.json")
    assert ma["all.candidates"] == 7 * 3


def test_shard_argument_errors(world, capsys):
    from vlmcot.stage import main

    params = write_params(world, "bad")
    for bad in ("2/2", "x", "1/0"):
        assert main("sample", str(params), item="train", shard=bad) == 2
        assert "--shard" in capsys.readouterr().err
    assert main("pairs", str(params), shard="0/2") == 2  # a stage that does not shard says so
