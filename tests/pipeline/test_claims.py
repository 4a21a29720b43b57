"""Stage `claims`: from hand-made predictions, pair counts and rerank rows to deltas, intervals and verdicts."""

import json

import pytest

from vlmcot.io import read_json, write_json, write_jsonl
from vlmcot.pipeline.claims import CLAIMS, Config, claims_markdown, compute_claims, run
from vlmcot.stage import StageError

IDS = [(ds, i) for ds in ("da", "db") for i in range(40)]  # da gave DPO pairs, db did not


def _op(i: int) -> str:
    return "sum2" if i % 2 == 0 else "lookup"  # sum2 is compositional, lookup is not


def _write(path, model, score):
    """Prediction rows like the evaluate stage's: score(mode, ds, i) -> 0/1 per question and mode."""
    rows = [{"id": f"{ds}-{i}", "dataset": ds, "op": _op(i), "mode": mode, "score": float(score(mode, ds, i)),
             "extract_ok": True, "model": model} for mode in ("direct", "cot") for ds, i in IDS]
    write_jsonl(path / f"{model}.jsonl", rows, sort_key=None)


def _cfg(tmp_path, **kw) -> Config:
    return Config(predictions_dir=str(tmp_path / "eval"), pairs_metrics=str(tmp_path / "pairs.json"),
                  rerank_per_question=str(tmp_path / "per_question.jsonl"), out_json=str(tmp_path / "claims.json"),
                  out_md=str(tmp_path / "claims.md"), **kw)


