"""tools/seed_spread.py: mean and sd over experiments of each claim's delta, offline.

The `dvc exp show --json` input is built from DVC's own serialisation classes (what the command
prints: ``[exp.dumpd() for exp in exps]``), so a change of DVC's layout fails here, not in a user's hands.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest

from tests.helpers import load_module

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    return load_module(ROOT / "tools" / "seed_spread.py")


def _git_runs(repo: Path, values: list[dict[str, float]]) -> list[str]:
    """One commit per experiment holding its metrics/claims.json (as `dvc exp run` commits it)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "metrics").mkdir()
    revs = []
    for v in values:
        full = {k: {"delta": d, "verdict": "inconclusive"} for k, d in v.items()}
        full["weighted_voting_beats_majority"] = {"verdict": "not measured", "note": "no rerank"}
        (repo / "metrics/claims.json").write_text(json.dumps(full))
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "exp"], cwd=repo, check=True)
        revs.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                                   text=True).stdout.strip())
    return revs


def _exp_show(revs: list[str], declared: dict | None = None, states: dict[str, str] | None = None) -> list[dict]:
    """What `dvc exp show --json` prints: the workspace, the baseline commit and its experiments
    (``states``: rev -> executor state of a queued experiment; others finished in the queue)."""
    from dvc.repo.experiments.serialize import ExpExecutor, ExpRange, ExpState, SerializableExp

    def executor(rev):
        return ExpExecutor(state=(states or {}).get(rev, "success"), name="dvc-task")

    def state(rev, name, metrics=None):
        metrics = {"metrics/paper/both.json": {"data": {"cot": 1}}, **(metrics or {})}
        return ExpState(rev=rev, name=name, data=SerializableExp(rev=rev, metrics=metrics))

    exps = [ExpRange(revs=[state(r, f"seed{i}")], executor=executor(r), name=f"seed{i}") for i, r in enumerate(revs)]
    baseline = state(revs[0], "main", declared)
    baseline.experiments = exps
    return json.loads(json.dumps([state("workspace", None).dumpd(), baseline.dumpd()], default=str))


def test_spread_over_experiments_from_exp_show(tmp_path, capsys, monkeypatch):
    tool = _tool()
    values = [{"dpo_helps_cot": 1.0, "cot_data_helps_cot": 10.0}, {"dpo_helps_cot": 2.0, "cot_data_helps_cot": 12.0},
              {"dpo_helps_cot": 4.5}]  # the third seed did not measure cot_data_helps_cot
    revs = _git_runs(tmp_path, values)
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(_exp_show(revs)))
    monkeypatch.chdir(tmp_path)  # the experiments' commits are read from the repository here
    assert tool.main(["--exp-show", str(path), "--json"]) == 0
    rows = {r["claim"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dpo_helps_cot"]["n"] == 3  # the experiments only: the baseline repeats seed0
    assert rows["dpo_helps_cot"]["mean"] == pytest.approx(2.5)
    assert rows["dpo_helps_cot"]["sd"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.5]))
    assert (rows["cot_data_helps_cot"]["n"], rows["cot_data_helps_cot"]["mean"]) == (2, pytest.approx(11.0))
    assert "weighted_voting_beats_majority" not in rows  # never measured: no row
    assert tool.main(["--exp-show", str(path), "--all", "--json"]) == 0
    assert {r["claim"]: r["n"] for r in json.loads(capsys.readouterr().out)}["dpo_helps_cot"] == 4
    # a file declared as DVC metrics is taken from the JSON itself
    declared = _exp_show(revs[:1], {"metrics/claims.json": {"data": {"dpo_helps_cot": {"delta": 9.0}}}})
    runs = tool.from_exp_show(declared, include_all=True, read_rev=lambda rev, p: None)
    assert runs == {"main": {"dpo_helps_cot": {"delta": 9.0, "ci": None}}}


def test_spread_from_run_directories_markdown(tmp_path, capsys):
    tool = _tool()
    for i, d in enumerate((0.5, 1.5)):
        (tmp_path / f"run{i}" / "metrics").mkdir(parents=True)
        (tmp_path / f"run{i}" / "metrics" / "claims.json").write_text(json.dumps({
            "dpo_helps_cot": {"delta": d, "verdict": "inconclusive"},
            "weighted_voting_beats_majority": {"verdict": "not measured", "note": "no rerank"}}))
    assert tool.main([str(tmp_path / "run0"), str(tmp_path / "run1")]) == 0
    out = capsys.readouterr().out
    assert "over 2 experiments" in out and "| dpo_helps_cot | 2 | +1.00 | 0.71 | +0.50 | +1.50 | - | - |" in out
    assert "weighted_voting" not in out  # never measured: no row
    with pytest.raises(SystemExit, match="not found"):
        tool.main([str(tmp_path / "nowhere")])


def test_runs_whose_interval_excludes_zero_are_counted(tmp_path, capsys):
    """Each run's own paired 95% interval decides: above 0, below 0, or neither; a run without one counts
    in neither but still in the mean."""
    tool = _tool()
    runs = {"s0": {"delta": 2.0, "ci_low": 0.5, "ci_high": 3.5},     # above 0
            "s1": {"delta": 1.0, "ci_low": -0.5, "ci_high": 2.5},    # spans 0
            "s2": {"delta": -3.0, "ci_low": -5.0, "ci_high": -1.0},  # below 0
            "s3": 4.0}                                               # a headline number: no interval
    for name, v in runs.items():
        (tmp_path / name / "metrics").mkdir(parents=True)
        (tmp_path / name / "metrics" / "claims.json").write_text(json.dumps({"dpo_helps_cot": v}))
    assert tool.main([str(tmp_path / n) for n in runs] + ["--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["n"], row["mean"], row["with_ci"]) == (4, pytest.approx(1.0), 3)
    assert row["above"] == [str(tmp_path / "s0")] and row["below"] == [str(tmp_path / "s2")]
    assert tool.main([str(tmp_path / n) for n in runs]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| dpo_helps_cot"))
    assert line.endswith(f"| 1/3 ({tmp_path / 's0'}) | 1/3 ({tmp_path / 's2'}) |")


def test_an_unfinished_experiment_is_not_a_seed(tmp_path, capsys, monkeypatch):
    """While `dvc queue` still runs an experiment, `dvc exp show` lists it with its stash commit, which
    holds the baseline's claims: counting it would add seed 0 a second time."""
    tool = _tool()
    revs = _git_runs(tmp_path, [{"dpo_helps_cot": 1.0}, {"dpo_helps_cot": 3.0}, {"dpo_helps_cot": 1.0}])
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(_exp_show(revs, states={revs[2]: "running"})))
    monkeypatch.chdir(tmp_path)
    assert tool.main(["--exp-show", str(path), "--json"]) == 0
    out = capsys.readouterr()
    (row,) = json.loads(out.out)
    assert (row["n"], row["mean"]) == (2, pytest.approx(2.0))
    assert "skipping experiment seed2 (running)" in out.err
