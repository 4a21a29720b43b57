"""Every prompt the pipeline writes, defined once and registered by name.

Three families live here, all pure functions of a :class:`~vlmcot.records.VQARecord`:

- the *student* prompt (the human turn of an SFT row, the sampling and evaluation prompt):
  :func:`build_prompt` with a named style from :data:`PROMPT_STYLES` ("paper" for training and the
  paper's evaluation, "vlmevalkit" to reproduce VLMEvalKit's layouts per benchmark);
- the *student* response layout: :func:`format_response` (``<rationale>\\n\\n### Answer: X``);
- the *teacher* request used for distillation: :func:`teacher_messages`, a system prompt with the
  paper's per-dataset answer rules plus a user turn that gives the annotated answer to explain.

Prompts never contain the ``<image>`` token: the SFT/eval code places it (LLaVA convention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from vlmcot.answers import split_response
from vlmcot.records import LETTERS, VQARecord

Mode = Literal["direct", "cot"]

# The answer marker the paper uses in every CoT response [paper 3.2]; answers.py parses it.
ANSWER_MARKER = "### Answer:"

# The paper's four instructions [paper 3.2], verbatim plus a closing period as in the released data.
DIRECT_SHORT = "Answer the question with a short answer."
DIRECT_MC = "Answer with the option's letter from the given choices directly."
COT_SHORT = "Generate a reason first and then output a short answer."
COT_MC = "Generate a reason first and then output a letter answer."

# The image-description instruction [ours]: the human turn of the mixes' "general" rows (the paper's
# small instruction set) and of the embedded base model's pretraining rows and reading probe.
GENERAL_PROMPT = "Describe the image in detail."

# VLMEvalKit's suffix for VQA sets (ImageVQADataset.build_prompt) and its MCQ closing line
# (ImageMCQDataset.build_prompt; the trailing " \n" is theirs).
VLMEVALKIT_SHORT = "Answer the question using a single word or phrase."
VLMEVALKIT_MC = "Please select the correct answer from the options above. \n"

_IMAGE_TOKEN = "<image>"


def _is_mc(record: VQARecord) -> bool:
    return record.qtype == "multiple_choice" and bool(record.choices)


def _question(record: VQARecord) -> str:
    # Released LLaVA rows sometimes carry the token inside the question; the caller adds it once.
    return record.question.replace(_IMAGE_TOKEN, "").strip()


def _hint(record: VQARecord) -> str:
    """ScienceQA-style context (VLMEvalKit 'hint' column), carried in ``record.meta['hint']``."""
    hint = (record.meta or {}).get("hint")
    return hint.strip() if isinstance(hint, str) else ""


def format_options(choices: list[str]) -> str:
    """``A. text\\nB. text...`` (no leading or trailing newline)."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} choices: at most {len(LETTERS)} option letters exist")
    return "\n".join(f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(choices))


# ---------------------------------------------------------------------------------------------
# Prompt styles: (record, mode) -> human-turn text. Register new ones with @register_style.
# ---------------------------------------------------------------------------------------------
PromptStyle = Callable[[VQARecord, Mode], str]
PROMPT_STYLES: dict[str, PromptStyle] = {}


def register_style(name: str) -> Callable[[PromptStyle], PromptStyle]:
    def deco(fn: PromptStyle) -> PromptStyle:
        if name in PROMPT_STYLES:
            raise ValueError(f"prompt style {name!r} registered twice")
        PROMPT_STYLES[name] = fn
        return fn

    return deco


@register_style("paper")
def _paper_style(record: VQARecord, mode: Mode) -> str:
    """The paper's training/eval layout: question, options, then the instruction on its own line.

    A non-empty hint is prefixed as ``Context: ...`` (lmms-eval's ScienceQA layout) [inferred].
    """
    parts = []
    hint = _hint(record)
    if hint:
        parts.append(f"Context: {hint}")
    parts.append(_question(record))
    if _is_mc(record):
        parts.append(format_options(record.choices))
        parts.append(COT_MC if mode == "cot" else DIRECT_MC)
    else:
        parts.append(COT_SHORT if mode == "cot" else DIRECT_SHORT)
    return "\n".join(parts)


@register_style("vlmevalkit")
def _vlmevalkit_style(record: VQARecord, mode: Mode) -> str:
    """VLMEvalKit's layouts, so numbers are comparable with its leaderboards.

    VQA: question + "\\nAnswer the question using a single word or phrase.".
    MCQ: "Hint: ...\\nQuestion: ...\\nOptions:\\nA. ...\\nPlease select the correct answer from the
    options above. \\n". VLMEvalKit has no CoT variant: for ``mode="cot"`` the closing instruction
    is replaced by the paper's CoT instruction, everything else kept.
    """
    if _is_mc(record):
        text = ""
        hint = _hint(record)
        if hint:
            text += f"Hint: {hint}\n"
        text += f"Question: {_question(record)}\n"
        text += "Options:\n" + "".join(
            f"{LETTERS[i]}. {str(c).strip()}\n" for i, c in enumerate(record.choices)
        )
        return text + (COT_MC if mode == "cot" else VLMEVALKIT_MC)
    return f"{_question(record)}\n{COT_SHORT if mode == 'cot' else VLMEVALKIT_SHORT}"


