import pytest

from vlmcot.metrics import (
    METRICS,
    aggregate,
    anls,
    exact_match,
    get_metric,
    gold_letters,
    mc_accuracy,
    ocrbench,
    ocrbench_hmer,
    relaxed_accuracy,
    relaxed_accuracy_lenient,
    vqa_accuracy,
    vqa_normalize,
)


def test_registry():
    assert {"relaxed_accuracy", "anls", "vqa_accuracy", "mc_accuracy", "exact_match", "ocrbench",
            "ocrbench_hmer", "relaxed_accuracy_lenient"} <= set(METRICS)
    assert get_metric("anls").score is anls
    with pytest.raises(ValueError, match="unknown metric 'bleu'.*anls"):
        get_metric("bleu")


@pytest.mark.parametrize("name", sorted(METRICS))
def test_none_prediction_scores_zero_and_scores_are_in_range(name):
    score = get_metric(name).score
    assert score(None, ["12"], ["a", "b"]) == 0.0
    for pred in ["12", "", "B", "quelque chose", "１２"]:
        s = score(pred, ["12", "B"], ["a", "b"])
        assert 0.0 <= s <= 1.0


# ----------------------------------------------------------------------------- relaxed accuracy
@pytest.mark.parametrize("pred,answers,expected", [
    ("12", ["12"], 1.0),
    (" 12.5 ", ["12"], 1.0),  # |12.5-12|/12 = 0.0417 <= 0.05; prediction is stripped
    ("12.7", ["12"], 0.0),  # 0.0583 > 0.05
    ("105", ["100"], 1.0),  # exactly 5% counts
    ("-5.2", ["-5"], 1.0),  # negative numbers: |-0.2|/5 = 0.04
    ("5", ["-5"], 0.0),
    ("50%", ["0.5"], 1.0),  # a trailing % divides by 100
    ("0.5", ["50%"], 1.0),
    ("50%", ["50"], 0.0),  # ... so '50%' is not 50: why the ChartQA teacher rule forbids '%'
    ("0", ["0"], 1.0),  # zero target: string equality
    ("0.0", ["0"], 0.0),
    ("0.01", ["0"], 0.0),
    ("1,234", ["1234"], 0.0),  # thousands separators are not numbers upstream
    ("$12", ["12"], 0.0),  # nor currency
    ("12 kg", ["12"], 0.0),  # units are not stripped
    ("１２", ["12"], 1.0),  # float() reads full-width digits
    ("Yes", ["yes"], 1.0),  # case-insensitive string equality
    ("Café", ["café"], 1.0),
    ("cafe", ["café"], 0.0),
    ("2019", ["2018", "2019"], 1.0),  # max over answers
    ("", ["12"], 0.0),
    ("12", [], 0.0),
])
def test_relaxed_accuracy(pred, answers, expected):
    assert relaxed_accuracy(pred, answers) == expected


def test_relaxed_accuracy_does_not_strip_the_target():
    # Upstream strips the prediction only; float() tolerates spaces, string equality does not.
    assert relaxed_accuracy("12", [" 12 "]) == 1.0
    assert relaxed_accuracy("yes", [" yes"]) == 0.0


def test_relaxed_accuracy_accepts_a_bare_string_as_one_answer():
    assert relaxed_accuracy("12", "12") == 1.0


@pytest.mark.parametrize("pred,answers,expected", [
    ("1,234", ["1234"], 1.0),
    ("1234", ["1,234.5"], 1.0),
    ("$12", ["12"], 1.0),
    ("-$5", ["-5"], 1.0),
    ("45%", ["45"], 1.0),  # percent read either way
    ("45%", ["0.45"], 1.0),
    ("１２％", ["12"], 1.0),  # full-width percent via NFKC
    ("12 kg", ["12"], 0.0),  # still no unit stripping
    ("1,23", ["123"], 0.0),  # not a thousands pattern
    ("0", ["0"], 1.0),
    ("CAFÉ", ["café"], 1.0),
])
def test_relaxed_accuracy_lenient(pred, answers, expected):
    assert relaxed_accuracy_lenient(pred, answers) == expected


# ----------------------------------------------------------------------------- ANLS
@pytest.mark.parametrize("pred,answers,expected", [
    ("Hello World", ["hello   world"], 1.0),  # lower-cased, whitespace collapsed
    ("hallo", ["hello"], 0.8),  # 1 substitution / 5
    ("abcd", ["abef"], 0.5),  # distance exactly 0.5 still counts (upstream: 0 only if < 0.5)
    ("abc", ["xyz"], 0.0),
    ("abcde", ["abxyz"], 0.0),  # 3/5 = 0.6 > 0.5
    ("kitten", ["sitting"], pytest.approx(1 - 3 / 7)),
    ("cafe", ["café"], 0.75),  # accents count as a substitution
    ("東京都", ["東京"], pytest.approx(1 - 1 / 3)),
    ("", ["abc"], 0.0),
    ("", [""], 1.0),
    ("x", [], 0.0),
    ("1990", ["1989", "1990s", "1990"], 1.0),  # best over answers
    ("1990s", ["1990", "1889"], 0.8),
])
def test_anls(pred, answers, expected):
    assert anls(pred, answers) == expected


def test_anls_matches_plain_levenshtein_on_many_pairs():
    import random

    # the oracle: the world's plain dynamic-programming distance, not metrics' bit-parallel one under test
    from vlmcot.world.common import levenshtein as lev

    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 30)))
        na, nb = " ".join(a.split()), " ".join(b.split())
        length = max(len(na), len(nb))
        d = 0.0 if length == 0 else lev(na, nb) / length
        expected = 0.0 if 1 - d < 0.5 else 1 - d
        assert anls(a, [b]) == pytest.approx(expected), (a, b)


