"""params.yaml is in the style `dvc exp run -S` writes back, so an experiment's params diff is the
changed key alone (vlmcot.params_style; tools/dvc_style_params.py puts the file there, `vlmcot profile`
keeps an overlaid one there)."""

from __future__ import annotations

import difflib
from pathlib import Path

from dvc.utils.hydra import apply_overrides

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    import vlmcot.params_style

    return vlmcot.params_style


def test_committed_params_are_a_fixed_point_of_dvcs_writer():
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert _tool().dvc_rewrite(text) == text, "run: .venv/bin/python tools/dvc_style_params.py params.yaml"


def _set_and_diff(params: Path, override: str) -> list[str]:
    """The lines `dvc exp run -S <override>` changes in ``params`` ("-old" / "+new")."""
    before = params.read_text(encoding="utf-8").splitlines()
    apply_overrides(params, [override])  # what `dvc exp run -S` does
    return [d for d in difflib.unified_diff(before, params.read_text(encoding="utf-8").splitlines(), lineterm="", n=0)
            if d[:1] in "+-" and not d.startswith(("+++", "---"))]


def _restyled(text: str) -> str:
    """restyle(text), checked: same values, no comment lost, a fixed point of DVC's writer."""
    import yaml

    tool = _tool()
    new = tool.restyle(text)
    assert yaml.safe_load(new) == yaml.safe_load(text)
    assert not tool.comments(text) - tool.comments(new)
    assert tool.dvc_rewrite(new) == new
    return new


def test_set_param_changes_only_that_line(tmp_path):
    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert _set_and_diff(copy, "dpo.train.beta=0.2") == ["-    beta: 0.1", "+    beta: 0.2"]


def test_restyle_keeps_comments_and_values():
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
    assert "y: # after a list: DVC's writer would drop this line" in _restyled(text)


def test_params_under_the_paper_profile_stay_a_fixed_point(tmp_path):
    """A GPU user overlays configs/paper.yaml (and CI the CPU smoke overlay) on params.yaml, then varies
    it with `dvc exp run -S`: the overlaid file must also be in DVC's write-back layout, so the
    experiment's params diff is the one key set. (configs/paper.yaml itself is an overlay, never read by
    DVC, so its own flow style does not matter.)"""
    from vlmcot.profile import apply_profile

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for overlay in ("paper.yaml", "paper-cpu-smoke.yaml"):
        text = apply_profile(params, ROOT / "configs" / overlay)  # what `vlmcot profile` writes
        params.write_text(text, encoding="utf-8")
        assert _tool().dvc_rewrite(text) == text, f"params.yaml under configs/{overlay} is not DVC's layout"
    changed = _set_and_diff(params, "dpo.train.beta=0.2")
    assert [c[0] + c[1:].strip() for c in changed] == ["-beta: 0.1", "+beta: 0.2"]


def test_restyle_moves_what_follows_a_list_of_mappings():
    """A flow list of mappings (as configs/paper.yaml writes its sources) stores the comment and blank
    line after it inside its last item: restyle moves the comment to the next key and drops the blank
    line, so DVC's writer (which rewrites lists whole) has nothing left to drop."""
    text = (
        "a:\n"
        "  srcs:\n"
        "    - {name: x, split: train}\n"
        "    - {name: y, split: test}\n"
        "  # the benchmarks\n"
        "  evals: [1, 2]\n"
        "\n"
        "b:\n"
        "  c: 1\n"
    )
    assert "evals:  # the benchmarks" in _restyled(text)
