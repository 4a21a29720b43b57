"""evaluate.scoring: vlmevalkit and evaluate.judge, end to end through evaluation.evaluate, with the
judge behind the local chat-completions server (tests/teacher/server.py) on 127.0.0.1."""

from __future__ import annotations

import re

import pytest

from tests.teacher.helpers import fast_openai
from tests.teacher.server import FakeChatServer
from vlmcot.evaluation import evaluate, summarize
from vlmcot.generation import GenerationConfig, GenOutput
from vlmcot.judge import Judge, JudgeConfig, judge_prompt
from vlmcot.pipeline.evaluate import Config
from vlmcot.records import VQARecord


def _recs():
    base = dict(image="x.png", split="eval")
    return [
        # MathVista free form, integer: "fourteen" fails the prefetch -> judge
        VQARecord(id="mv1", question="Which number is missing?", answer="14", dataset="mathvista", qtype="numeric",
                  metric="mathvista", meta={"answer_type": "integer", "question_type": "free_form",
                                            "query": "Hint: integer\nQuestion: Which number is missing?"}, **base),
        # MathVista free form, prefetch succeeds: never sent
        VQARecord(id="mv2", question="How many?", answer="3", dataset="mathvista", qtype="numeric",
                  metric="mathvista", meta={"answer_type": "integer", "question_type": "free_form"}, **base),
        # MMMU multiple choice: "the second one" is not inferable -> judge answers B
        VQARecord(id="mm1", question="Which animal?", answer="B", choices=["cat", "dog", "bird"], dataset="mmmu",
                  qtype="multiple_choice", metric="mc_accuracy", **base),
        # DocVQA: never judged
        VQARecord(id="d1", question="Title?", answer="Report", answers=["Report"], dataset="docvqa",
                  qtype="short", metric="anls", **base),
    ]


class Backend:
    TEXT = {"mv1": "fourteen", "mv2": "3", "mm1": "the second one", "d1": "report"}

    def generate(self, requests, cfg):
        return [GenOutput(r.id, [self.TEXT[r.id]], [2]) for r in requests]


def _reply(question: str) -> dict:
    if "Model respone: fourteen" in question:
        return {"text": " 14"}
    if "Answer: the second one" in question:
        return {"text": "B"}
    return {"text": "Z"}


def test_scoring_vlmevalkit_keys_without_judge():
    rows = evaluate(Backend(), _recs(), GenerationConfig(), modes=["direct"], style="paper", scoring="vlmevalkit")
    m = summarize(rows, "both")
    assert m["both.direct.docvqa.vlmevalkit_anls"] == 1.0
    assert m["both.direct.mathvista.vlmevalkit_mathvista"] == 0.5  # "fourteen" is not an int
    assert m["both.direct.mmmu.vlmevalkit_mc_accuracy"] == 0.0
    doc = next(r for r in rows if r["id"] == "d1")
    assert (doc["metric"], doc["project_metric"], doc["project_score"]) == ("vlmevalkit_anls", "anls", 1.0)
    assert not any(k.endswith(".anls") for k in m)  # the project's score stays in the rows only


def test_judge_extracts_only_where_rules_fail(monkeypatch):
    monkeypatch.setenv("VLMCOT_TEST_KEY", "sk-test-judge-0000")
    with FakeChatServer(reply_fn=_reply) as srv:
        judge = Judge(JudgeConfig(**fast_openai(srv.base_url, model="gpt-4o-mini", max_tokens=16)))
        rows = evaluate(Backend(), _recs(), GenerationConfig(), modes=["direct"], style="paper", scoring="vlmevalkit", judge=judge)
        assert srv.total == 2  # mv1 and mm1 only
        sent = list(srv.by_question)
    by = {r["id"]: r for r in rows}
    assert by["mv1"]["judge"] == "14" and by["mv1"]["score"] == 1.0
    assert by["mm1"]["judge"] == "B" and by["mm1"]["score"] == 1.0
    assert "judge" not in by["mv2"] and "judge" not in by["d1"]
    assert judge.calls == 2 and judge.failures == 0
    # VLMEvalKit's prompts: MathVista's in-context examples with the benchmark query, the MCQ matcher
    assert any("Extracted answer: [2007, 2008]" in q and "Hint: integer" in q for q in sent)
    assert any(re.search(r"Options: There are several options: \nA\. cat\nB\. dog\nC\. bird\n\nAnswer: the second one", q) for q in sent)
    # the key never reaches the rows
    assert "sk-test" not in repr(rows)


