"""The language-pretraining corpus: deterministic, free of QA formats, and arithmetically true."""

from __future__ import annotations

import re

import pytest

from vlmcot.prompts import ANSWER_MARKER, COT_SHORT, DIRECT_SHORT
from vlmcot.world.text import KINDS, TextCorpusConfig, corpus


def test_same_seed_same_text_other_seed_other_text():
    cfg = TextCorpusConfig()
    assert corpus(50, 3, cfg) == corpus(50, 3, cfg)
    assert corpus(50, 3, cfg) != corpus(50, 4, cfg)


def test_no_qa_format_reaches_the_corpus():
    text = "\n".join(corpus(2000, 0, TextCorpusConfig()))
    for s in (ANSWER_MARKER, COT_SHORT, DIRECT_SHORT, "?", "<image>", "Answer"):
        assert s not in text


def test_every_equation_is_true():
    docs = corpus(3000, 1, TextCorpusConfig())
    eqs = [m for d in docs for m in re.findall(r"(\d+(?: [-+×] \d+)+) = (\d+)", d)]
    assert len(eqs) > 1000
    for lhs, rhs in eqs:
        assert eval(lhs.replace("×", "*")) == int(rhs), (lhs, rhs)


def test_only_listed_kinds_are_drawn_and_unknown_kinds_raise():
    docs = corpus(300, 0, TextCorpusConfig(kinds={"mul": 1.0}))
    assert all(re.fullmatch(r"(\d+ × \d+ = \d+\.\s?)+", d) for d in docs)
    with pytest.raises(ValueError, match="unknown kind"):
        corpus(1, 0, TextCorpusConfig(kinds={"poetry": 1.0}))
    assert set(TextCorpusConfig().kinds) == set(KINDS)
