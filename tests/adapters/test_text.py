"""Answer and option parsers shared by the adapters."""

import pytest

from vlmcot.adapters.text import (
    BadRow,
    as_list,
    check_letter,
    letter_for_index,
    letter_for_text,
    majority_answer,
    neutralise_image_tags,
    numeric_or_short,
    split_inline_options,
)


def test_as_list_parses_literals_safely():
    assert as_list("['a', 'b']") == ["a", "b"]
    assert as_list(["x"]) == ["x"] and as_list("plain") == ["plain"] and as_list(None) == []
    assert as_list(float("nan")) == []
    with pytest.raises(BadRow) as e:
        as_list("[os.system('x')]")
    assert e.value.reason == "parse_error"


def test_majority_and_numbers():
    assert majority_answer(["b", "a", "a", "b", "c"]) == "b"
    assert numeric_or_short("12.5%") == "numeric" and numeric_or_short("1,000") == "short"
    assert numeric_or_short("nan") == "short" and numeric_or_short("inf") == "short"


def test_letters():
    assert letter_for_index(2, 4) == "C" and letter_for_index("0", 2) == "A"
    assert check_letter(" (b) ", 3) == "B"
    assert letter_for_text("Yes", ["no", "yes"]) == "B"
    for bad in (lambda: letter_for_index(4, 4), lambda: letter_for_index("x", 4),
                lambda: check_letter("E", 4), lambda: letter_for_text("5", ["5", "5"])):
        with pytest.raises(BadRow):
            bad()


def test_split_inline_options_keeps_commas_inside_options():
    q, opts = split_inline_options("What is shown?\nOptions: A: red, blue and green, B: only red, C: none")
    assert q == "What is shown?" and opts == ["red, blue and green", "only red", "none"]
    with pytest.raises(BadRow):
        split_inline_options("Options: B: x, A: y")


def test_image_tags_neutralised():
    assert neutralise_image_tags("See <image 1> and <image2>, <image>.") == "See [image 1] and [image 2], [image]."
