"""The repository's .gitignore: DVC outputs stay out of git, the .dvc files of added folders go in."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_dvc_added_weights_folder_is_committable_and_models_stay_ignored(tmp_path):
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=tmp_path).returncode == 0

    # `dvc add models/llava-next-8b` (README "Paper scale") refuses to write a git-ignored .dvc file
    assert not ignored("models/llava-next-8b.dvc")
    assert ignored("models/llava-next-8b/model.safetensors") and ignored("models/sft/both/config.json")
    assert ignored("data/prepared/train.jsonl") and ignored("mlflow.db")
