"""VLMEvalKit's scoring, reproduced exactly (``evaluate.scoring: vlmevalkit``), so numbers are
comparable with published ones (the paper: "we follow the evaluation protocols outlined in VLMEval").

Reference: open-compass/VLMEvalKit at commit e8e78f05f3080fe28154f2130321f17951c3be94 (2026-08-18).
The upstream functions are vendored, with their Apache-2.0 license, in tests/vendor/vlmevalkit/, and
tests/test_vlmevalkit_scoring.py checks that every function here returns exactly what upstream's
does on generated and hand-picked inputs. Where upstream has a quirk, it is kept and named:

- ANLS (DocVQA, InfoVQA; vqa_eval.anls_compute + hit_calculate): both strings lower-cased and
  whitespace-collapsed for the edit distance, which is divided by the longer RAW string (its
  ``.upper()`` length, so "ß" counts 2); 1 - min distance, 0 below 0.5.
- VQA score (TextVQA; process_line 'vqa_score'): ``process_answer`` with upstream's CURRENT period
  rule ``(?<!\\d)\\.(?!\\d)`` ("3." keeps its period); each ground truth scores min(1, matches among
  the OTHER answers / 3); the mean over all of them, for any number of answers (one answer: 0).
- Relaxed accuracy (ChartQA): metrics.relaxed_accuracy, which is upstream's rule exactly.
- Multiple choice (AI2D, ScienceQA, MMStar, A-OKVQA, MMMU; matching_util.can_infer under
  ``--judge exact_matching``): can_infer_option then can_infer_text; nothing inferred is 'Z'
  (wrong). Unlike the project's extract_letter there is no leading-letter fallback, an empty option
  text matches anything, and 'Failed to obtain answer via API' infers nothing.
- MMMU open questions (multiple_choice.MMMU_preproc): options become A = the answer,
  B = 'Other Answers', gold = the answer if it is an upper-case letter else 'A'.
- MathVista (mathvista.post_check): multiple choice: can_infer against the choices equals the gold
  letter; free form by ``answer_type``: int(pred) == int(answer), float(pred) == float(answer);
  for any other answer type upstream compares str(None) with the answer, so it never matches.
  Upstream asks a judge model to extract the answer first when the prefetch fails; judge-free,
  the prediction is taken as the extraction (``evaluate.judge`` runs a judge model instead).
- OCRBench (image_vqa.OCRBench.evaluate): the lower-cased, stripped ground truth is a substring of
  the prediction (HMER: spaces removed, case kept); an empty ground truth matches, as upstream.

Metrics without a VLMEvalKit counterpart (``exact_match`` for MathVision, whose upstream scorer
needs a judge) keep the project's metric and key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from vlmcot.answers import infer_option
from vlmcot.metrics import get_metric, levenshtein_within, process_digit_article, process_punctuation
from vlmcot.records import LETTERS, VQARecord

COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"
_API_FAIL = "Failed to obtain answer via API"
_PERIOD_STRIP = re.compile(r"(?<!\d)\.(?!\d)")  # upstream since 928a95b (2025-05-13)
_CACHE = 1 << 17


# ---------------------------------------------------------------------------------------------
# VQA score and ANLS
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=_CACHE)
def process_answer(answer: str) -> str:
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer, _PERIOD_STRIP))


def vqa_score(prediction: str, answers: Sequence[str]) -> float:
    gts = [process_answer(str(a)) for a in answers]
    if not gts:
        return float("nan")  # np.mean([]) upstream; a record always has an answer
    p = process_answer(str(prediction))
    m = sum(g == p for g in gts)
    # leave-one-out: a matching ground truth sees m-1 matching others, the rest see m
    accs = [min(1, float(m - (g == p)) / 3) for g in gts]
    return float(np.mean(accs))  # np.mean's summation order, for bit-identical means


def anls(prediction: str, answers: Sequence[str]) -> float:
    prediction = str(prediction)
    det = " ".join(prediction.strip().lower().split())
    best = None  # min normalised distance
    for gt in answers:
        gt = str(gt)
        g = " ".join(gt.strip().lower().split())
        length = max(len(gt.upper()), len(prediction.upper()))
        if length == 0:
            value = 0.0
        else:
            k = length // 2  # 1 - d/length >= 0.5  <=>  d <= length // 2; farther scores 0 anyway
            d = levenshtein_within(g, det, k)
            value = float(d) / float(length) if d <= k else 1.0
        if best is None or value < best:
            best = value
    if best is None:
        return float("nan")
    return 0.0 if 1 - best < 0.5 else 1 - best


def relaxed_accuracy(prediction: str, answers: Sequence[str]) -> float:
    return float(get_metric("relaxed_accuracy").score(str(prediction), list(answers), None))


# ---------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------
def can_infer_option(pred: str, letters: Sequence[str]) -> str | None:
    if _API_FAIL in pred:
        return None
    return infer_option(pred, letters)  # upstream's rule, shared with the project's extract_letter


def can_infer_text(pred: str, choices: dict[str, str]) -> str | None:
    low = pred.lower()
    if len(low) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    cands = [k for k, v in choices.items() if str(v).lower() in low]
    return cands[0] if len(cands) == 1 else None


def can_infer(pred: str, choices: dict[str, str]) -> str | None:
    """The letter VLMEvalKit infers (or 'Z'); None where upstream returns False."""
    pred = str(pred)
    return can_infer_option(pred, list(choices)) or can_infer_text(pred, choices)


def choice_dict(options: Sequence[str]) -> dict[str, str]:
    return {LETTERS[i]: o for i, o in enumerate(options)}


def mc_hit(prediction: str, options: Sequence[str], gold: str) -> float:
    opt = can_infer(prediction, choice_dict(options)) or "Z"
    return 1.0 if opt == gold else 0.0


def mmmu_open_hit(prediction: str, answer: str) -> float:
    gold = answer if len(answer) == 1 and answer in LETTERS else "A"  # upstream: `in list(...)`
    return mc_hit(prediction, [answer, "Other Answers"], gold)


# ---------------------------------------------------------------------------------------------
# MathVista
# ---------------------------------------------------------------------------------------------
def mathvista_free_form_hit(res: str, answer: str, answer_type: str | None) -> float:
    """post_check for a free-form question: ``res`` is the (prefetched or judged) extraction."""
    try:
        if answer_type == "integer":
            return 1.0 if int(res) == int(answer) else 0.0
        if answer_type == "float":
            return 1.0 if float(res) == float(answer) else 0.0
    except ValueError:
        return 0.0
    return 1.0 if str(None) == str(answer) else 0.0  # upstream's `res = str(res)` with res = None


def mathvista_prefetch_ok(prediction: str, record: VQARecord) -> bool:
    """Whether upstream's prefetch succeeds (otherwise it asks its judge model)."""
    if record.choices:
        return bool(can_infer(prediction, choice_dict(record.choices)))
    # post_check(prefetch=True) returns the parsed value; 0 is falsy, so "0" goes to the judge too
    try:
        at = (record.meta or {}).get("answer_type")
        if at == "integer":
            v = int(prediction)
            return v == int(record.answer) and bool(v)
        if at == "float":
            v = float(prediction)
            return v == float(record.answer) and bool(v)
    except ValueError:
        return False
    return str(None) == str(record.answer)


