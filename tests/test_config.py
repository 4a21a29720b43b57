from typing import Literal

import pytest
from pydantic import Field

from vlmcot.config import ConfigError, StrictModel, load_section, parse_section, save_resolved


class Inner(StrictModel):
    n: int = 3
    kind: Literal["a", "b"] = "a"


class Cfg(StrictModel):
    lr: float = Field(1e-3, gt=0)
    inner: Inner = Inner()


def test_defaults_and_values():
    cfg = parse_section(Cfg, {"lr": 0.5, "inner": {"n": 7}}, "sft")
    assert cfg.lr == 0.5 and cfg.inner.n == 7 and cfg.inner.kind == "a"


def test_unknown_key_names_full_path():
    with pytest.raises(ConfigError) as e:
        parse_section(Cfg, {"inner": {"nn": 1}}, "sft")
    assert "params.yaml: sft.inner.nn: unknown key" in str(e.value)


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as e:
        parse_section(Cfg, {"inner": {"n": "abc"}}, "sft")
    msg = str(e.value)
    assert "sft.inner.n" in msg and "'abc'" in msg


def test_out_of_range_and_literal():
    with pytest.raises(ConfigError, match=r"sft\.lr"):
        parse_section(Cfg, {"lr": -1}, "sft")
    with pytest.raises(ConfigError, match=r"sft\.inner\.kind"):
        parse_section(Cfg, {"inner": {"kind": "c"}}, "sft")


def test_section_must_be_mapping_and_exist(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("sft: 3\n")
    with pytest.raises(ConfigError, match="sft: must be a mapping"):
        load_section(Cfg, "sft", p)
    with pytest.raises(ConfigError, match="missing section 'dpo'"):
        load_section(Cfg, "dpo", p)


def test_bad_yaml(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("sft: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_section(Cfg, "sft", p)


def test_save_resolved(tmp_path):
    save_resolved(Cfg(), tmp_path / "m" / "config.json")
    assert '"lr": 0.001' in (tmp_path / "m" / "config.json").read_text()
