"""Scoring, flat metric keys and the Table 2 layout, with a scripted backend (no model)."""

import pytest

from vlmcot.evaluation import MODES, evaluate, format_table, markdown_table, score_response, summarize
from vlmcot.generation import GenerationConfig, GenOutput
from vlmcot.records import VQARecord

# evaluate() takes these from the evaluate stage's Config; the tests name the paper's setting
PAPER = dict(modes=MODES, style="paper", scoring="project")


def _recs():
    return [
        VQARecord(id="c1", image="x.png", question="Sum?", answer="12", dataset="synth_chart", qtype="numeric",
                  split="eval", metric="relaxed_accuracy", meta={"op": "sum2"}),
        VQARecord(id="c2", image="x.png", question="Max?", answer="41", dataset="synth_chart", qtype="numeric",
                  split="eval", metric="relaxed_accuracy", meta={"op": "max"}),
        VQARecord(id="s1", image="x.png", question="Which?", choices=["cat", "dog"], answer="B",
                  dataset="synth_sci", qtype="multiple_choice", split="eval", metric="mc_accuracy"),
    ]


class ScriptedBackend:
    """Answers from a table keyed by (id, mode); records which prompts it was given."""

    def __init__(self, answers):
        self.answers, self.prompts = answers, []

    def generate(self, requests, cfg):
        self.prompts += [r.prompt for r in requests]
        mode = "cot" if "reason first" in requests[0].prompt else "direct"
        return [GenOutput(r.id, [self.answers[(r.id, mode)]], [3]) for r in requests]


ANSWERS = {
    ("c1", "direct"): "12", ("c2", "direct"): "7", ("s1", "direct"): "B",  # c2's CoT: right, but no marker
    ("c1", "cot"): "5 + 7 = 12.\n\n### Answer: 12", ("c2", "cot"): "The max is 41.", ("s1", "cot"): "### Answer: A",
}


def test_score_response_extracts_then_scores():
    rec = _recs()[0]
    assert score_response(rec, "cot", "so 12.\n\n### Answer: 12.4", "project")["score"] == 1.0  # within 5%
    row = score_response(rec, "cot", "no marker, 12", "project")
    assert (row["extract_ok"], row["extract_reason"], row["score"]) == (False, "no_marker", 0.0)


def test_evaluate_and_summarize_keys():
    backend = ScriptedBackend(ANSWERS)
    rows = evaluate(backend, _recs(), GenerationConfig(), **PAPER)
    assert len(rows) == 6 and any("Answer with the option's letter" in p for p in backend.prompts)
    m = summarize(rows, "both")
    assert m["both.direct.synth_chart.relaxed_accuracy"] == 0.5
    assert m["both.direct.synth_sci.mc_accuracy"] == 1.0
    assert m["both.direct.avg"] == 0.75
    assert m["both.cot.synth_chart.relaxed_accuracy"] == 0.5 and m["both.cot.synth_sci.mc_accuracy"] == 0.0
    assert m["both.cot.synth_chart.extract_fail"] == 0.5
    assert abs(m["both.cot.extract_fail"] - 1 / 3) < 1e-9 and m["both.direct.extract_fail"] == 0.0


def test_markdown_table_layout():
    m = {**summarize(evaluate(ScriptedBackend(ANSWERS), _recs(), GenerationConfig(), **PAPER), "both"),
         "format.direct.synth_chart.relaxed_accuracy": 0.25, "format.direct.avg": 0.25}
    md = markdown_table(m, ["format", "both"]).splitlines()
    assert md[0] == "| model | prompt | synth_chart | synth_sci | avg |"
    assert md[2] == "| format | direct | 25.0 | - | 25.0 |"
    assert md[3] == "| both | direct | 50.0 | 100.0 | 75.0 |"
    assert md[4] == "| both | CoT | 50.0 | 0.0 | 25.0 |"


def test_rows_carry_op_and_lenient_score():
    rows = {(r["id"], r["mode"]): r for r in evaluate(ScriptedBackend(ANSWERS), _recs(), GenerationConfig(), **PAPER)}
    assert rows[("c1", "cot")]["op"] == "sum2" and rows[("s1", "cot")]["op"] is None  # no meta: null
    no_marker = rows[("c2", "cot")]  # "The max is 41." without ### Answer:
    assert (no_marker["score"], no_marker["lenient_score"]) == (0.0, 0.0)  # last line "The max is 41" != 41
    assert rows[("c1", "cot")]["lenient_score"] == rows[("c1", "cot")]["score"] == 1.0
    rec = _recs()[1]
    row = score_response(rec, "cot", "The max is\n41.", "project")
    assert (row["extract_ok"], row["score"], row["lenient_score"]) == (False, 0.0, 1.0)


def test_summarize_with_bootstrap_adds_intervals_lenient_and_ops():
    from vlmcot.stats import BootstrapConfig

    rows = evaluate(ScriptedBackend(ANSWERS), _recs(), GenerationConfig(), **PAPER)
    plain = summarize(rows, "both")
    m = summarize(rows, "both", BootstrapConfig(n_boot=200))
    assert {k: v for k, v in m.items() if k in plain} == plain  # the existing keys are unchanged
    acc = m["both.direct.synth_chart.relaxed_accuracy"]
    assert m["both.direct.synth_chart.ci_low"] <= acc <= m["both.direct.synth_chart.ci_high"]
    assert m["both.direct.synth_chart.n"] == 2 and m["both.direct.synth_chart.lenient"] == acc
    assert m["both.direct.synth_chart.op.sum2.acc"] == 1.0 and m["both.direct.synth_chart.op.max.acc"] == 0.0
    assert m["both.direct.synth_chart.op.sum2.n"] == 1
    assert not any(".synth_sci.op." in k for k in m)  # records without meta.op give no per-op keys
    assert m["both.direct.avg_ci_low"] <= m["both.direct.avg"] <= m["both.direct.avg_ci_high"]
    assert m["both.cot.lenient_avg"] == pytest.approx(m["both.cot.avg"])
    assert m == summarize(rows, "both", BootstrapConfig(n_boot=200))  # deterministic by seed


def test_tables_show_intervals_and_the_format_view():
    m = {"both.cot.x.relaxed_accuracy": 0.5, "both.cot.x.ci_low": 0.4, "both.cot.x.ci_high": 0.61,
         "both.cot.x.lenient": 0.7, "both.cot.x.extract_fail": 0.25, "both.cot.x.n": 300,
         "both.cot.x.op.sum2.acc": 0.1, "both.cot.x.op.sum2.n": 10,
         "both.cot.avg": 0.5, "both.cot.avg_ci_low": 0.4, "both.cot.avg_ci_high": 0.61, "both.cot.lenient_avg": 0.7,
         "both.cot.extract_fail": 0.25}
    md = markdown_table(m).splitlines()
    assert md[0] == "| model | prompt | x | avg |"  # per-op and stat keys are not dataset columns
    assert md[2] == "| both | CoT | 50.0 [40.0, 61.0] | 50.0 [40.0, 61.0] |"
    assert format_table(m).splitlines()[2] == "| both | CoT | 70.0 (fail 25.0) | 70.0 (fail 25.0) |"
