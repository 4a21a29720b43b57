"""The DAG reruns exactly what a change feeds: with every stage recorded in dvc.lock, a change of
`dpo.train.beta` makes stale dpo, its evaluation, the tables, rerank, credit, the claims and the report, and
never the controls or anything upstream. Stage outputs are stand-in files (`dvc commit` records them
without running anything), so this checks dvc.yaml's declared deps and params in seconds."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
DVC = os.path.join(os.path.dirname(sys.executable), "dvc")


def _stale(repo: Path) -> set[str]:
    from dvc.repo import Repo

    with contextlib.chdir(repo), Repo(str(repo)) as r:
        return set(r.status())


def _commit(repo: Path, *stages: str) -> None:
    from dvc.repo import Repo

    with contextlib.chdir(repo), Repo(str(repo)) as r:
        for target in stages or [None]:
            r.commit(target, force=True)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    from dvc.repo import Repo

    repo = tmp_path_factory.mktemp("dag")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for tree in ("stages", "src"):
        shutil.copytree(ROOT / tree, repo / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([DVC, "init", "-q"], cwd=repo, check=True)
    with Repo(str(repo)) as r:
        # deps first: some name a file inside another stage's directory output (data/prepared/train.jsonl)
        paths = [d.def_path for s in r.index.stages for d in s.deps if not (repo / d.def_path).exists()]
        paths += [o.def_path for s in r.index.stages for o in s.outs]
    for path in paths:
        p = repo / path
        if p.exists():
            continue
        if p.suffix:  # a file (json, jsonl, csv, md)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("{}\n")
        else:  # a directory
            p.mkdir(parents=True, exist_ok=True)
            (p / "stand-in.txt").write_text("0\n")
    _commit(repo)
    assert _stale(repo) == set()
    return repo


@pytest.mark.slow  # ~10 dvc status/commit rounds over 27 stages: half a minute on an idle 2-core machine
def test_a_beta_change_feeds_dpo_and_its_consumers_only(recorded, tmp_path):
    from dvc.repo import Repo

    repo = tmp_path / "repo"
    shutil.copytree(recorded, repo, symlinks=True)
    apply_overrides(repo / "params.yaml", ["dpo.train.beta=0.2"])  # what `dvc exp run -S` writes
    reached: set[str] = set()
    stale = _stale(repo)
    # dpo_round runs DPO with the dpo section's settings (the same rules), so its round reruns too
    assert stale == {"dpo", "dpo_round@r2"}
    while stale - reached:
        # stand in for a rerun of each newly stale stage: change its outputs, record them
        new = stale - reached
        reached |= new
        with Repo(str(repo)) as r:
            outs = [o.def_path for s in r.index.stages if s.name in new for o in s.outs]
        for out in outs:
            p = repo / out
            target = p if p.is_file() else p / "stand-in.txt"
            target.write_text(target.read_text() + "changed\n")
        _commit(repo, *sorted(new))
        stale = _stale(repo) | reached
    assert reached == {"dpo", "dpo_round@r2", "evaluate@dpo", "evaluate@dpo_r2", "table", "rerank", "credit", "claims",
                       "report"}
