"""bench/bench_skills.py: every number of a gold rationale gets the role its position says."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_skills import roles  # noqa: E402


def _roles(text):
    return [(text[s : s + 2].strip(" .,"), r) for s, r in roles(text)]


def test_listing_copy_arithmetic_and_final_are_told_apart():
    a = ("I need to add fig and kiwi. Reading each bar of the chart gives fig is 2, kiwi is 8, pie is 7 and jam "
         "is 6. Fig is 2 and kiwi is 8. Their sum is 2 + 8 = 10. Therefore, the answer is 10.\n\n### Answer: 10")
    assert _roles(a) == [("2", "read"), ("8", "read"), ("7", "read"), ("6", "read"), ("2", "copy"), ("8", "copy"),
                         ("2", "arith_operand"), ("8", "arith_operand"), ("10", "arith_result"), ("10", "copy"),
                         ("10", "final")]


def test_running_sums_and_products():
    a = "The total is 2 + 1 = 3, 3 + 9 = 12. The area is 4 × 3 = 12.\n\n### Answer: 12"
    assert [r for _, r in _roles(a)] == ["arith_operand", "arith_operand", "arith_result", "arith_operand",
                                         "arith_operand", "arith_result", "arith_operand", "arith_operand",
                                         "arith_result", "final"]
