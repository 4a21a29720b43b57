"""The README's "Change one thing, compare" block, run as written on the micro profile.

A copy of the project (dvc.yaml, Makefile, stages/, src/, .dvc/) whose params.yaml is the committed
one with the micro sizes of test_micro_rl.py merged in. The pipeline is produced once in-process
(stand-in world and mixes for prepare..mix, the real stage entry for base..report) and recorded with
`dvc commit`; then the README's commands run in a shell whose PATH has no project interpreter, the
way a user types them after `make repro`:

    make exp SET=dpo.train.beta=0.2     # reruns dpo and what it feeds, nothing upstream, not the controls
    .venv/bin/dvc metrics diff          # only the headline numbers the change moved
    .venv/bin/dvc exp show --only-changed --drop '(data|models|metrics)/.*'
    .venv/bin/dvc plots diff            # offline page, training curves included

and a failing `make exp` leaves the workspace as it was (params.yaml, metrics, DVC outputs). MLflow: the experiment's stage runs carry its
name, share one parent run, and the dpo run names the checkpoint DVC recorded.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MICRO = {
    "base": {"vision_pretrain": {"steps": 0, "eval_images": 2}, "torch_threads": 1},
    "sft": {"mixes": ["both"], "torch_threads": 1},
    "dpo": {"torch_threads": 1},
    "control": {"torch_threads": 1},
    "dpo_round": {"torch_threads": 1},
    "sample": {"items": {"train": {"datasets": None, "max_per_dataset": None},
                         "eval": {"datasets": None, "max_per_dataset": None, "num_samples": None}}},
    "table": {"models": ["both"]},
    "report": {"table2_models": ["both"]},
}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def _sh(repo: Path, cmd: str, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.mark.slow
def test_readme_change_one_thing_block(tmp_path, monkeypatch):
    from vlmcot.stage import main

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "Makefile", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for tree in ("stages", "src"):
        shutil.copytree(ROOT / tree, repo / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text() + "/.venv\n")
    (repo / ".venv").symlink_to(Path(sys.prefix))  # what `make setup` leaves: the project's interpreter
    (repo / ".venv/.installed").exists() or pytest.skip("the test venv was not made by `make setup`")

    # micro params: the committed params.yaml with test_micro_rl's sizes merged in
    rl = _load("micro_rl", ROOT / "tests/e2e/test_micro_rl.py")
    micro = yaml.safe_load(rl.micro_params(tmp_path).read_text())
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), _merge(micro, MICRO))
    # the micro models only, not merged in, plus the two #16 models this loop trains (grpo, DPO round 2)
    params["evaluate"]["models"] = {**micro["evaluate"]["models"], "grpo": "models/grpo",
                                    "dpo_r2": "models/dpo_rounds/r2"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    from dvc.utils.hydra import apply_overrides

    apply_overrides(repo / "params.yaml", [])  # in DVC's write-back layout, as the committed params.yaml

    # prepare..mix: stand-ins; base..report: the real stages in-process (no per-stage interpreter start)
    monkeypatch.chdir(repo)
    helpers = rl._micro_sft_helpers()
    helpers.make_world(repo)
    helpers.make_mixes(repo)
    for f in ("data/distill/replies.jsonl", "data/filter/cot.jsonl", "metrics/prepare.json", "metrics/distill.json",
              "metrics/filter.json", "metrics/paper/filter.json", "metrics/mix.json", "data/distill_cache/x"):
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        (repo / f).write_text("{}\n")
    (repo / "metrics/plots").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "metrics/plots/answer_lengths.csv", repo / "metrics/plots/answer_lengths.csv")
    p = "params.yaml"
    steps = [("base", None), ("sft", "both"), ("sample", "train"), ("pairs", None), ("dpo", None), ("dpo_round", "r2"),
             ("control", "cont_sft"), ("control", "rft"), ("grpo", None),
             *[("evaluate", m) for m in ("both", "dpo", "cont_sft", "rft", "grpo", "dpo_r2")],
             ("sample", "eval"), ("table", None), ("rerank", None), ("credit", None), ("claims", None), ("report", None)]
    for stage, item in steps:
        assert main(stage, p, item=item) == 0, (stage, item)

    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if Path(d).resolve() != BIN.resolve())
    git = "git -c user.name=t -c user.email=t@t"
    _sh(repo, f"git init -q && .venv/bin/dvc commit -f && {git} add -A && {git} commit -qm micro", env)
    assert _sh(repo, ".venv/bin/dvc status", env).stdout.strip().startswith("Data and pipelines are up to date")

    # 1. change one thing
    before = (repo / "params.yaml").read_text()
    run = _sh(repo, "make exp SET=dpo.train.beta=0.2", env)
    ran = set(re.findall(r"Running stage '([^']+)'", run.stdout + run.stderr))
    # what the change feeds (tests/test_dag.py checks the declared DAG); a consumer whose inputs came out
    # byte-identical (table, when the micro DPO model answers the eval questions as before) is skipped
    fed = {"dpo", "dpo_round@r2", "evaluate@dpo", "evaluate@dpo_r2", "table", "rerank", "credit", "claims", "report"}
    assert {"dpo", "dpo_round@r2", "evaluate@dpo", "rerank", "credit", "claims", "report"} <= ran <= fed, run.stdout[-3000:]
    changed = [ln for ln in subprocess.run(["git", "diff", "-U0", "params.yaml"], cwd=repo, capture_output=True,
                                           text=True).stdout.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == ["-    beta: 0.1", "+    beta: 0.2"], changed  # the experiment's params diff: that key alone

    # 2. compare: headline numbers only, what the change moved
    diff = _sh(repo, ".venv/bin/dvc metrics diff --md", env).stdout
    rows = [ln for ln in diff.splitlines() if ln.startswith("| metrics/")]
    assert all(r.split("|")[1].strip() in ("metrics/paper/dpo.json", "metrics/paper/dpo_r2.json",
                                                    "metrics/paper/rerank.json") for r in rows), diff
    show = _sh(repo, ".venv/bin/dvc metrics show", env).stdout
    assert max(len(ln) for ln in show.splitlines()) <= 120, show
    exp_show = _sh(repo, ".venv/bin/dvc exp show --only-changed --drop '(data|models|metrics)/.*'", env).stdout
    assert "dpo.train.beta" in exp_show and "models/dpo" not in exp_show  # no dependency-hash columns
    plots = _sh(repo, ".venv/bin/dvc plots diff HEAD -o plots_out", env)
    page = (repo / "plots_out/index.html").read_text()
    assert "failed to load" not in plots.stdout + plots.stderr and "<script src" not in page
    assert page.count('"rev": "HEAD"') and page.count('"rev": "workspace"')  # both revisions in the curves

    # 3. a failing run leaves params.yaml as it was
    after = (repo / "params.yaml").read_text()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    fail = _sh(repo, "make exp SET=dpo.sft_model=models/missing", env, ok=False)
    assert fail.returncode != 0 and (repo / "params.yaml").read_text() == after
    # and the outputs DVC deleted before running the failing stage are back: nothing stale, nothing lost
    assert _sh(repo, ".venv/bin/dvc status", env).stdout.strip().startswith("Data and pipelines are up to date")
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == status
    assert before != after

    # 4. MLflow: the experiment's runs carry its name, share a parent, and name the DVC checkpoint
    import mlflow

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    dpo_md5 = next(o["md5"] for o in lock["stages"]["dpo"]["outs"] if o["path"] == "models/dpo")
    exp = mlflow.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`checkpoint.dvc_md5` = '{dpo_md5}'",
                              output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["dvc_exp"] not in ("", "workspace")
    name = runs[0].data.tags["dvc_exp"]
    group = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.dvc_exp = '{name}'", output_format="list")
    stage_runs = [r for r in group if "stage" in r.data.tags]
    assert {r.info.run_name for r in stage_runs} == ran
    assert len({r.data.tags["mlflow.parentRunId"] for r in stage_runs}) == 1