def build_prompt(record: VQARecord, mode: Mode, style: str = "paper") -> str:
    """The human-turn text (no ``<image>`` token) for ``record`` under ``mode`` and ``style``."""
    if mode not in ("direct", "cot"):
        raise ValueError(f"record {record.id}: prompt mode must be 'direct' or 'cot', got {mode!r}")
    try:
        fn = PROMPT_STYLES[style]
    except KeyError:
        raise ValueError(
            f"unknown prompt style {style!r}; registered: {', '.join(sorted(PROMPT_STYLES))}"
        ) from None
    if record.qtype == "multiple_choice" and not record.choices:
        raise ValueError(f"record {record.id}: multiple-choice record has no choices")
    return fn(record, mode)


def format_response(rationale: str | None, answer: str) -> str:
    """The assistant turn: CoT ``"<rationale>\\n\\n### Answer: <answer>"``; direct (None) the answer.

    A rationale that already carries an answer marker (a whole teacher reply) keeps only the text
    before its last marker, so the turn ends in exactly one ``### Answer:`` line with ``answer``
    (the annotation the filter matched it against) [ours: canonical answers, e.g. '12' not '12.0'].
    """
    answer = answer.strip()
    if not answer:
        raise ValueError("empty answer: a response must end in an answer")
    if rationale is None:
        return answer
    before, _ = split_response(rationale)
    if before is not None:
        rationale = before
    rationale = rationale.rstrip()
    if not rationale.strip():
        raise ValueError("empty rationale: pass None for a direct response")
    return f"{rationale}\n\n{ANSWER_MARKER} {answer}"


# ---------------------------------------------------------------------------------------------
# Teacher (distillation) prompt
# ---------------------------------------------------------------------------------------------

# The paper's appendix prompt for GPT-4o CoT, reconstructed from its description [paper, wording
# inferred]: rationale first with detailed visual elements, then the answer after the marker.
TEACHER_SYSTEM = (
    "You are an expert in visual question answering. Given an image and a question about it, "
    "first write a rationale that reasons step by step toward the answer, then derive the answer. "
    "The rationale should include the detailed visual elements it relies on (text, numbers, "
    "labels, objects, positions, colors) and any calculation needed.\n"
    "Output format:\n"
    "<rationale>\n\n"
    f"{ANSWER_MARKER} <answer>"
)

# Per-dataset answer rules [paper appendix B]; 'math' and 'default' are ours.
TEACHER_RULES: dict[str, str] = {
    "chartqa": "The answer is a single number or a word/short phrase. Do not include any units "
    "and do not use the '%' sign.",
    "docvqa": "The answer must be a single word or phrase, copied exactly as it appears in the "
    "document.",
    "textvqa": "The answer must be a single word or short phrase, in lower case.",
    "mc": "This is a multiple-choice question: the answer must be the letter of the correct "
    "option only.",
    "math": "If options are given, the answer must be the letter of the correct option only; "
    "otherwise give only the final number or expression, without units.",
    "default": "The answer must be a single word or short phrase.",
}

# dataset name -> rule key. Names not listed fall back to 'default' (MC records always use 'mc').
DATASET_RULES: dict[str, str] = {
    "chartqa": "chartqa",
    "docvqa": "docvqa",
    "infovqa": "docvqa",
    "textvqa": "textvqa",
    "aokvqa": "mc",
    "ai2d": "mc",
    "sqa": "mc",
    "mathvision": "math",
    "gllava": "math",
    "synth_chart": "chartqa",
    "synth_doc": "docvqa",
    "synth_sign": "textvqa",
    "synth_geo": "math",
    "synth_sci": "mc",
}


def rule_key_for(name: str) -> str:
    """Resolve a rule key or a dataset name (case-insensitive) to a key of :data:`TEACHER_RULES`."""
    key = name.strip().lower()
    if key in TEACHER_RULES:
        return key
    return DATASET_RULES.get(key, "default")


def teacher_system_prompt(rule_key: str) -> str:
    return f"{TEACHER_SYSTEM}\n\nAnswer rule: {TEACHER_RULES[rule_key_for(rule_key)]}"


def teacher_messages(record: VQARecord, dataset_rule_key: str | None = None) -> tuple[str, str]:
    """(system, user_text) asking the teacher to explain toward the annotated answer.

    ``dataset_rule_key`` is a rule key or a dataset name; None uses ``record.dataset``. A
    multiple-choice record always gets the letter rule ('mc', or 'math' which includes it).
    """
    key = rule_key_for(dataset_rule_key or record.dataset)
    mc = _is_mc(record)
    if mc and key not in ("mc", "math"):
        key = "mc"
    if not mc and key == "mc":
        key = "default"
    lines = []
    hint = _hint(record)
    if hint:
        lines.append(f"Context: {hint}")
    lines.append(f"Question: {_question(record)}")
    answer = record.answer.strip()
    if mc:
        lines.append("Options:\n" + format_options(record.choices))
        idx = LETTERS.find(answer) if len(answer) == 1 else -1
        if 0 <= idx < len(record.choices):
            answer = f"{answer}. {str(record.choices[idx]).strip()}"
    lines.append(f"The annotated short answer is: {answer}")
    lines.append(
        "Write a rationale grounded in the image that leads to this answer, without mentioning "
        f"that the answer was given, then finish with '{ANSWER_MARKER} <answer>'."
    )
    return teacher_system_prompt(key), "\n".join(lines)
