"""The stage runner: bad params fail with one line naming the key, through the real entry points."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _params(tmp_path, section, body):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section].update(body)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def test_unknown_key_fails_cleanly(tmp_path):
    p = _params(tmp_path, "mix", {"format_per_datset": 5})
    r = _run([str(ROOT / "stages/mix.py"), "--params", str(p)], tmp_path)
    assert r.returncode == 2
    assert "mix.format_per_datset: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_type_fails_cleanly_via_cli(tmp_path):
    p = _params(tmp_path, "filter", {"min_score": "high"})
    r = _run(["-m", "vlmcot.cli", "filter", "--params", str(p)], tmp_path)
    assert r.returncode == 2
    assert "filter.min_score" in r.stderr and "'high'" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_lists_every_stage():
    r = _run(["-m", "vlmcot.cli", "--help"], ROOT)
    assert r.returncode == 0
    for name in ["prepare", "distill", "filter", "mix"]:
        assert name in r.stdout
