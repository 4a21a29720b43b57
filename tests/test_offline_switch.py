"""prepare.offline: the embedded default keeps the hub off; `offline: false` (the paper profile) turns
it on for that stage, before huggingface_hub is imported (it reads HF_HUB_OFFLINE at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlmcot import tracking

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys
# stage_run and configure run for real, with MLflow on a throwaway sqlite store in the test's folder
from vlmcot import stage
import vlmcot.pipeline.prepare as prep

def fake_run(cfg, tracker):
    import huggingface_hub.constants as c
    print("RESULT", json.dumps({"env": os.environ.get("HF_HUB_OFFLINE"), "hub": bool(c.HF_HUB_OFFLINE)}))

prep.run = fake_run
sys.exit(stage.main(prep, sys.argv[1]))
"""


def test_configure_respects_the_switch(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    tracking.configure()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    tracking.configure(offline=False)
    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["HF_DATASETS_OFFLINE"] == "0"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user who turned the hub on keeps it on
    tracking.configure(offline=True)
    assert os.environ["HF_HUB_OFFLINE"] == "0"


@pytest.mark.parametrize("offline,expect", [(True, True), (False, False)])
def test_stage_applies_prepare_offline_before_hub_import(tmp_path, offline, expect):
    params = tmp_path / "params.yaml"
    params.write_text(f"prepare:\n  source: hub\n  offline: {str(offline).lower()}\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("DVC_ROOT", None)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(params)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)  # 120 s failed once with a dvc repro sharing the 2 cores
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT"))
    got = json.loads(line.split(" ", 1)[1])
    assert got == {"env": "1" if offline else "0", "hub": expect}