# ----------------------------------------------------------------------------- VQA accuracy
@pytest.mark.parametrize("raw,norm", [
    ("The Dog.", "dog"),
    ("two", "2"),
    ("None", "0"),
    ("isnt", "isn't"),
    ("1,000", "1000"),  # digit-comma-digit: punctuation deleted, not spaced
    ("red/blue", "red blue"),  # '/' not next to a space: replaced by a space
    ("red / blue", "red blue"),
    ("3.5", "3.5"),  # a period before a digit stays
    ("U.S.A.", "usa"),
    ("an apple\tpie\n", "apple pie"),
    ("Coca-Cola!", "coca cola"),
])
def test_vqa_normalize(raw, norm):
    assert vqa_normalize(raw) == norm


def test_vqa_accuracy_leave_one_out_by_hand():
    # 10 answers, 3 match: each of the 3 matching GTs sees 2 matching others -> min(1, 2/3);
    # each of the 7 others sees 3 -> 1. Mean = (3 * 2/3 + 7 * 1) / 10 = 0.9.
    three = ["two", "2", "Two."] + ["three"] * 7
    assert vqa_accuracy("2", three) == pytest.approx(0.9)
    # 2 match: matching GTs see 1 -> 1/3 (x2); others see 2 -> 2/3 (x8).
    # Mean = (2/3 + 16/3) / 10 = 0.6.
    two = ["2", "2"] + ["3"] * 8
    assert vqa_accuracy("two", two) == pytest.approx(0.6)
    # 4 match: every GT sees >= 3 matching others -> 1.0.
    assert vqa_accuracy("2", ["2"] * 4 + ["3"] * 6) == 1.0
    # 1 match: the match sees 0 (x1), the others see 1 -> 1/3 (x9). Mean = 3/10.
    assert vqa_accuracy("2", ["2"] + ["3"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("4", two) == 0.0


def test_vqa_accuracy_fewer_than_ten_answers_uses_plain_min_matches_over_three():
    assert vqa_accuracy("red", ["red"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("red", ["red", "Red", "red."]) == 1.0
    assert vqa_accuracy("red", ["red", "red", "blue"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("red", []) == 0.0


def test_vqa_accuracy_unicode_and_case():
    assert vqa_accuracy("CAFÉ", ["café"] * 10) == 1.0
    assert vqa_accuracy("cafe", ["café"] * 10) == 0.0


# ----------------------------------------------------------------------------- multiple choice
CHOICES = ["Felis catus", "Lynx pardinus", "Panthera leo", "Canis lupus"]


@pytest.mark.parametrize("pred,expected", [
    ("B", 1.0), ("B. Lynx pardinus", 1.0), ("The answer is (B).", 1.0), ("lynx pardinus", 1.0),
    ("A", 0.0), ("I think it's A or B", 0.0), ("Cannot determine the answer", 0.0), ("", 0.0),
])
def test_mc_accuracy(pred, expected):
    assert mc_accuracy(pred, ["B"], CHOICES) == expected


def test_gold_letters_accept_letters_and_option_texts():
    assert gold_letters(["b"], CHOICES) == {"B"}
    assert gold_letters(["(C)"], CHOICES) == {"C"}
    assert gold_letters(["Canis Lupus"], CHOICES) == {"D"}  # MathVista stores the option text
    assert mc_accuracy("D", ["Canis lupus"], CHOICES) == 1.0


# ----------------------------------------------------------------------------- exact match, OCRBench
@pytest.mark.parametrize("pred,answers,expected", [
    ("Paris", ["paris"], 1.0), ("  New   York ", ["new york"], 1.0), ("１２", ["12"], 1.0),
    ("Straße", ["STRASSE"], 1.0), ("cafe", ["café"], 0.0), ("Paris.", ["paris"], 0.0),
    ("x", ["y", "X"], 1.0), ("x", [], 0.0),
])
def test_exact_match(pred, answers, expected):
    assert exact_match(pred, answers) == expected


@pytest.mark.parametrize("pred,answers,expected", [
    ("The sign says STOP here", ["stop"], 1.0),
    ("sto p", ["stop"], 0.0),
    ("line one\nline two", ["one line"], 1.0),  # newline -> space on both sides
    ("abc", ["xyz", "b"], 1.0),
    ("abc", [""], 0.0),  # an empty ground truth is skipped rather than matching everything
])
def test_ocrbench(pred, answers, expected):
    assert ocrbench(pred, answers) == expected


def test_ocrbench_hmer_is_space_free_and_case_sensitive():
    assert ocrbench_hmer("$ x ^ { 2 } + Y $", ["x^{2}+Y"]) == 1.0
    assert ocrbench_hmer("x^{2}+y", ["x^{2}+Y"]) == 0.0
    assert ocrbench("x^{2}+y", ["x^{2}+Y"]) == 1.0


def test_aggregate():
    assert aggregate([1.0, 0.0, 0.5, 0.5]) == 0.5
    assert aggregate(iter([])) == 0.0


def test_mathvista_free_form_and_choice():
    from vlmcot.metrics import get_metric

    mv = get_metric("mathvista").score
    assert mv("3.50", ["3.5"]) == 1.0          # numeric equality, not string
    assert mv("3.51", ["3.5"]) == 0.0          # no 5% tolerance here, unlike ChartQA
    assert mv("12%", ["0.12"]) == 1.0          # VLMEvalKit's float reading of a trailing %
    assert mv("Yes", ["yes"]) == 1.0           # text answers: normalised equality
    assert mv("B", ["B"], ["2 cm", "4 cm", "6 cm"]) == 1.0
    assert mv("The answer is (C).", ["B"], ["2 cm", "4 cm", "6 cm"]) == 0.0
    assert mv(None, ["1"]) == 0.0
