"""params.yaml is in the style `dvc exp run -S` writes back, so an experiment's params diff is the
changed key alone (tools/dvc_style_params.py puts it there)."""

from __future__ import annotations

import difflib
from pathlib import Path

from dvc.utils.hydra import apply_overrides

from tests.helpers import load_module

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    return load_module(ROOT / "tools" / "dvc_style_params.py")


def test_committed_params_are_a_fixed_point_of_dvcs_writer():
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert _tool().dvc_rewrite(text) == text, "run: .venv/bin/python tools/dvc_style_params.py params.yaml"


def test_set_param_changes_only_that_line(tmp_path):
    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = copy.read_text().splitlines()
    apply_overrides(copy, ["dpo.train.beta=0.2"])  # what `dvc exp run -S dpo.train.beta=0.2` does
    changed = [d for d in difflib.unified_diff(before, copy.read_text().splitlines(), lineterm="", n=0)
               if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    assert changed == ["-    beta: 0.1", "+    beta: 0.2"]


def test_restyle_keeps_comments_and_values(tmp_path):
    import yaml

    tool = _tool()
    text = (
        "# header\n"
        "a:\n"
        "  # the list\n"
        "  xs: [1, 2]\n"
        "  # after a list: DVC's writer would drop this line\n"
        "  y: null\n"
        "  # z's comment\n"
        "  z: {p: 1, q: 2}\n"
    )
    new = tool.restyle(text)
    assert yaml.safe_load(new) == yaml.safe_load(text)
    assert not tool.comments(text) - tool.comments(new)
    assert tool.dvc_rewrite(new) == new
    assert "y: # after a list: DVC's writer would drop this line" in new
