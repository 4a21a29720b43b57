import random

import pytest

from vlmcot.pairing import build_pairs, dispersion, drop_reason, first_words, guessing_bound, select_pairs
from vlmcot.records import Candidate, VQARecord


def _rec(qid, ds="chart", qtype="numeric", choices=None, answer="7"):
    return VQARecord(id=qid, image=f"{ds}/{qid}.png", question=f"what is {qid}?", answer=answer, dataset=ds,
                     qtype=qtype, split="train", metric="relaxed_accuracy", choices=choices)


def _cands(qid, verdicts, ds="chart", texts=None):
    """One candidate per verdict ('1' correct, '0' wrong); distinct texts unless given."""
    out = []
    for i, v in enumerate(verdicts):
        ok = v == "1"
        text = texts[i] if texts else f"reason {i} for {qid}\n\n### Answer: {'7' if ok else i + 100}"
        out.append(Candidate(id=qid, sample=i, text=text, extracted="7" if ok else str(i + 100), correct=ok,
                             dataset=ds))
    return out


def _prompt(rec):
    return f"PROMPT[{rec.id}]"


# --- truncation -------------------------------------------------------------------------------

def test_first_words_keeps_original_separators():
    text = "The bar\n\nreads  41.\n\n### Answer: 41"
    assert first_words(text, 3) == "The bar\n\nreads"
    assert first_words(text, 5) == "The bar\n\nreads  41.\n\n###"
    assert first_words("  lead  in  ", 1) == "  lead"  # leading space kept, trailing dropped


def test_first_words_short_text_and_none_unchanged():
    text = "two words \n"
    assert first_words(text, 2) == text
    assert first_words(text, 90) == text
    assert first_words(text, None) == text
    with pytest.raises(ValueError, match="truncate_words"):
        first_words(text, 0)


# --- the accuracy window ------------------------------------------------------------------------

@pytest.mark.parametrize("k,reason", [(0, "all_wrong"), (7, "below_low"), (8, None), (27, None),
                                      (28, "above_high"), (32, "all_correct")])
def test_drop_reason_boundaries_are_inclusive(k, reason):
    # 8/32 = 0.25 and 27/32 = 0.84375 are inside [0.25, 0.85]; 28/32 = 0.875 is not
    assert drop_reason(k, 32, 0.25, 0.85) == reason


def test_drop_reason_full_window_still_needs_both_kinds():
    assert drop_reason(0, 4, 0.0, 1.0) == "all_wrong"
    assert drop_reason(4, 4, 0.0, 1.0) == "all_correct"
    assert drop_reason(1, 4, 0.0, 1.0) is None


# --- pair selection -----------------------------------------------------------------------------

def test_select_pairs_prefers_fresh_texts_and_never_repeats():
    picked = select_pairs(["a", "b", "c", "d"], ["w", "x", "y", "z"], 3)
    assert len(picked) == 3
    assert len({i for i, _ in picked}) == 3 and len({j for _, j in picked}) == 3
    one_good = select_pairs(["a"], ["w", "x", "y"], 3)
    assert sorted(one_good) == [(0, 0), (0, 1), (0, 2)]
    assert select_pairs(["a"], ["w"], 3) == [(0, 0)]  # only one distinct pair exists
    many = select_pairs(["a", "b"], ["w", "x"], 10)
    assert sorted(many) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_select_pairs_skips_equal_texts():
    assert select_pairs(["same"], ["same"], 3) == []
    assert select_pairs(["same", "a"], ["same"], 3) == [(1, 0)]


# --- build_pairs --------------------------------------------------------------------------------

# the paper's settings (configs/paper.yaml's pairs section), which these tests were written against
PAPER = dict(low=0.25, high=0.85, max_pairs_per_question=3, truncate_words=90, truncate_unit="whitespace", seed=0,
             prompt_style="paper")


def _build(cands, recs, **kw):
    return build_pairs(cands, recs, **{**PAPER, **kw})


def test_build_pairs_takes_no_default_settings():
    """Its settings come from the pairs section, the one place their values are written."""
    with pytest.raises(TypeError, match="required keyword-only"):
        build_pairs([], {})


@pytest.fixture
def world():
    recs = {q: _rec(q) for q in ("q0", "q1", "q2", "q3", "q4")}
    recs["m0"] = _rec("m0", ds="sci", qtype="multiple_choice", choices=["cat", "dog"], answer="B")
    cands = (
        _cands("q0", "11000000")  # 0.25: kept
        + _cands("q1", "10000000")  # 0.125: below low
        + _cands("q2", "11111111")  # all correct
        + _cands("q3", "00000000")  # all wrong
        + _cands("q4", "11111110")  # 0.875: above high
        + _cands("m0", "1100", ds="sci")  # 0.5: kept
        + _cands("ghost", "1100")  # no record
    )
    return recs, cands


