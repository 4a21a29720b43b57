"""One source of truth for every default: params.yaml.

Each stage's ``Config()`` (what a test, a notebook or a library caller gets without a params file) must
equal what params.yaml sets, leaf by leaf: the embedded values are written in params.yaml and the
classes' defaults may not disagree with them (a default that drifted would make ``Config()`` silently
run something other than the committed pipeline). Nested models are walked; dict and list values are
compared whole, after validation (so ``4`` and ``4.0`` for a float field agree).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from vlmcot.config import load_params, parse_section
from vlmcot.pipeline import STAGES
from vlmcot.stage import load_stage

ROOT = Path(__file__).resolve().parent.parent
PARAMS = load_params(ROOT / "params.yaml")


def _plain(v):
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def disagreements(section_data: dict, parsed: BaseModel, default: BaseModel, path: str) -> list[str]:
    """Leaf keys of params.yaml's section whose validated value differs from the default's."""
    out = []
    for key, raw in section_data.items():
        got, want = getattr(parsed, key), getattr(default, key)
        here = f"{path}.{key}"
        if isinstance(raw, dict) and isinstance(got, BaseModel) and isinstance(want, BaseModel):
            out += disagreements(raw, got, want, here)
        elif _plain(got) != _plain(want):
            out.append(f"{here}: params.yaml {_plain(got)!r}, Config() default {_plain(want)!r}")
    return out


@pytest.mark.parametrize("stage", list(STAGES))
def test_config_defaults_are_params_yaml(stage):
    module = load_stage(stage)
    data = PARAMS[module.SECTION]
    parsed = parse_section(module.Config, data, module.SECTION)
    default = module.Config()  # every field has a default: a required one fails here
    bad = disagreements(data, parsed, default, module.SECTION)
    assert not bad, "Config defaults disagree with params.yaml:\n  " + "\n  ".join(bad)


def test_disagreement_is_detected():
    """The walker finds a differing leaf, nested or not (so the test above can fail)."""
    module = load_stage("dpo")
    data = {**PARAMS["dpo"], "torch_threads": 1, "train": {**PARAMS["dpo"]["train"], "beta": 0.5}}
    parsed = parse_section(module.Config, data, "dpo")
    bad = disagreements(data, parsed, module.Config(), "dpo")
    assert [b.split(":")[0] for b in bad] == ["dpo.torch_threads", "dpo.train.beta"]