@pytest.fixture
def inputs(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    lookup_half = lambda i: i % 4 == 1  # noqa: E731  half of the lookup questions, whoever answers
    # CoT data teaches the compositional ops: the CoT-only model gets every sum2 right under CoT
    _write(ev, "cot", lambda mode, ds, i: (mode == "cot" and _op(i) == "sum2") or lookup_half(i))
    _write(ev, "direct", lambda mode, ds, i: lookup_half(i))
    # the both model: CoT as the CoT-only model; its direct answers are the direct-only model's
    _write(ev, "both", lambda mode, ds, i: (mode == "cot" and _op(i) == "sum2") or lookup_half(i))
    write_json(tmp_path / "pairs.json", {"da.pairs": 30, "all.pairs": 30, "da.questions": 40})
    rows = [{"id": f"{ds}-{i}", "dataset": ds, "n": 8, "majority": float(i % 2), "best_of_n": float(i % 2),
             "weighted": 1.0, "oracle": 1.0} for ds, i in IDS]
    write_jsonl(tmp_path / "per_question.jsonl", rows, sort_key=None)
    return tmp_path


def test_known_effects_identical_arms_and_missing_models(inputs):
    c = compute_claims(_cfg(inputs))
    assert list(c) == [cl.name for cl in CLAIMS]  # every claim listed, in order, measured or not
    helps = c["cot_data_helps_cot"]  # +100 on sum2 (half the questions): +50 points overall
    assert (helps["a"], helps["b"], helps["n"]) == ("CoT(cot)", "CoT(direct)", 80)
    assert helps["delta"] == pytest.approx(50.0) and helps["acc_a"] == pytest.approx(75.0)
    assert helps["ci_low"] > 30 and helps["verdict"] == "supported"
    assert set(helps["per_dataset"]) == {"da", "db"} and helps["per_dataset"]["da"]["n"] == 40
    same = c["both_is_best.cot"]  # CoT(both) and CoT(cot) answer identically
    assert (same["delta"], same["ci_low"], same["ci_high"], same["verdict"]) == (0.0, 0.0, 0.0, "inconclusive")
    comp = c["cot_beats_direct_on_compositional_ops.cot_data"]
    assert comp["ops"] == ["sum2"] and comp["n"] == 40 and comp["delta"] == pytest.approx(100.0)
    assert comp["target"] == 10.0 and comp["meets_target"] is True and comp["verdict"] == "supported"
    assert c["cot_beats_direct_on_compositional_ops.both"]["delta"] == pytest.approx(100.0)
    for name in ("dpo_helps_cot", "dpo_helps_cot.vs_cont_sft", "dpo_helps_cot.vs_rft", "dpo_helps_unpaired_datasets"):
        assert c[name]["verdict"] == "not measured" and "dpo" in c[name]["note"]
    for name in ("grpo_helps_cot", "grpo_helps_cot.vs_rft", "grpo_helps_cot.vs_cont_sft", "grpo_vs_dpo"):
        assert c[name]["verdict"] == "not measured" and "not evaluated: grpo (cot)" in c[name]["note"]
    assert c["grpo_helps_cot"]["target"] == 5.0 and "meets_target" not in c["grpo_helps_cot"]
    for name in ("dpo_round2_helps_cot", "dpo_round2_vs_sft"):
        assert c[name]["verdict"] == "not measured" and "not evaluated: dpo_r2 (cot)" in c[name]["note"]
    for name in ("grpo_weighted_voting_beats_majority", "grpo_best_of_n_beats_majority"):  # no .grpo column
        assert c[name]["verdict"] == "not measured" and ".grpo column" in c[name]["note"]
    assert c["weighted_voting_beats_majority"]["delta"] == pytest.approx(50.0)
    assert c["weighted_voting_beats_majority"]["verdict"] == "supported"
    assert c["best_of_n_beats_majority"]["verdict"] == "inconclusive"  # identical per question
    assert c["best_of_n_beats_majority"]["n_candidates"] == 8


def test_unpaired_datasets_come_from_the_pair_counts(inputs):
    # DPO: better than SFT on the paired dataset only, by 10 questions of 40
    _write(inputs / "eval", "dpo", lambda mode, ds, i: (mode == "cot" and _op(i) == "sum2") or (i % 4 == 1)
           or (ds == "da" and i % 4 == 3 and i < 40))
    for ctl in ("cont_sft", "rft"):
        _write(inputs / "eval", ctl, lambda mode, ds, i: (mode == "cot" and _op(i) == "sum2") or i % 4 == 1)
    c = compute_claims(_cfg(inputs))
    assert c["dpo_helps_cot"]["delta"] == pytest.approx(12.5)  # +25 on da, 0 on db: macro +12.5
    unp = c["dpo_helps_unpaired_datasets"]
    assert unp["datasets"] == ["db"] and unp["n"] == 40 and unp["delta"] == 0.0 and unp["verdict"] == "inconclusive"
    assert list(unp["per_dataset"]) == ["db"]
    assert c["dpo_helps_cot.vs_rft"]["verdict"] == "supported"


def _sft_cot_plus(extra):
    """The SFT (both) model's answers, plus the CoT questions ``extra(ds, i)`` answered right as well."""
    return lambda mode, ds, i: (mode == "cot" and (_op(i) == "sum2" or extra(ds, i))) or i % 4 == 1


def test_grpo_and_dpo_round_claims_have_the_built_in_deltas(inputs):
    # SFT (both) answers 30 of each dataset's 40 CoT questions; the i % 4 == 3 ones are all wrong, and each
    # model below gets the first k of them (i = 3, 7, 11, ...) right on both datasets: +2.5 points per question
    first = lambda k: lambda ds, i: i % 4 == 3 and i < 4 * k  # noqa: E731
    ev = inputs / "eval"
    _write(ev, "grpo", _sft_cot_plus(first(6)))  # +15 over SFT
    _write(ev, "dpo", _sft_cot_plus(first(3)))  # +7.5
    _write(ev, "dpo_r2", _sft_cot_plus(first(4)))  # +10: one question a dataset over round 1
    _write(ev, "rft", _sft_cot_plus(first(2)))  # +5
    _write(ev, "cont_sft", _sft_cot_plus(first(0)))  # SFT's answers
    rows = [{"id": f"{ds}-{i}", "dataset": ds, "n": 8, "majority": float(i % 2), "best_of_n": float(i % 2),
             "weighted": 1.0, "oracle": 1.0,
             "weighted.grpo": float(i % 2 or i < 10),  # + the 5 even i < 10 a dataset: +12.5
             "best_of_n.grpo": float(i % 2 and i > 9)}  # - the 5 odd i < 10 a dataset: -12.5
            for ds, i in IDS]
    write_jsonl(inputs / "per_question.jsonl", rows, sort_key=None)
    cfg = _cfg(inputs)
    c = compute_claims(cfg)
    g = c["grpo_helps_cot"]
    assert (g["a"], g["b"], g["n"]) == ("CoT(grpo)", "CoT(both)", 80)
    assert (g["acc_a"], g["acc_b"], g["delta"]) == (pytest.approx(90.0), pytest.approx(75.0), pytest.approx(15.0))
    assert g["ci_low"] > 5 and g["verdict"] == "supported" and g["target"] == 5.0 and g["meets_target"] is True
    assert {ds: r["delta"] for ds, r in g["per_dataset"].items()} == {"da": pytest.approx(15.0),
                                                                     "db": pytest.approx(15.0)}
    expected = {"grpo_helps_cot.vs_rft": 10.0, "grpo_helps_cot.vs_cont_sft": 15.0, "grpo_vs_dpo": 7.5,
                "dpo_round2_helps_cot": 2.5, "dpo_round2_vs_sft": 10.0}
    assert {k: c[k]["delta"] for k in expected} == pytest.approx(expected)
    assert c["grpo_vs_dpo"]["b"] == "CoT(dpo)" and c["dpo_round2_helps_cot"]["a"] == "CoT(dpo_r2)"
    assert c["dpo_round2_helps_cot"]["verdict"] == "inconclusive"  # 2 questions of 80: the interval reaches 0
    assert c["grpo_helps_cot.vs_rft"]["verdict"] == "supported"
    w, b = c["grpo_weighted_voting_beats_majority"], c["grpo_best_of_n_beats_majority"]
    assert (w["a"], w["b"], w["n_candidates"]) == ("weighted voting (GRPO verifier)", "majority voting", 8)
    assert w["delta"] == pytest.approx(12.5) and w["verdict"] == "supported"
    assert b["delta"] == pytest.approx(-12.5) and b["ci_high"] < 0 and b["verdict"] == "contradicted"
    assert c["weighted_voting_beats_majority"]["delta"] == pytest.approx(50.0)  # the DPO verifier's, unchanged
    md = claims_markdown(c, cfg)
    assert "| grpo_helps_cot | Online RL (GRPO)" in md and "| +15.0 | [+" in md and "(target >= +5: met)" in md
    # a model the role points at that was never evaluated: its claims are listed, not measured
    c = compute_claims(_cfg(inputs, models={**Config().models, "dpo_round": "dpo_r3"}))
    assert c["dpo_round2_vs_sft"]["verdict"] == "not measured" and "dpo_r3 (cot)" in c["dpo_round2_vs_sft"]["note"]
    assert c["grpo_helps_cot"]["verdict"] == "supported"


def test_missing_pairs_and_rerank_files_are_not_measured(inputs):
    (inputs / "pairs.json").unlink()
    (inputs / "per_question.jsonl").unlink()
    _write(inputs / "eval", "dpo", lambda mode, ds, i: 1)
    c = compute_claims(_cfg(inputs))
    assert c["dpo_helps_unpaired_datasets"]["verdict"] == "not measured"
    assert "pairs.json is missing" in c["dpo_helps_unpaired_datasets"]["note"]
    assert c["weighted_voting_beats_majority"]["verdict"] == "not measured"
    assert c["dpo_helps_cot"]["verdict"] == "supported"
    none_comp = compute_claims(_cfg(inputs, compositional_ops=["area"]))  # absent op: skipped, not a crash
    assert none_comp["cot_beats_direct_on_compositional_ops.both"]["verdict"] == "not measured"


def test_run_writes_json_markdown_and_headline(inputs):
    logged = {}

    class Tracker:
        def log_metrics(self, m):
            logged.update(m)

        def log_text(self, text, name):
            logged[name] = text

    cfg = _cfg(inputs)
    run(cfg, Tracker())
    full = read_json(cfg.out_json)
    assert {k for k in full if k in logged} == {k for k, v in full.items() if v["verdict"] != "not measured"}
    assert "dpo_helps_cot" not in logged and logged["cot_data_helps_cot"] == pytest.approx(50.0)
    md = (inputs / "claims.md").read_text()
    assert "| cot_data_helps_cot | Training on CoT data" in md and "| +50.0 | [+" in md and "| supported |" in md
    assert "not measured: not evaluated: dpo (cot)" in md and "(target >= +10: met)" in md
    assert logged["claims.md"] == md
    assert compute_claims(cfg) == full  # deterministic: the seed fixes every interval


def test_a_bad_prediction_row_names_its_file_and_line(inputs):
    with (inputs / "eval" / "cot.jsonl").open("a") as f:
        f.write(json.dumps({"id": "da-0", "mode": "cot"}) + "\n")
    with pytest.raises(StageError, match=r"cot\.jsonl:161: not a prediction row"):
        compute_claims(_cfg(inputs))


def test_unknown_or_missing_roles_are_refused():
    roles = {"direct_only": "direct", "cot_only": "cot", "sft": "both", "dpo": "dpo", "cont_sft": "c", "rft": "r",
             "grpo": "grpo"}
    with pytest.raises(ValueError, match="missing: \\['dpo_round'\\]"):
        Config(models=roles)
    with pytest.raises(ValueError, match="unknown: \\['ppo'\\]"):
        Config(models={**roles, "dpo_round": "dpo_r2", "ppo": "ppo"})