def test_build_pairs_keeps_window_and_counts_reasons(world):
    recs, cands = world
    pairs, stats = _build(cands, recs, prompt_fn=_prompt)
    assert sorted({p.id.rsplit("-p", 1)[0] for p in pairs}) == ["m0", "q0"]
    m = stats.to_metrics()
    assert m["chart.questions"] == 6 and m["chart.kept"] == 1  # 'ghost' counts under its own dataset
    for reason in ("below_low", "all_correct", "all_wrong", "above_high", "no_record"):
        assert m[f"chart.dropped.{reason}"] == 1, reason
    assert m["sci.kept"] == 1 and m["all.kept"] == 2
    assert m["all.pairs"] == len(pairs) == 6  # 3 per kept question
    assert any("ghost" in e for e in stats.errors)


def test_pairs_have_correct_chosen_incorrect_rejected_and_fields(world):
    recs, cands = world
    by_text = {(c.id, c.text): c.correct for c in cands}
    pairs, _ = _build(cands, recs, prompt_fn=_prompt, truncate_words=None)
    seen = set()
    for p in pairs:
        qid = p.id.rsplit("-p", 1)[0]
        assert by_text[(qid, p.chosen)] is True and by_text[(qid, p.rejected)] is False
        assert (p.chosen, p.rejected) not in seen
        seen.add((p.chosen, p.rejected))
        rec = recs[qid]
        assert (p.image, p.answer, p.dataset, p.prompt, p.question) == (
            rec.image, rec.answer, rec.dataset, f"PROMPT[{qid}]", rec.question)
    assert [p.id for p in pairs] == ["m0-p0", "m0-p1", "m0-p2", "q0-p0", "q0-p1", "q0-p2"]
    # two distinct correct texts for 3 pairs: both get used before one repeats
    q0 = [p for p in pairs if p.id.startswith("q0")]
    assert len({p.chosen for p in q0}) == 2 and len({p.rejected for p in q0}) == 3


def test_default_prompt_is_the_cot_prompt(world):
    from vlmcot.prompts import build_prompt

    recs, cands = world
    pairs, _ = _build(cands, recs)
    m0 = next(p for p in pairs if p.id.startswith("m0"))
    assert m0.prompt == build_prompt(recs["m0"], "cot")


def test_pairing_ignores_input_order_and_other_questions(world):
    recs, cands = world
    ref, _ = _build(cands, recs, prompt_fn=_prompt, seed=3)
    shuffled = list(cands)
    random.Random(0).shuffle(shuffled)
    again, _ = _build(shuffled, recs, prompt_fn=_prompt, seed=3)
    assert again == ref
    alone, _ = _build([c for c in cands if c.id == "q0"], recs, prompt_fn=_prompt, seed=3)
    assert alone == [p for p in ref if p.id.startswith("q0")]


def test_seed_changes_the_pairing():
    recs = {f"q{i}": _rec(f"q{i}") for i in range(10)}
    cands = [c for i in range(10) for c in _cands(f"q{i}", "1111000000")]
    a, _ = _build(cands, recs, prompt_fn=_prompt, seed=0)
    b, _ = _build(cands, recs, prompt_fn=_prompt, seed=1)
    assert len(a) == len(b) == 30
    assert [(p.chosen, p.rejected) for p in a] != [(p.chosen, p.rejected) for p in b]


def test_truncation_applies_to_both_sides_and_counts_cut_answers():
    recs = {"q": _rec("q")}
    long = lambda tag: " ".join([tag] * 100) + "\n\n### Answer: 7"  # noqa: E731
    texts = [long("good"), long("bad1"), long("bad2"), long("bad3")]
    cands = _cands("q", "1000", texts=texts)
    pairs, stats = _build(cands, recs, prompt_fn=_prompt, truncate_words=90, low=0.0)
    assert len(pairs) == 3
    for p in pairs:
        assert len(p.chosen.split()) == 90 and len(p.rejected.split()) == 90
        assert "### Answer" not in p.chosen
    m = stats.to_metrics()
    assert m["all.truncated_rate"] == 1.0 and m["all.answer_cut_rate"] == 1.0


def test_texts_equal_after_truncation_give_no_pair():
    recs = {"q": _rec("q")}
    prefix = " ".join(["same"] * 95)
    texts = [prefix + "\n### Answer: 7", prefix + "\n### Answer: 8"]
    pairs, stats = _build(_cands("q", "10", texts=texts), recs, prompt_fn=_prompt, truncate_words=90, low=0.0)
    assert pairs == []
    m = stats.to_metrics()
    assert m["all.dropped.no_distinct_pair"] == 1 and m["all.identical_after_truncation"] == 1
    kept, _ = _build(_cands("q", "10", texts=texts), recs, prompt_fn=_prompt, truncate_words=None, low=0.0)
    assert len(kept) == 1


