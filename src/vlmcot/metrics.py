"""Per-dataset scores, each defined once and registered by name (a VQARecord's ``metric`` field).

Every metric is ``score(prediction, answers, choices=None) -> float`` in [0, 1], where
``prediction`` is the *extracted* answer (answers.py) and None means extraction failed (scores 0).
These are the project's own rules, modelled on VLMEvalKit's judge-free ones but NOT identical to
them (the differences are listed per metric below and in vlmevalkit_scoring.py, which reproduces
VLMEvalKit at a named commit exactly and is what ``evaluate.scoring: vlmevalkit`` uses for numbers
comparable with published ones). Differences from VLMEvalKit e8e78f0: ``anls`` divides by the longer
*normalised* string (upstream: the raw strings); ``vqa_accuracy`` with fewer than 10 answers is
min(1, m/3) (upstream: the leave-one-out mean over however many answers there are, so a single
answer scores 0); the VQA period rule is upstream's pre-2025-05 one; ``mathvista`` also accepts
"3.0" for 3, "12%" for 0.12 and floats within 1e-6 (upstream: int()/float() equality by answer
type); ``mc_accuracy`` reads a leading "B." where upstream gives up; ``ocrbench`` skips empty
ground truths. ``relaxed_accuracy`` is upstream's rule exactly:

==================  ======================================================  ===================
name                rule                                                    used for
==================  ======================================================  ===================
relaxed_accuracy    numbers within 5% (a trailing % means /100), else        ChartQA
                    case-insensitive equality; max over answers
relaxed_accuracy_   the same, also reading "1,234", "$12", "１２％" and "45%"  teacher filtering,
lenient             vs "45" as numbers (NOT VLMEvalKit: diagnostics only)    diagnostics
anls                1 - normalised Levenshtein if >= 0.5 else 0; best answer DocVQA, InfoVQA
vqa_accuracy        VQA normalisation; leave-one-out min(1, matches/3)       TextVQA, A-OKVQA DA
mc_accuracy         extract_letter(pred, choices) is the gold letter        A-OKVQA, AI2D, SQA
exact_match         NFKC + casefold + whitespace-collapsed equality          free-form fallback
ocrbench            lower-cased ground truth is a substring of prediction   OCRBench
ocrbench_hmer       space-free, case-sensitive substring                    OCRBench HMER
==================  ======================================================  ===================

Speed: a benchmark scores ~1M predictions, so the normalisers are cached (answers repeat across
candidates of one question), regexes are compiled once, and ANLS's edit distance stops as soon as
the 0.5 threshold can no longer be met.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from vlmcot.answers import extract_letter
from vlmcot.records import LETTERS

ScoreFn = Callable[[str | None, Sequence[str], Sequence[str] | None], float]

_CACHE = 1 << 17  # distinct strings kept per normaliser (a few MB at most)


@dataclass(frozen=True)
class Metric:
    name: str
    score: ScoreFn
    description: str


METRICS: dict[str, Metric] = {}


def register_metric(name: str, description: str) -> Callable[[ScoreFn], ScoreFn]:
    def deco(fn: ScoreFn) -> ScoreFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = Metric(name, fn, description)
        return fn

    return deco


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; registered: {', '.join(sorted(METRICS))}") from None


def aggregate(scores: Iterable[float]) -> float:
    """Mean score; 0.0 for no scores (keeps metrics JSON free of NaN)."""
    scores = list(scores)
    return sum(scores) / len(scores) if scores else 0.0


def _as_list(answers: Sequence[str] | str) -> Sequence[str]:
    # A bare string would otherwise be scored character by character.
    return [answers] if isinstance(answers, str) else answers


# ---------------------------------------------------------------------------------------------
# Relaxed accuracy (ChartQA) — pix2struct's rule as VLMEvalKit ports it.
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=_CACHE)
def _to_float(text: str) -> float | None:
    """VLMEvalKit's ``_to_float``: Python float(), a trailing '%' divides by 100.

    float() already accepts surrounding spaces, a sign, '1e3', '1_000' and non-ASCII decimal digits
    ('１２'), and rejects '1,234', '$5' and '12 kg': units are not stripped, which is why the
    ChartQA teacher rule forbids them.
    """
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


@register_metric("relaxed_accuracy", "ChartQA: numbers within 5% relative, else case-insensitive match")
def relaxed_accuracy(prediction, answers, choices=None) -> float:
    if prediction is None:
        return 0.0
    p = str(prediction).strip()  # upstream strips the prediction only, never the target
    pf = _to_float(p)
    pl = None
    for t in _as_list(answers):
        t = str(t)
        tf = _to_float(t)
        if pf is not None and tf:  # a zero target falls through to string equality (upstream)
            if abs(pf - tf) / abs(tf) <= 0.05:
                return 1.0
        else:
            if pl is None:
                pl = p.lower()
            if pl == t.lower():
                return 1.0
    return 0.0


_CURRENCY = "$€£¥"
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?$")


@lru_cache(maxsize=_CACHE)
def _lenient_numbers(text: str) -> tuple[float, ...]:
    """Every number ``text`` can be read as: NFKC, one leading currency sign, thousands commas;
    '45%' reads as both 0.45 (upstream) and 45 (a chart axis in percent)."""
    t = unicodedata.normalize("NFKC", text).strip()
    sign = ""
    if t[:1] in "+-" and t[1:2] and t[1] in _CURRENCY:
        sign, t = t[0], t[1:]
    if t[:1] and t[0] in _CURRENCY:
        t = t[1:].strip()
    t = sign + t
    if _THOUSANDS_RE.match(t):
        t = t.replace(",", "")
    v = _to_float(t)
    if v is None:
        return ()
    if t.endswith("%"):
        raw = _to_float(t.rstrip("%"))
        return (v, raw) if raw is not None else (v,)
    return (v,)


@register_metric(
    "relaxed_accuracy_lenient",
    "relaxed_accuracy that also reads thousands separators, currency signs and percent either way",
)
def relaxed_accuracy_lenient(prediction, answers, choices=None) -> float:
    if prediction is None:
        return 0.0
    p = str(prediction).strip()
    pnums = _lenient_numbers(p)
    pl = None
    for t in _as_list(answers):
        t = str(t)
        for tf in _lenient_numbers(t):
            if tf:
                for pf in pnums:
                    if abs(pf - tf) / abs(tf) <= 0.05:
                        return 1.0
        if pl is None:
            pl = unicodedata.normalize("NFKC", p).casefold()
        if pl == unicodedata.normalize("NFKC", t.strip()).casefold():
            return 1.0
    return 0.0


# ---------------------------------------------------------------------------------------------
# ANLS (DocVQA, InfoVQA)
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=_CACHE)
def _anls_norm(s: str) -> str:
    return " ".join(s.lower().split())


def levenshtein_within(a: str, b: str, k: int) -> int:
    """Levenshtein distance of a and b if it is <= k, else k + 1.

    Common prefix/suffix are trimmed (they never change the distance, and short answers share a
    lot), a length gap over k exits at once, and the rest is Hyyro's bit-parallel form of Myers'
    algorithm: one pass over b with a handful of integer operations per character (2-4x faster
    than the banded DP on 10-40 character answers).
    """
    if len(a) > len(b):
        a, b = b, a
    i, la, lb = 0, len(a), len(b)
    while i < la and a[i] == b[i]:
        i += 1
    while la > i and a[la - 1] == b[lb - 1]:
        la -= 1
        lb -= 1
    if lb - la > k:
        return k + 1
    a, b = a[i:la], b[i:lb]
    m = len(a)
    if m == 0:
        return len(b)
    peq: dict[str, int] = {}  # character -> bitmask of its positions in a
    for j, c in enumerate(a):
        peq[c] = peq.get(c, 0) | (1 << j)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, dist = full, 0, m  # vertical +1/-1 deltas of the DP column; dist = its last cell
    get = peq.get
    for c in b:
        eq = get(c, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & top:
            dist += 1
        elif mh & top:
            dist -= 1
        ph = (ph << 1) | 1
        mh <<= 1
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv & full
    return dist if dist <= k else k + 1


@lru_cache(maxsize=_CACHE)
def _anls_pair(gt: str, prediction: str) -> float:
    """Thresholded similarity of one (ground truth, prediction) pair. Cached: the 32+ candidates
    sampled for one question repeat the same few answers."""
    g, p = _anls_norm(gt), _anls_norm(prediction)
    if g == p:
        return 1.0
    length = len(g) if len(g) > len(p) else len(p)
    # d / length <= 0.5  <=>  d <= length // 2; anything farther scores 0 anyway.
    k = length // 2
    d = levenshtein_within(g, p, k)
    return 1.0 - d / length if d <= k else 0.0


@register_metric("anls", "DocVQA/InfoVQA: 1 - normalised Levenshtein, 0 below 0.5; best over answers")
def anls(prediction, answers, choices=None) -> float:
    """Modelled on VLMEvalKit's anls_compute + hit_calculate: lowercase, collapse whitespace; the
    distance is divided by the longer *normalised* string (upstream divides by the longer raw
    string: "Paris" vs "paris  x" is 1 - 2/8 there, 1 - 2/7 here); the score is 1 - min distance unless that is below 0.5 (0.5 counts)."""
    if prediction is None:
        return 0.0
    p = str(prediction)
    best = 0.0
    # max of thresholded similarities == thresholded max (the threshold is monotone)
    for gt in _as_list(answers):
        s = _anls_pair(str(gt), p)
        if s > best:
            if s == 1.0:
                return 1.0
            best = s
    return best


# ---------------------------------------------------------------------------------------------
# VQA accuracy (TextVQA, A-OKVQA direct answers): the VQA eval normalisation as VLMEvalKit ports it
# ---------------------------------------------------------------------------------------------
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
          ",", "?", "!")  # fmt: skip
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# VLMEvalKit's pattern before 928a95b (2025-05-13), bug included: '(?!<=\d)' is a lookahead for
# the text '<=digit', so this removes every '.' not followed by a digit ("3." -> "3"). Upstream now
# uses '(?<!\d)\.(?!\d)' (keeps "3."): vlmevalkit_scoring.py has that one.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
               "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = frozenset(("a", "an", "the"))
# The VQA eval script's table. Keys with capitals ('Im', 'Ive', "Id've", "I'dve") never match
# after lower-casing, upstream as here.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't",
    "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip


def process_punctuation(text: str, period_strip: re.Pattern = _PERIOD_STRIP) -> str:
    """The VQA eval's punctuation rule; ``period_strip`` picks the period regex (vlmevalkit_scoring
    passes upstream's current one)."""
    out = text
    # A digit-comma-digit anywhere makes upstream delete (not space out) every punctuation mark.
    delete_all = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if p not in out:
            continue
        if delete_all or (p + " " in text or " " + p in text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # Upstream passes re.UNICODE (= 32) positionally, i.e. as count: at most 32 periods go.
    return period_strip.sub("", out, 32)


def process_digit_article(text: str) -> str:
    words = []
    for w in text.lower().split():
        w = _MANUAL_MAP.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


@lru_cache(maxsize=_CACHE)
def vqa_normalize(answer: str) -> str:
    """VLMEvalKit's ``process_answer``: whitespace, punctuation, lower case, digits, articles,
    contractions."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


@register_metric("vqa_accuracy", "TextVQA: leave-one-out min(1, matches/3) over 10 normalised answers")
def vqa_accuracy(prediction, answers, choices=None) -> float:
    """With >= 10 answers, the standard leave-one-out mean: a ground truth that matches sees m-1
    matching others, one that doesn't sees m; each scores min(1, seen/3). With fewer answers
    (synthetic or single-annotation data) the plain min(1, m/3) over all of them: one matching
    answer out of one scores 1/3. This is NOT upstream: VLMEvalKit applies the leave-one-out mean
    to any number of answers (one answer always scores 0 there); see vlmevalkit_scoring.py."""
    if prediction is None:
        return 0.0
    answers = _as_list(answers)
    n = len(answers)
    if n == 0:
        return 0.0
    p = vqa_normalize(str(prediction))
    m = 0
    for a in answers:
        if vqa_normalize(str(a)) == p:
            m += 1
    if m == 0:
        return 0.0
    if n >= 10:
        return (m * min(1.0, (m - 1) / 3) + (n - m) * min(1.0, m / 3)) / n
    return min(1.0, m / 3)


# ---------------------------------------------------------------------------------------------
# Multiple choice, exact match, OCRBench
# ---------------------------------------------------------------------------------------------
def gold_letters(answers: Sequence[str], choices: Sequence[str] | None) -> set[str]:
    """Gold letters from answers that are letters ('B', 'b', '(B)') or option texts (MathVista)."""
    gold = set()
    n = len(choices) if choices else len(LETTERS)
    for a in _as_list(answers):
        a = str(a).strip().strip("().").strip()
        if len(a) == 1 and a.upper() in LETTERS[:n]:
            gold.add(a.upper())
        elif choices:
            low = a.lower()
            for i, c in enumerate(choices):
                if str(c).strip().lower() == low:
                    gold.add(LETTERS[i])
    return gold


@register_metric("mc_accuracy", "Multiple choice: the inferred option letter equals the gold letter")
def mc_accuracy(prediction, answers, choices=None) -> float:
    if prediction is None:
        return 0.0
    letter = extract_letter(prediction, choices)
    if letter is None or letter == "Z":  # 'Z' is VLMEvalKit's "no / refused answer"
        return 0.0
    return 1.0 if letter in gold_letters(answers, choices) else 0.0


@lru_cache(maxsize=_CACHE)
def _em_norm(s: str) -> str:
    # NFKC folds full-width forms ('１２' -> '12'); casefold handles 'ß' and friends.
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


@register_metric("exact_match", "NFKC, case-folded, whitespace-collapsed string equality")
def exact_match(prediction, answers, choices=None) -> float:
    if prediction is None:
        return 0.0
    p = _em_norm(str(prediction))
    for a in _as_list(answers):
        if _em_norm(str(a)) == p:
            return 1.0
    return 0.0


@register_metric("ocrbench", "OCRBench: a lower-cased ground truth is a substring of the prediction")
def ocrbench(prediction, answers, choices=None) -> float:
    if prediction is None:
        return 0.0
    p = str(prediction).lower().strip().replace("\n", " ")
    for a in _as_list(answers):
        a = str(a).lower().strip().replace("\n", " ")
        # An empty ground truth would credit any prediction; upstream data has none, we skip it.
        if a and a in p:
            return 1.0
    return 0.0


@register_metric("ocrbench_hmer", "OCRBench handwritten math: space-free, case-sensitive substring")
def ocrbench_hmer(prediction, answers, choices=None) -> float:
    if prediction is None:
        return 0.0
    p = str(prediction).strip().replace("\n", " ").replace(" ", "")
    for a in _as_list(answers):
        a = str(a).strip().replace("\n", " ").replace(" ", "")
        if a and a in p:
            return 1.0
    return 0.0


# ---------------------------------------------------------------------------------------------
# MathVista (testmini) — VLMEvalKit's rule-based prefetch, without its LLM judge.
# ---------------------------------------------------------------------------------------------
@register_metric("mathvista", "MathVista: letter match for multiple choice, numeric equality for free form")
def mathvista(prediction, answers, choices=None) -> float:
    """Multiple choice (choices given): the inferred letter, as ``mc_accuracy``. Free form: both sides
    parse as numbers and are equal (to 1e-6 relative, which covers the dataset's ``precision`` of 1-2
    decimals after rounding), else normalised string equality. Lenient compared with VLMEvalKit, whose
    post_check compares int(prediction) == int(answer) or float() == float() by the record's
    answer_type (so "3.0" for 3 is wrong there and text/list answers never match): that rule is in
    vlmevalkit_scoring.py. VLMEvalKit asks a judge model to pull the answer out of verbose replies
    first; our CoT replies carry '### Answer:' (and evaluate.judge can do the same)."""
    if prediction is None:
        return 0.0
    if choices:
        return mc_accuracy(prediction, answers, choices)
    p = _to_float(str(prediction).strip())
    for a in _as_list(answers):
        t = _to_float(str(a).strip())
        if p is not None and t is not None:
            if abs(p - t) <= 1e-6 * max(1.0, abs(t)):
                return 1.0
        elif _em_norm(str(a)) == _em_norm(str(prediction)):
            return 1.0
    return 0.0
