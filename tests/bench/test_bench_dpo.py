"""bench/bench_dpo.py: a grid entry's overrides reach DPOTrainConfig with the types a user wrote."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_dpo import overrides  # noqa: E402

from vlmcot.training.dpo import DPOTrainConfig  # noqa: E402


def test_exponent_floats_lists_and_the_empty_entry():
    # YAML 1.1 reads "5e-6" (no dot) as a string; the bench must still pass a float
    kw = overrides("learning_rate=5e-6 beta=0.3 loss_weights=[1.0,0.5] loss_type=[sigmoid,sft]")
    assert kw == {"learning_rate": 5e-6, "beta": 0.3, "loss_weights": [1.0, 0.5], "loss_type": ["sigmoid", "sft"]}
    assert DPOTrainConfig(**kw).learning_rate == 5e-6
    assert overrides("") == {}
