"""Stage `dpo_round` (iterative DPO): a round's sample / pairs / dpo settings are those stages' own params
sections with only the round's model, seed, paths and overrides changed; bad settings fail with the key
named; one run keeps the three steps' metric keys apart; the sampling backend is closed before training.
The end-to-end two-round run (dpo, then dpo_round r2 from it) is in tests/e2e/test_micro_rl.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlmcot.config import ConfigError
from vlmcot.pipeline import dpo_round
from vlmcot.pipeline.dpo_round import Config, PrefixedTracker, RoundConfig, step_configs


def _params(root: Path, **sections) -> str:
    base = {
        "sample": {"items": {"train": {"records": "data/prepared/train.jsonl", "datasets": ["synth_chart"],
                                       "max_per_dataset": 7}},
                   "num_samples": 6, "temperature_short": 0.5, "seed": 0},
        "pairs": {"low": 0.2, "high": 0.8, "max_pairs_per_question": 2, "seed": 0},
        "dpo": {"train": {"beta": 0.3, "learning_rate": 1e-4, "num_train_epochs": 3, "seed": 5}},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    p = root / "params.yaml"
    p.write_text(yaml.safe_dump(base))
    return str(p)


def test_a_round_is_the_three_stages_settings_with_its_model_seed_and_paths(tmp_path):
    params = _params(tmp_path)
    cfg = Config(rounds={"r3": RoundConfig(start_model="models/dpo_rounds/r2", seed=7)},
                 train_overrides={"num_train_epochs": 1})
    s, p, d = step_configs(cfg, "r3", params)
    # sample: the item's questions and every sampling setting as the sample section has them
    assert s.model == "models/dpo_rounds/r2" and s.seed == 7
    assert list(s.items) == ["r3"] and s.items["r3"].datasets == ["synth_chart"] and s.items["r3"].max_per_dataset == 7
    assert (s.num_samples, s.temperature_short) == (6, 0.5)
    assert Path(s.out_dir) / "r3" / "candidates.jsonl" == Path("data/dpo_rounds/r3/candidates.jsonl")
    # pairs: the window and caps of the pairs section, this round's candidates and seed
    assert (p.low, p.high, p.max_pairs_per_question, p.seed) == (0.2, 0.8, 2, 7)
    assert p.candidates == "data/dpo_rounds/r3/candidates.jsonl" and p.out == "data/dpo_rounds/r3/pairs.jsonl"
    assert p.records == "data/prepared/train.jsonl" and p.metrics == "metrics/dpo_rounds/r3/pairs.json"
    # dpo: starts from (and is regularised to) the previous round; dpo's train settings but the override
    assert d.sft_model == "models/dpo_rounds/r2" and d.pairs == p.out and d.out_dir == "models/dpo_rounds/r3"
    assert (d.train.beta, d.train.learning_rate, d.train.seed) == (0.3, 1e-4, 5)
    assert d.train.num_train_epochs == 1
    assert d.checkpoint_dir == "models/checkpoints/dpo_rounds/r3" and d.metrics == "metrics/dpo_rounds/r3/dpo.json"
    # no override: exactly dpo's
    _, _, d0 = step_configs(Config(train_overrides={}), "r2", params)
    assert d0.train.num_train_epochs == 3 and d0.sft_model == "models/dpo"


def test_bad_settings_name_the_key(tmp_path):
    params = _params(tmp_path)
    with pytest.raises(ConfigError, match="no round named 'r9'"):
        step_configs(Config(), "r9", params)
    with pytest.raises(ConfigError, match="pass --item"):
        step_configs(Config(), None, params)
    with pytest.raises(ConfigError, match=r"dpo_round.train_overrides.no_such_key: unknown key"):
        step_configs(Config(train_overrides={"no_such_key": 1}), "r2", params)
    with pytest.raises(ConfigError, match=r"dpo_round.train_overrides.learning_rate: .*got -1"):
        step_configs(Config(train_overrides={"learning_rate": -1}), "r2", params)
    with pytest.raises(ConfigError, match="dpo_round.questions: the sample stage has no item 'tune'"):
        step_configs(Config(questions="tune"), "r2", params)
    with pytest.raises(ConfigError, match="sample.backend vllm"):
        step_configs(Config(), "r2", _params(tmp_path, sample={"backend": "vllm"}))
    with pytest.raises(ValueError, match="rounds is empty"):
        Config(rounds={})
    with pytest.raises(ValueError, match="must be non-empty without"):
        Config(rounds={"a/b": RoundConfig(start_model="m", seed=0)})
    with pytest.raises(ValueError, match="start_model"):
        Config.model_validate({"rounds": {"r2": {"seed": 1}}})


def test_the_committed_params_resolve(monkeypatch):
    """The embedded params.yaml: r2 samples the dpo stage's questions from models/dpo with seed 1."""
    from vlmcot.pipeline import load_config

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    cfg = load_config(dpo_round, "params.yaml")
    s, p, d = step_configs(cfg, "r2", "params.yaml")
    assert s.model == d.sft_model == "models/dpo" and s.seed == p.seed == 1
    assert s.items["r2"] == load_config(__import__("vlmcot.pipeline.sample", fromlist=["x"]), "params.yaml").items["train"]


class _Recorder:
    def __init__(self):
        self.metrics, self.tags, self.run_id = [], {}, "run-1"

    def log_metrics(self, m, step=None):
        self.metrics.append((dict(m), step))

    def set_tags(self, t):
        self.tags.update(t)


def test_prefixed_tracker_keeps_the_steps_apart():
    rec = _Recorder()
    t = PrefixedTracker(rec, "pairs.")
    t.log_metrics({"all.pairs": 3.0}, step=2)
    t.set_tags({"item": "r2"})
    assert rec.metrics == [({"pairs.all.pairs": 3.0}, 2)] and rec.tags == {"item": "r2"} and t.run_id == "run-1"


def test_sample_closes_its_backend(tmp_path, monkeypatch):
    """sample.run stops what its backend started (launched vLLM servers) when it returns - and when it
    fails - so a round's DPO, next in the same process, gets the GPUs."""
    from vlmcot.pipeline import sample

    closed = []

    class Backend:
        def generate(self, requests, cfg):
            raise RuntimeError("boom")

        def close(self):
            closed.append(True)

    helpers = __import__("tests.helpers", fromlist=["x"])
    monkeypatch.chdir(tmp_path)
    helpers.load_module(Path(__file__).resolve().parents[1] / "e2e" / "test_micro_sft.py").make_world(
        tmp_path, n_train=4, n_eval=1)
    monkeypatch.setattr(sample, "make_backend", lambda cfg: Backend())
    cfg = sample.Config(items={"t": sample.ItemConfig(records="data/prepared/train.jsonl", max_per_dataset=1)},
                        out_dir=str(tmp_path / "out"), metrics_dir=str(tmp_path / "m"))
    with pytest.raises(RuntimeError, match="boom"):
        sample.run(cfg, _Recorder(), item="t")
    assert closed == [True]