# ---------------------------------------------------------------------------------------------
# Per record
# ---------------------------------------------------------------------------------------------
_UPSTREAM = {"anls", "vqa_accuracy", "relaxed_accuracy", "mc_accuracy", "mathvista", "ocrbench",
             "ocrbench_hmer"}  # fmt: skip


def metric_name(record: VQARecord) -> str:
    """The metric key this record is scored under: ``vlmevalkit_<metric>`` where upstream has a rule.
    MMMU open questions are multiple choice upstream (MMMU_preproc): one key for the whole set."""
    if is_mmmu_open(record):
        return "vlmevalkit_mc_accuracy"
    if record.metric in _UPSTREAM:
        return f"vlmevalkit_{record.metric}"
    return record.metric


def is_mmmu_open(record: VQARecord) -> bool:
    return record.dataset == "mmmu" and not record.choices


def score(record: VQARecord, prediction: str | None) -> float:
    """VLMEvalKit's score of one extracted prediction; None (extraction failed) scores 0."""
    if prediction is None:
        return 0.0
    p = str(prediction)
    answers = record.all_answers()
    m = record.metric
    if is_mmmu_open(record):
        return mmmu_open_hit(p, record.answer)
    if m == "anls":
        return anls(p, answers)
    if m == "vqa_accuracy":
        return vqa_score(p, answers)
    if m == "relaxed_accuracy":
        return relaxed_accuracy(p, answers)
    if m == "mc_accuracy":
        return mc_hit(p, record.choices or [], record.answer)
    if m == "mathvista":
        if record.choices:
            return mc_hit(p, record.choices, record.answer)
        return mathvista_free_form_hit(p, record.answer, (record.meta or {}).get("answer_type"))
    if m in ("ocrbench", "ocrbench_hmer"):
        return ocrbench_hit(p, answers, hmer=m == "ocrbench_hmer")
    return float(get_metric(m).score(p, answers, record.choices))


def ocrbench_hit(prediction: str, answers: Sequence[str], hmer: bool) -> float:
    if hmer:
        p = prediction.strip().replace("\n", " ").replace(" ", "")
        return 1.0 if any(str(a).strip().replace("\n", " ").replace(" ", "") in p for a in answers) else 0.0
    p = prediction.lower().strip().replace("\n", " ")
    return 1.0 if any(str(a).lower().strip().replace("\n", " ") in p for a in answers) else 0.0


def rule_extraction_failed(record: VQARecord, prediction: str | None) -> bool:
    """Where VLMEvalKit would call its judge model: MathVista's prefetch fails, or an MMMU answer
    can_infer cannot place."""
    if prediction is None:
        return True
    if record.dataset == "mathvista" or record.metric == "mathvista":
        return not mathvista_prefetch_ok(str(prediction), record)
    if record.dataset == "mmmu":
        options = record.choices or [record.answer, "Other Answers"]
        return can_infer(str(prediction), choice_dict(options)) is None
    return False
