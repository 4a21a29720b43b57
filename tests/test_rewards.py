"""The GRPO rewards score exactly as evaluation does: the dataset's metric on the answer after the last
``### Answer:``, one function for both (vlmcot.evaluation.score_response), on the tricky cases of every
metric; the format term and the TRL calling convention."""

from __future__ import annotations

import pytest

from vlmcot.evaluation import score_response
from vlmcot.records import VQARecord
from vlmcot.rewards import AnswerReward, FormatReward, completion_text, reward_functions


def rec(metric: str, answer: str, answers=None, choices=None, qtype="short", rid="q"):
    return VQARecord(id=rid, image="x.png", question="?", answer=answer, answers=answers, choices=choices,
                     dataset="d", qtype=qtype, split="train", metric=metric)


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


CASES = [
    # relaxed accuracy: numbers within 5% relative, else case-insensitive string equality
    ("relaxed_accuracy", dict(answer="20"), "The bars add up.\n### Answer: 20.9", 1.0),  # 4.5% off
    ("relaxed_accuracy", dict(answer="20"), "### Answer: 21.5", 0.0),  # 7.5% off
    ("relaxed_accuracy", dict(answer="20"), "### Answer: 20.", 1.0),  # trailing period cleaned
    ("relaxed_accuracy", dict(answer="0"), "### Answer: 0.01", 0.0),  # zero target: string equality
    ("relaxed_accuracy", dict(answer="Oak"), "### Answer: **oak**", 1.0),  # markdown + case
    ("relaxed_accuracy", dict(answer="20"), "The answer is 20", 0.0),  # no marker: strict 0
    # the LAST marker counts, and only the first line after it
    ("relaxed_accuracy", dict(answer="7"), "### Answer: 3\nwait.\n### Answer: 7\nbecause 3+4", 1.0),
    ("relaxed_accuracy", dict(answer="7"), "### Answer: 7\n### Answer: 3", 0.0),
    ("relaxed_accuracy", dict(answer="7"), "### Answer:   \n", 0.0),  # empty after the marker
    ("relaxed_accuracy", dict(answer="7"), "## answer : 7", 1.0),  # marker variants models drift to
    # ANLS: 1 - normalised edit distance, 0 below 0.5 (0.5 counts)
    ("anls", dict(answer="Paris"), "### Answer: paris", 1.0),
    ("anls", dict(answer="receipt"), "### Answer: reciept", pytest.approx(1 - 2 / 7)),
    ("anls", dict(answer="abcd"), "### Answer: abxy", 0.5),
    ("anls", dict(answer="abcd"), "### Answer: axyz", 0.0),
    ("anls", dict(answer="x", answers=["total", "TOTAL $"]), "### Answer: total", 1.0),  # best over answers
    # VQA accuracy: min(1, matches / 3) with < 10 answers; leave-one-out mean with >= 10
    ("vqa_accuracy", dict(answer="two", answers=["2"]), "### Answer: two", pytest.approx(1 / 3)),
    ("vqa_accuracy", dict(answer="2", answers=["2", "2", "2"]), "### Answer: Two.", 1.0),
    ("vqa_accuracy", dict(answer="red", answers=["red"] * 2 + ["blue"] * 8), "### Answer: red",
     pytest.approx((2 * min(1, 1 / 3) + 8 * min(1, 2 / 3)) / 10)),
    ("vqa_accuracy", dict(answer="red", answers=["red"]), "### Answer: the red", pytest.approx(1 / 3)),  # article
    # option letter: a letter, "(B)", the leading-letter format or the option text
    ("mc_accuracy", dict(answer="B", choices=["lynx", "wolf", "bear"], qtype="multiple_choice"),
     "### Answer: B", 1.0),
    ("mc_accuracy", dict(answer="B", choices=["lynx", "wolf", "bear"], qtype="multiple_choice"),
     "### Answer: (B)", 1.0),
    ("mc_accuracy", dict(answer="B", choices=["lynx", "wolf", "bear"], qtype="multiple_choice"),
     "### Answer: B. wolf", 1.0),
    ("mc_accuracy", dict(answer="B", choices=["lynx", "wolf", "bear"], qtype="multiple_choice"),
     "### Answer: wolf", 1.0),
    ("mc_accuracy", dict(answer="B", choices=["lynx", "wolf", "bear"], qtype="multiple_choice"),
     "### Answer: A", 0.0),
    ("mc_accuracy", dict(answer="B", choices=["lynx", "wolf", "bear"], qtype="multiple_choice"),
     "B is what the picture shows", 0.0),  # no marker
]


@pytest.mark.parametrize(("metric", "kw", "text", "expected"), CASES)
def test_answer_reward_is_the_evaluation_score(metric, kw, text, expected):
    r = rec(metric, **kw)
    reward = AnswerReward({r.id: r})
    got = reward(completions=[conv(text)], id=[r.id])
    assert got == [expected]
    assert got[0] == score_response(r, "cot", text, "project")["score"]  # one definition, not two


def test_vlmevalkit_scoring_is_evaluations_too():
    r = rec("relaxed_accuracy", "20")
    text = "### Answer: 20.9"
    got = AnswerReward({"q": r}, scoring="vlmevalkit")(completions=[text], id=["q"])
    assert got == [score_response(r, "cot", text, "vlmevalkit")["score"]]
    with pytest.raises(ValueError, match="scoring"):
        AnswerReward({}, scoring="bleu")


def test_trl_call_convention_rows_map_to_their_records():
    a, b = rec("relaxed_accuracy", "3", rid="a"), rec("relaxed_accuracy", "5", rid="b")
    reward = AnswerReward({"a": a, "b": b})
    # TRL passes every dataset column as a list beside prompts/completions/completion_ids and its own kwargs
    out = reward(prompts=[[]] * 4, completions=[conv("### Answer: 3"), conv("### Answer: 5")] * 2,
                 completion_ids=[[1]] * 4, id=["a", "a", "b", "b"], dataset=["d"] * 4, trainer_state=None,
                 log_extra=None, log_metric=None)
    assert out == [1.0, 0.0, 0.0, 1.0]


def test_format_reward_and_missing_marker():
    f = FormatReward()
    assert f(completions=["I think 3.\n### Answer: 3", "I think 3.", "### Answer:", conv("###Answer: B")]) == [
        1.0, 0.0, 0.0, 1.0]


def test_completion_text_handles_strings_messages_and_blocks():
    assert completion_text("x") == "x"
    assert completion_text(conv("### Answer: 1")) == "### Answer: 1"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                               {"type": "text", "text": "b"}]}]) == "ab"


def test_reward_functions_weights():
    r = rec("relaxed_accuracy", "3")
    funcs, weights = reward_functions({"q": r}, format_weight=0.0)
    assert [f.__name__ for f in funcs] == ["answer"] and weights == [1.0]
    funcs, weights = reward_functions({"q": r}, format_weight=0.2)
    assert [f.__name__ for f in funcs] == ["answer", "format"] and weights == [1.0, 0.2]
