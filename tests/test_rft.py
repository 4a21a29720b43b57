"""RFT data: distinct correct samples only, at most K per question, stable under input order."""

import random

import pytest

from vlmcot.records import Candidate, VQARecord
from vlmcot.rft import rft_conversations


def _rec(qid):
    return VQARecord(id=qid, image=f"{qid}.png", question="Sum?", answer="7", dataset="synth_chart",
                     qtype="numeric", split="train", metric="relaxed_accuracy")


def _cands():
    out = []
    for q, texts in {"q1": ["a ### Answer: 7", "a ### Answer: 7", "b ### Answer: 7", "c ### Answer: 3"],
                     "q2": ["x ### Answer: 1"], "q3": ["y ### Answer: 7"]}.items():
        for k, t in enumerate(texts):
            out.append(Candidate(id=q, sample=k, text=t, extracted=t[-1], correct=t.endswith("7"), dataset="synth_chart"))
    return out


# the settings the control stage passes (params.yaml's control section); each test changes what it checks
SETTINGS = dict(max_per_question=3, seed=0, prompt_style="paper", truncate_words=None, truncate_unit="whitespace")


def rft(cands, recs, **kw):
    return rft_conversations(cands, recs, **{**SETTINGS, **kw})


def test_rft_rows():
    recs = {"q1": _rec("q1"), "q2": _rec("q2")}  # q3 has no record
    rows, stats = rft(_cands(), recs, max_per_question=5)
    assert stats == {"questions": 3, "questions_with_correct": 1, "rows": 2, "no_record": 1}
    assert sorted(r["conversations"][1]["value"] for r in rows) == ["a ### Answer: 7", "b ### Answer: 7"]
    assert rows[0]["conversations"][0]["value"].startswith("<image>\nSum?\nGenerate a reason first")
    one, _ = rft(_cands(), recs, max_per_question=1)
    assert len(one) == 1
    shuffled = _cands()
    random.Random(1).shuffle(shuffled)
    assert rft(shuffled, recs, max_per_question=1)[0] == one  # order never matters


def test_rft_truncates_with_the_pairs_unit():
    """'space' is the pairs' unit in the paper profile: a newline does not split a word, as in run_dpo.py."""
    recs = {"q3": _rec("q3")}
    cands = [Candidate(id="q3", sample=0, text="so 3\n\n### Answer: 7", extracted="7", correct=True,
                       dataset="synth_chart")]
    ws, _ = rft(cands, recs, truncate_words=2)
    sp, _ = rft(cands, recs, truncate_words=2, truncate_unit="space")
    assert ws[0]["conversations"][1]["value"] == "so 3"
    assert sp[0]["conversations"][1]["value"] == "so 3\n\n###"
    with pytest.raises(ValueError, match="truncate unit"):
        rft(cands, recs, truncate_words=2, truncate_unit="token")
