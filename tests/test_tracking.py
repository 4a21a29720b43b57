"""MLflow tracking: stage runs carry the DVC experiment and commit, one parent run groups a pipeline
execution's stage runs, and the experiment opens on the runs table."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import mlflow

from vlmcot import tracking


def _runs(name_filter: str):
    exp = mlflow.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    return exp, mlflow.MlflowClient().search_runs([exp.experiment_id], filter_string=name_filter)


def test_stage_runs_of_one_group_share_a_parent(monkeypatch, tmp_path):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("VLMCOT_RUN_GROUP", f"test-group-{tmp_path.name}")
    ids = []
    for stage in ("pairs", "dpo"):
        with tracking.stage_run(stage, {"x": 1}) as run:
            ids.append(run.run_id)
    exp, parents = _runs(f"tags.`{tracking.GROUP_TAG}` = 'test-group-{tmp_path.name}'")
    assert len(parents) == 1
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    for rid in ids:
        r = mlflow.get_run(rid)
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.data.tags["dvc_exp"] == "workspace" and r.data.tags["git_commit"]
        assert r.data.tags["dvc_exp_baseline"] == r.data.tags["git_commit"]


def test_experiment_name_tags_and_groups(monkeypatch, tmp_path):
    monkeypatch.delenv("VLMCOT_RUN_GROUP", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", f"beta-{tmp_path.name}")
    with tracking.stage_run("dpo", {}) as run:
        rid = run.run_id
    tags = mlflow.get_run(rid).data.tags
    assert tags["dvc_exp"] == f"beta-{tmp_path.name}"
    parent = mlflow.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags[tracking.GROUP_TAG] == f"exp:beta-{tmp_path.name}"


def test_run_group_follows_the_dvc_process(tmp_path):
    """Two stages started by one `dvc` process get one group; another dvc process, another group;
    a stage run by hand (no dvc ancestor) gets none."""
    probe = f"{sys.executable} -c 'from vlmcot.tracking import run_group; print(run_group())'"
    dvc = tmp_path / "dvc"  # stands in for the dvc executable: runs two stage commands through a shell
    dvc.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        sh -c "{probe}"
        sh -c "{probe}"
        """))
    dvc.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_EXP_NAME", "VLMCOT_RUN_GROUP")}
    first = subprocess.run([str(dvc)], capture_output=True, text=True, env=env, check=True).stdout.split("\n")
    second = subprocess.run([str(dvc)], capture_output=True, text=True, env=env, check=True).stdout.split("\n")
    assert first[0] == first[1] and first[0].startswith("('repro:")
    assert second[0] != first[0]
    alone = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    assert alone.strip() == "None"


def test_experiment_url_points_at_the_runs_table():
    assert tracking.experiment_url("1") == "http://127.0.0.1:5000/#/experiments/1/runs"


def test_dvc_hash_matches_dvc_add(tmp_path):
    """The checkpoint hash tagged on a run is the one `dvc add` records for the same directory."""
    import yaml

    repo = tmp_path / "repo"
    (repo / "models" / "m").mkdir(parents=True)
    (repo / "models" / "m" / "config.json").write_text("{}")
    (repo / "models" / "m" / "w.bin").write_bytes(b"\0" * 1000)
    dvc = os.path.join(os.path.dirname(sys.executable), "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "add", "-q", "models/m"], cwd=repo, check=True)
    recorded = yaml.safe_load((repo / "models" / "m.dvc").read_text())["outs"][0]["md5"]
    assert tracking.dvc_hash(repo / "models" / "m") == recorded
