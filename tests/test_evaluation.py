"""Scoring, flat metric keys and the Table 2 layout, with a scripted backend (no model)."""

from vlmcot.evaluation import evaluate, markdown_table, score_response, summarize
from vlmcot.generation import GenerationConfig, GenOutput
from vlmcot.records import VQARecord


def _recs():
    return [
        VQARecord(id="c1", image="x.png", question="Sum?", answer="12", dataset="synth_chart", qtype="numeric",
                  split="eval", metric="relaxed_accuracy"),
        VQARecord(id="c2", image="x.png", question="Max?", answer="40", dataset="synth_chart", qtype="numeric",
                  split="eval", metric="relaxed_accuracy"),
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
    ("c1", "direct"): "12", ("c2", "direct"): "7", ("s1", "direct"): "B",
    ("c1", "cot"): "5 + 7 = 12.\n\n### Answer: 12", ("c2", "cot"): "The max is 41.", ("s1", "cot"): "### Answer: A",
}


def test_score_response_extracts_then_scores():
    rec = _recs()[0]
    assert score_response(rec, "cot", "so 12.\n\n### Answer: 12.4")["score"] == 1.0  # within 5%
    row = score_response(rec, "cot", "no marker, 12")
    assert (row["extract_ok"], row["extract_reason"], row["score"]) == (False, "no_marker", 0.0)


def test_evaluate_and_summarize_keys():
    backend = ScriptedBackend(ANSWERS)
    rows = evaluate(backend, _recs(), GenerationConfig(), style="paper")
    assert len(rows) == 6 and any("Answer with the option's letter" in p for p in backend.prompts)
    m = summarize(rows, "both")
    assert m["both.direct.synth_chart.relaxed_accuracy"] == 0.5
    assert m["both.direct.synth_sci.mc_accuracy"] == 1.0
    assert m["both.direct.avg"] == 0.75
    assert m["both.cot.synth_chart.relaxed_accuracy"] == 0.5 and m["both.cot.synth_sci.mc_accuracy"] == 0.0
    assert m["both.cot.synth_chart.extract_fail"] == 0.5
    assert abs(m["both.cot.extract_fail"] - 1 / 3) < 1e-9 and m["both.direct.extract_fail"] == 0.0


def test_markdown_table_layout():
    m = {**summarize(evaluate(ScriptedBackend(ANSWERS), _recs(), GenerationConfig()), "both"),
         "format.direct.synth_chart.relaxed_accuracy": 0.25, "format.direct.avg": 0.25}
    md = markdown_table(m, ["format", "both"]).splitlines()
    assert md[0] == "| model | prompt | synth_chart | synth_sci | avg |"
    assert md[2] == "| format | direct | 25.0 | - | 25.0 |"
    assert md[3] == "| both | direct | 50.0 | 100.0 | 75.0 |"
    assert md[4] == "| both | CoT | 50.0 | 0.0 | 25.0 |"