def test_judge_failure_keeps_rule_result(monkeypatch):
    monkeypatch.setenv("VLMCOT_TEST_KEY", "x")
    with FakeChatServer(reply_fn=_reply, faults=["500"] * 20) as srv:
        judge = Judge(JudgeConfig(**fast_openai(srv.base_url, max_retries=1)))
        rows = evaluate(Backend(), _recs(), GenerationConfig(), modes=["direct"], style="paper", scoring="vlmevalkit", judge=judge)
    by = {r["id"]: r for r in rows}
    assert by["mv1"]["judge"] is None and by["mv1"]["score"] == 0.0
    assert judge.failures == 2


def test_judge_prompt_for_mmmu_open_question():
    rec = VQARecord(id="o", image="x.png", question="Length?", answer="3.5 m", dataset="mmmu", qtype="short",
                    split="eval", metric="exact_match")
    assert "options: \nA. 3.5 m\nB. Other Answers\n" in judge_prompt(rec, "about three and a half")


def test_config_judge_section_and_unknown_keys():
    cfg = Config(judge={"backend": "openai", "model": "gpt-4o-mini"}, scoring="vlmevalkit")
    assert cfg.judge.datasets == ["mathvista", "mmmu"] and cfg.judge.max_tokens == 64
    with pytest.raises(ValueError):
        Config(judge={"backend": "openai", "modle": "x"})
    with pytest.raises(ValueError):
        Config(scoring="vlmeval")


def test_fatal_judge_error_stops_the_stage_cleanly(monkeypatch, tmp_path):
    from tests.conftest import FakeTracker
    from vlmcot.io import write_jsonl
    from vlmcot.pipeline import evaluate as stage
    from vlmcot.stage import StageError

    monkeypatch.delenv("VLMCOT_TEST_KEY", raising=False)  # no key: FatalTeacherError on the first call
    write_jsonl(tmp_path / "eval.jsonl", [r.model_dump(mode="json") for r in _recs()], sort_key="id")
    cfg = Config(records=str(tmp_path / "eval.jsonl"), models={"m": "models/x"}, modes=["direct"],
                 predictions_dir=str(tmp_path / "p"), metrics_dir=str(tmp_path / "m"), scoring="vlmevalkit",
                 judge=fast_openai("http://127.0.0.1:9/v1"))
    monkeypatch.setattr("vlmcot.models.load_model_and_processor", lambda *a, **k: (None, None))
    monkeypatch.setattr("vlmcot.generation.HFBackend", lambda *a, **k: Backend())
    with pytest.raises(StageError, match="evaluate.judge: environment variable VLMCOT_TEST_KEY is not set"):
        stage.run(cfg, FakeTracker(), "m")


@pytest.mark.parametrize("pred", ["The answer is fourteen.", "", "B) dog\nbecause", "3.5 m"])
def test_judge_prompts_equal_upstream(pred):
    from tests.vendor.vlmevalkit import upstream as up
    from vlmcot.judge import mathvista_prompt, mcq_prompt

    mv = _recs()[0]
    assert mathvista_prompt(mv, pred) == up.build_mathvista_gpt4_prompt(
        {"question": mv.meta["query"], "prediction": pred})
    mm = _recs()[2]
    options = up.build_option_str({"A": "cat", "B": "dog", "C": "bird"})
    assert mcq_prompt(mm, pred) == up.build_prompt(mm.question, options, pred)
    open_q = VQARecord(id="o", image="x.png", question="Length?", answer="3.5 m", dataset="mmmu", qtype="short",
                       split="eval", metric="exact_match")
    assert mcq_prompt(open_q, pred) == up.build_prompt(
        "Length?", up.build_option_str({"A": "3.5 m", "B": "Other Answers"}), pred)
