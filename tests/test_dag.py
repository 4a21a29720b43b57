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


# --- images: the later stages depend on prepare's manifest, not on the images folder ------------------------


def _reads_images(stage: str) -> bool:
    """A stage reads image files when its Config has an image root or image limits (``root``,
    ``image_root``, ``images``); dpo_round runs the sample and dpo stages' code with their sections."""
    import importlib

    name = stage.split("@")[0]
    fields = set(importlib.import_module(f"vlmcot.pipeline.{name}").Config.model_fields)
    return name == "dpo_round" or bool(fields & {"root", "image_root", "images"})


@pytest.mark.slow  # a few dvc status/commit rounds over 27 stages
def test_new_images_make_every_stage_that_reads_images_stale(recorded, tmp_path):
    """prepare rerun with images that differ (a new world seed, another image size, a re-downloaded
    dataset) rewrites images.sha256: every stage that reads images goes stale, whatever the JSONL did."""
    repo = tmp_path / "repo"
    shutil.copytree(recorded, repo, symlinks=True)
    (repo / "data/prepared/images.sha256").write_text("0" * 64 + "  data/prepared/images/a.png\n")
    _commit(repo, "prepare")  # stands in for the rerun of prepare
    with contextlib.chdir(repo):
        from dvc.repo import Repo

        with Repo(str(repo)) as r:
            names = {s.name for s in r.index.stages}
    expected = {n for n in names if n != "prepare" and _reads_images(n)}
    assert {"base", "sft@both", "evaluate@dpo", "dpo", "control@rft", "rerank", "credit"} <= expected
    assert _stale(repo) == expected


@pytest.mark.slow
def test_a_hand_edited_image_is_prepares_to_restore(recorded, tmp_path):
    """An image changed by hand changes prepare's output folder: `dvc repro` reruns prepare (which writes
    it back, or a new manifest if the source changed); the later stages wait on the manifest, so one
    folder of thousands of files is checked once per `dvc repro`, not once per stage."""
    repo = tmp_path / "repo"
    shutil.copytree(recorded, repo, symlinks=True)
    (repo / "data/prepared/stand-in.txt").write_text("1\n")
    assert _stale(repo) == {"prepare"}


def test_only_prepare_lists_the_prepared_folder():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listing = [name for name, s in stages.items() if name != "prepare"
               for d in s.get("do", s).get("deps", []) if os.path.normpath(str(d)) == "data/prepared"]
    assert listing == [], "depend on data/prepared/images.sha256 and the JSONL the stage reads instead"


# --- dvc.yaml agrees with rerank.verifiers and credit's models ---------------------------------------------
# DVC templating cannot loop inside a deps list, so each verifier's policy and reference are listed in the
# rerank stage one by one (${rerank.verifiers.<name>.policy}); a verifier added to params.yaml without them
# would rerank with a model whose retraining never makes the stage stale.


def _resolved_deps(tmp: Path, params: dict | None = None) -> dict[str, list[str]]:
    """Each stage's deps as DVC resolves dvc.yaml's templating against ``params`` (default: params.yaml)."""
    import yaml
    from dvc.repo import Repo

    shutil.copy(ROOT / "dvc.yaml", tmp / "dvc.yaml")
    if params is None:
        shutil.copy(ROOT / "params.yaml", tmp / "params.yaml")
    else:
        (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(str(tmp), no_scm=True).close()
    with Repo(str(tmp)) as r:
        return {s.name: [d.def_path for d in s.deps] for s in r.index.stages}


def missing_verifier_deps(params: dict, deps: dict[str, list[str]]) -> list[str]:
    """One line per verifier model (rerank.verifiers.<name>.policy / .reference) the rerank stage does not list."""
    listed = {os.path.normpath(d) for d in deps["rerank"]}
    return [f"rerank.verifiers.{name}.{role}: {path} is not a dep of dvc.yaml's rerank stage; add "
            f"`- ${{rerank.verifiers.{name}.{role}}}` to its deps"
            for name, v in params["rerank"]["verifiers"].items() for role in ("policy", "reference")
            for path in [v[role]] if os.path.normpath(path) not in listed]


def _params() -> dict:
    from vlmcot.config import load_params

    return load_params(ROOT / "params.yaml")


def test_every_rerank_verifier_model_is_a_dep(tmp_path):
    params = _params()
    deps = _resolved_deps(tmp_path)
    assert missing_verifier_deps(params, deps) == []
    assert {"models/dpo", "models/grpo", "models/sft/both"} <= set(deps["rerank"])


def test_a_verifier_added_without_its_deps_is_named(tmp_path):
    """The check above can fail: a round-3 DPO model added as a verifier, params only, is reported by key."""
    params = _params()
    params["rerank"]["verifiers"]["dpo_r3"] = {"policy": "models/dpo_rounds/r3", "reference": "models/dpo_rounds/r2"}
    missing = missing_verifier_deps(params, _resolved_deps(tmp_path, params))
    assert missing == ["rerank.verifiers.dpo_r3.policy: models/dpo_rounds/r3 is not a dep of dvc.yaml's rerank "
                       "stage; add `- ${rerank.verifiers.dpo_r3.policy}` to its deps"]


def test_credit_deps_follow_its_model_params(tmp_path):
    """`dvc exp run -S credit.policy=models/grpo` makes credit depend on the model it then reads."""
    params = _params()
    deps = _resolved_deps(tmp_path)["credit"]
    assert params["credit"]["policy"] in deps and params["credit"]["reference"] in deps
    params["credit"]["policy"] = "models/grpo"
    (tmp_path / "exp").mkdir()
    deps = _resolved_deps(tmp_path / "exp", params)["credit"]
    assert "models/grpo" in deps and "models/dpo" not in deps


def test_the_rerank_plot_draws_the_columns_the_stage_writes():
    """dvc.yaml's rerank plot lists exactly the curve columns the stage writes for params.yaml's verifiers
    (columns computed by the stage's own code on a one-question stand-in)."""
    import yaml

    from vlmcot.config import parse_section
    from vlmcot.pipeline import rerank
    from vlmcot.voting import Question

    cfg = parse_section(rerank.Config, _params()["rerank"], "rerank")
    q = {v: [Question("q", ["1", "2"], [0.0, 1.0], lambda a: a == "1")] for v in cfg.verifiers}
    written = set(rerank.verifier_curves(cfg, q, None))
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    drawn = next(p["metrics/plots/rerank"] for p in plots if isinstance(p, dict) and "metrics/plots/rerank" in p)
    assert set(drawn["y"]) == written, "rerank.verifiers and dvc.yaml's metrics/plots/rerank y columns disagree"