def test_bad_prompt_skips_one_question_only(world):
    recs, cands = world

    def prompt(rec):
        if rec.id == "m0":
            raise ValueError("no choices")
        return "ok"

    pairs, stats = _build(cands, recs, prompt_fn=prompt)
    assert {p.id.split("-")[0] for p in pairs} == {"q0"}
    assert stats.to_metrics()["sci.dropped.bad_prompt"] == 1
    assert any("m0" in e and "no choices" in e for e in stats.errors)


def test_duplicate_samples_are_counted_and_dropped():
    recs = {"q": _rec("q")}
    cands = _cands("q", "1000")
    pairs, stats = _build(cands + [cands[0]], recs, prompt_fn=_prompt, low=0.0)
    assert stats.duplicate_candidates == 1
    assert stats.to_metrics()["all.candidates"] == 4


def test_histogram_uses_bins_of_one_over_n(world):
    recs, cands = world
    _, stats = _build(cands, recs, prompt_fn=_prompt)
    hist = stats.histogram()
    # five chart questions with 8 samples (the common N), one sci question with 4
    assert [r["accuracy"] for r in hist] == [k / 8 for k in range(9)]
    q = {r["accuracy"]: r["questions"] for r in hist}
    assert q[0.0] == 1 and q[0.125] == 1 and q[0.25] == 1 and q[0.5] == 1 and q[0.875] == 1 and q[1.0] == 1
    kept = {r["accuracy"]: r["kept"] for r in hist if r["kept"]}
    assert kept == {0.25: 1, 0.5: 1}


def test_bad_window_and_k_are_rejected():
    with pytest.raises(ValueError, match="low"):
        _build([], {}, low=0.9, high=0.5)
    with pytest.raises(ValueError, match="max_pairs_per_question"):
        _build([], {}, max_pairs_per_question=0)


def test_space_unit_is_the_authors_split():
    from vlmcot.pairing import first_words

    text = "Step one.\n\nThe  sum is 7.\n### Answer: 7"
    for n in range(1, 12):
        assert first_words(text, n, "space") == " ".join(text.split(" ")[:n])
    # the two units differ: a newline separates words only for "whitespace"; a double space is a word for "space"
    assert first_words(text, 2, "whitespace") == "Step one."
    assert first_words(text, 2, "space") == "Step one.\n\nThe"
    assert first_words(text, 3, "space") == "Step one.\n\nThe "
    assert first_words("a b", 5, "space") == "a b" and first_words("a b", None, "space") == "a b"
    with pytest.raises(ValueError, match="truncate unit"):
        first_words(text, 2, "words")


# --- is the model guessing? -------------------------------------------------------------------


def _outcomes(rates, n=8, seed=0):
    rng = random.Random(seed)
    return [(sum(rng.random() < p for _ in range(n)), n) for p in rates]


def test_guessing_stays_under_the_bound_about_99_times_in_100():
    # a model at chance on 4-option questions: every question right with probability 1/4
    over = sum(dispersion(o) > guessing_bound(len(o)) for o in (_outcomes([0.25] * 400, seed=s) for s in range(300)))
    assert over <= 9  # 1% nominal: 3 expected of 300; 9 is beyond 3 standard deviations


def test_knowing_some_questions_is_over_the_bound():
    # the same mean accuracy (~25%), but a third of the questions known well and the rest mostly missed
    rates = [0.6 if i % 3 == 0 else 0.075 for i in range(400)]
    o = _outcomes(rates)
    assert dispersion(o) > 1.5 > guessing_bound(400)
    assert dispersion([(0, 8), (0, 8)]) is None and dispersion([(8, 8), (8, 8)]) is None


def test_pair_metrics_flag_the_guessed_dataset():
    rng = random.Random(1)
    recs, cands = {}, []
    for ds, rates in (("sci", [0.25] * 200), ("chart", [0.7 if i % 2 else 0.05 for i in range(200)])):
        for i, p in enumerate(rates):
            qid = f"{ds}{i}"
            mc = ds == "sci"
            recs[qid] = _rec(qid, ds, qtype="multiple_choice" if mc else "numeric",
                             choices=["a", "b", "c", "d"] if mc else None, answer="A" if mc else "7")
            cands += _cands(qid, "".join("1" if rng.random() < p else "0" for _ in range(8)), ds)
    _, stats = build_pairs(cands, recs, low=0.125, high=0.875, max_pairs_per_question=3, truncate_words=None,
                           truncate_unit="whitespace", seed=0, prompt_style="paper", prompt_fn=_prompt)
    m = stats.to_metrics()
    assert m["sci.dispersion"] <= m["sci.dispersion_guess_bound"] < m["chart.dispersion"]
    assert m["sci.chance_accuracy"] == 0.25 and "chart.chance_accuracy" not in m
    assert "all.dispersion" not in m
