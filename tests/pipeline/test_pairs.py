import pytest
import yaml

from vlmcot.io import read_json, read_jsonl, write_jsonl
from vlmcot.pipeline import pairs as stage
from vlmcot.prompts import build_prompt
from vlmcot.records import VQARecord
from vlmcot.stage import StageError, main


def _rec(qid, ds):
    return dict(id=qid, image=f"{ds}/{qid}.png", question=f"How many bars in {qid}?", answer="4", dataset=ds,
                qtype="numeric", split="train", metric="relaxed_accuracy")


def _cand(qid, ds, i, ok):
    text = f"I count the bars of {qid}, try {i}.\n\n### Answer: {4 if ok else 10 + i}"
    row = dict(id=qid, sample=i, text=text, extracted="4" if ok else str(10 + i), correct=ok, dataset=ds)
    if i == 3 and not ok:
        del row["extracted"]  # a failed extraction, as write_jsonl writes it (None fields dropped)
    return row


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # MLflow already points at a throwaway sqlite store under tmp (conftest's session fixture): a fresh
    # store per test would cost seconds of schema migrations.
    recs = [_rec("c0", "chart"), _rec("c1", "chart"), _rec("c2", "chart"), _rec("s0", "sci")]
    verdicts = {"c0": "11000000", "c1": "11111111", "c2": "10000000", "s0": "1010"}
    cands = [_cand(q, "sci" if q.startswith("s") else "chart", i, v == "1")
             for q, vs in verdicts.items() for i, v in enumerate(vs)]
    write_jsonl("data/prepared/train.jsonl", recs)
    write_jsonl("data/sample/train/candidates.jsonl", cands)
    return tmp_path


def test_stage_end_to_end(workdir):
    (workdir / "params.yaml").write_text(yaml.safe_dump({"pairs": {"truncate_words": 8, "seed": 1, "low": 0.25, "high": 0.85}}))
    assert main("pairs", "params.yaml") == 0

    pairs = read_jsonl("data/pairs/pairs.jsonl")
    assert [p["id"] for p in pairs] == ["c0-p0", "c0-p1", "c0-p2", "s0-p0", "s0-p1", "s0-p2"]
    rec = VQARecord.model_validate(_rec("c0", "chart"))
    for p in pairs:
        assert len(p["chosen"].split()) <= 8 and len(p["rejected"].split()) <= 8
        assert p["chosen"] != p["rejected"]
    assert pairs[0]["prompt"] == build_prompt(rec, "cot") and pairs[0]["image"] == "chart/c0.png"
    assert pairs[0]["answer"] == "4" and pairs[0]["dataset"] == "chart"

    m = read_json("metrics/pairs.json")
    assert m["chart.questions"] == 3 and m["chart.kept"] == 1 and m["chart.pairs"] == 3
    assert m["chart.dropped.all_correct"] == 1 and m["chart.dropped.below_low"] == 1
    assert m["sci.kept"] == 1 and m["all.pairs"] == 6
    assert m["all.extract_fail_rate"] == pytest.approx(3 / 28, abs=1e-4)  # sample 3 is wrong in c0, c2 and s0
    assert m["all.bad_candidate_rows"] == 0

    csv = (workdir / "metrics/plots/pair_accuracy_hist.csv").read_text().splitlines()
    assert csv[0] == "accuracy,questions,kept" and len(csv) == 1 + 9  # N = 8 samples: 9 bins

    import mlflow

    run = mlflow.search_runs(experiment_names=["vlmcot-tests"], filter_string="tags.stage = 'pairs'",
                             output_format="list")[0]
    assert run.data.metrics["all.pairs"] == 6
    assert run.data.params["truncate_words"] == "8"
    hist = mlflow.MlflowClient().get_metric_history(run.info.run_id, "hist.questions")
    assert sorted(h.step for h in hist) == list(range(9))


def test_stage_is_deterministic(workdir, tracker):
    cfg = stage.Config()
    stage.run(cfg, tracker)
    first = (workdir / cfg.out).read_bytes()
    rows = read_jsonl(cfg.candidates)
    write_jsonl(cfg.candidates, rows[::-1])
    stage.run(cfg, tracker)
    assert (workdir / cfg.out).read_bytes() == first


def test_bad_rows_fail_loudly_past_the_threshold(workdir, tracker):
    rows = read_jsonl("data/sample/train/candidates.jsonl")
    rows[0]["correct"] = "maybe"
    write_jsonl("data/sample/train/candidates.jsonl", rows)
    with pytest.raises(StageError, match="candidates.jsonl:1"):
        stage.run(stage.Config(), tracker)
    stage.run(stage.Config(max_bad_rate=0.1), tracker)  # one bad row of 28 is tolerated when allowed
    assert tracker.metrics["all.bad_candidate_rows"] == 1


def test_config_errors_name_the_key(workdir, capsys):
    (workdir / "params.yaml").write_text(yaml.safe_dump({"pairs": {"low": 0.9, "high": 0.5}}))
    assert main("pairs", "params.yaml") == 2
    assert "pairs.low" in capsys.readouterr().err
    (workdir / "params.yaml").write_text(yaml.safe_dump({"pairs": {"high": 1.5}}))
    assert main("pairs", "params.yaml") == 2
    assert "pairs.high" in capsys.readouterr().err


def test_missing_input_is_a_stage_error(workdir, tracker):
    with pytest.raises(StageError, match="nope.jsonl"):
        stage.run(stage.Config(candidates="nope.jsonl"), tracker)


def test_a_dataset_answered_at_chance_is_warned_about(tmp_path, monkeypatch, tracker, caplog):
    import random

    monkeypatch.chdir(tmp_path)
    rng = random.Random(0)
    recs, cands = [], []
    for i in range(120):  # "sci": every question right with probability 1/4; "chart": half known, half not
        for ds, p in (("sci", 0.25), ("chart", 0.8 if i % 2 else 0.05)):
            qid = f"{ds}{i:03d}"
            recs.append(_rec(qid, ds))
            cands += [_cand(qid, ds, k, rng.random() < p) for k in range(8)]
    write_jsonl("data/prepared/train.jsonl", recs)
    write_jsonl("data/sample/train/candidates.jsonl", cands)
    with caplog.at_level("WARNING", logger="vlmcot.pipeline.pairs"):
        stage.run(stage.Config(low=0.125, high=0.875), tracker)
    warned = [r.getMessage() for r in caplog.records if "guessing" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("sci:")
    assert tracker.metrics["sci.dispersion"] <= tracker.metrics["sci.dispersion_guess_bound"]
