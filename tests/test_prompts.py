import pytest

from vlmcot.answers import extract_answer
from vlmcot.prompts import (
    ANSWER_MARKER,
    DATASET_RULES,
    PROMPT_STYLES,
    TEACHER_RULES,
    build_prompt,
    format_response,
    register_style,
    rule_key_for,
    teacher_messages,
)
from vlmcot.records import VQARecord


def rec(**kw) -> VQARecord:
    base = dict(id="r1", image="img.png", question="What is the value of Q3?", answer="42",
                dataset="chartqa", qtype="numeric", split="train", metric="relaxed_accuracy")
    base.update(kw)
    return VQARecord(**base)


def mc(**kw) -> VQARecord:
    base = dict(question="Which animal is shown?", answer="B", choices=["Felis catus", "Lynx pardinus"],
                dataset="aokvqa", qtype="multiple_choice", metric="mc_accuracy")
    base.update(kw)
    return rec(**base)


def test_paper_style_short_answer_both_modes():
    assert build_prompt(rec(), "direct") == "What is the value of Q3?\nAnswer the question with a short answer."
    assert build_prompt(rec(), "cot") == (
        "What is the value of Q3?\nGenerate a reason first and then output a short answer.")


def test_paper_style_multiple_choice_lists_options_then_instruction():
    assert build_prompt(mc(), "direct") == (
        "Which animal is shown?\nA. Felis catus\nB. Lynx pardinus\n"
        "Answer with the option's letter from the given choices directly.")
    assert build_prompt(mc(), "cot").endswith(
        "B. Lynx pardinus\nGenerate a reason first and then output a letter answer.")


def test_image_token_is_never_in_the_prompt():
    p = build_prompt(rec(question="<image>\nHow many bars?"), "direct")
    assert "<image>" not in p and p.startswith("How many bars?")


def test_hint_becomes_context_in_paper_style_and_hint_in_vlmevalkit_style():
    r = mc(meta={"hint": "Lynxes live in Spain."})
    assert build_prompt(r, "direct").startswith("Context: Lynxes live in Spain.\nWhich animal")
    assert build_prompt(r, "direct", style="vlmevalkit") == (
        "Hint: Lynxes live in Spain.\nQuestion: Which animal is shown?\nOptions:\nA. Felis catus\n"
        "B. Lynx pardinus\nPlease select the correct answer from the options above. \n")


def test_vlmevalkit_style_short_and_cot():
    assert build_prompt(rec(), "direct", style="vlmevalkit") == (
        "What is the value of Q3?\nAnswer the question using a single word or phrase.")
    assert build_prompt(rec(), "cot", style="vlmevalkit").endswith("output a short answer.")
    assert build_prompt(mc(), "cot", style="vlmevalkit").endswith(
        "B. Lynx pardinus\nGenerate a reason first and then output a letter answer.")


def test_unknown_style_and_mode_are_clear_errors():
    with pytest.raises(ValueError, match="unknown prompt style 'nope'.*paper"):
        build_prompt(rec(), "direct", style="nope")
    with pytest.raises(ValueError, match="record r1: prompt mode"):
        build_prompt(rec(), "think")  # type: ignore[arg-type]


def test_styles_are_a_registry():
    assert {"paper", "vlmevalkit"} <= set(PROMPT_STYLES)
    with pytest.raises(ValueError, match="registered twice"):
        register_style("paper")(lambda r, m: "")


def test_format_response_round_trips_through_extraction():
    text = format_response("The bar for Q3 reaches 42.  \n", "42")
    assert text == f"The bar for Q3 reaches 42.\n\n{ANSWER_MARKER} 42"
    assert extract_answer(text).answer == "42"
    assert format_response(None, " B. Lynx pardinus ") == "B. Lynx pardinus"
    with pytest.raises(ValueError, match="empty rationale"):
        format_response("  ", "42")
    with pytest.raises(ValueError, match="empty answer"):
        format_response("Because.", " ")


def test_format_response_replaces_a_teacher_replys_own_answer_line():
    teacher = "The bar reaches 12.\n\n### Answer: 12.0"
    assert format_response(teacher, "12") == "The bar reaches 12.\n\n### Answer: 12"
    assert format_response("Hmm ### Answer: 3\nNo, it is 4.\n### answer: 4", "4") == (
        "Hmm ### Answer: 3\nNo, it is 4.\n\n### Answer: 4")
    with pytest.raises(ValueError, match="empty rationale"):
        format_response("### Answer: 12", "12")


def test_teacher_messages_carry_rule_question_options_and_annotated_answer():
    system, user = teacher_messages(rec())
    assert "### Answer: <answer>" in system and "detailed visual elements" in system
    assert "no units" in system.lower() or "not include any units" in system
    assert "'%'" in system
    assert "Question: What is the value of Q3?" in user
    assert "The annotated short answer is: 42" in user
    system, user = teacher_messages(mc())
    assert TEACHER_RULES["mc"] in system
    assert "A. Felis catus\nB. Lynx pardinus" in user
    assert "The annotated short answer is: B. Lynx pardinus" in user


@pytest.mark.parametrize("dataset,rule", [
    ("chartqa", "chartqa"), ("docvqa", "docvqa"), ("infovqa", "docvqa"), ("textvqa", "textvqa"),
    ("synth_chart", "chartqa"), ("synth_doc", "docvqa"), ("synth_sign", "textvqa"),
    ("synth_geo", "math"), ("mathvision", "math"), ("gllava", "math"), ("SomethingNew", "default"),
])
def test_dataset_to_rule_mapping(dataset, rule):
    assert rule_key_for(dataset) == rule
    system, _ = teacher_messages(rec(dataset=dataset))
    assert TEACHER_RULES[rule] in system


def test_rule_follows_question_type():
    # An MC record from a short-answer dataset gets the letter rule; a short record from an MC
    # dataset does not.
    assert TEACHER_RULES["mc"] in teacher_messages(mc(dataset="textvqa"))[0]
    assert TEACHER_RULES["default"] in teacher_messages(rec(dataset="aokvqa"))[0]
    # An explicit rule key overrides the record's dataset.
    assert TEACHER_RULES["textvqa"] in teacher_messages(rec(), "textvqa")[0]
    assert set(DATASET_RULES.values()) <= set(TEACHER_RULES)


def test_lower_case_and_copy_rules_present():
    assert "lower case" in TEACHER_RULES["textvqa"]
    assert "copied" in TEACHER_RULES["docvqa"]
