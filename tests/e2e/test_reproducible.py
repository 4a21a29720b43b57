"""The same commit on the same machine kind gives bit-identical weights: the micro base (reading phase +
description training) and SFT, trained twice with the production thread count (params' torch_threads: 2)
while another process keeps a core busy, write byte-identical safetensors (docs/reproducibility.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import load_module


def _micro():
    return load_module(Path(__file__).parent / "micro_pipeline.py")


@pytest.mark.slow
def test_base_and_sft_weights_are_bit_identical_on_a_busy_machine(tmp_path):
    mp = _micro()
    runs = [tmp_path / "a", tmp_path / "b"]
    outs = []
    hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        for root in runs:
            mp.make_workdir(root, threads=2, wide=True)
            outs.append(mp.run(root, "base", "sft@both").stdout)
    finally:
        hog.kill()
        hog.wait()
    for out in outs:
        assert "THREADS base 2" in out and "THREADS sft@both 2" in out  # the params' count, not the env's 1
    for stage in ("base", "sft@both"):
        a, b = (mp.sha(root / mp.OUTPUTS[stage]) for root in runs)
        assert a == b, f"{stage}: weights differ between two identical runs"
    assert mp.losses(outs[0]) == mp.losses(outs[1])
