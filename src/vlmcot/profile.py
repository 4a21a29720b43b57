"""Profiles: switch the whole pipeline between scales by overlaying a profile on params.yaml.

``configs/paper.yaml`` holds the paper-scale values (sections or single keys); applying it merges them
into params.yaml key by key, keeping params.yaml's comments, so `dvc repro` then runs the same stages
at paper scale. `git checkout params.yaml` returns to the embedded default.

    vlmcot profile configs/paper.yaml          # rewrite params.yaml in place
    vlmcot plan                                # what each stage would run (accelerate/vLLM commands)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from vlmcot.config import ConfigError, load_params, parse_section


def _yaml() -> YAML:
    y = YAML()  # round-trip: keeps comments and key order
    y.preserve_quotes = True
    y.width = 120
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _merge(dst: Any, src: Any) -> Any:
    """Overlay src onto dst: mappings merge key by key, anything else replaces."""
    if isinstance(dst, dict) and isinstance(src, dict):
        for k, v in src.items():
            dst[k] = _merge(dst[k], v) if k in dst else v
        return dst
    return src


def _load(y: YAML, path: str | Path) -> Any:
    """Round-trip load; a key written twice is a one-line ConfigError (ruamel refuses duplicates)."""
    from ruamel.yaml.constructor import DuplicateKeyError

    try:
        return y.load(Path(path).read_text(encoding="utf-8")) or CommentedMap()
    except DuplicateKeyError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else "?"
        raise ConfigError(f"{path}: line {line}: a key is written twice in one mapping ({e.problem}); remove one") from None


def apply_profile(params_path: str | Path, profile_path: str | Path) -> str:
    """params.yaml text with the profile overlaid (comments of params.yaml kept)."""
    y = _yaml()
    base = _load(y, params_path)
    over = _load(y, profile_path)
    if not isinstance(over, dict):
        raise ConfigError(f"{profile_path}: a profile must be a mapping of params sections")
    unknown = [k for k in over if k not in base]
    if unknown:
        raise ConfigError(f"{profile_path}: sections not in {params_path}: {', '.join(map(str, unknown))}")
    _merge(base, over)
    buf = io.StringIO()
    y.dump(base, buf)
    return buf.getvalue()


def validate_params(path: str | Path) -> dict[str, Any]:
    """Parse every stage section with its Config; raise ConfigError naming the first bad key."""
    from vlmcot.pipeline import STAGES
    from vlmcot.stage import load_stage

    params = load_params(path)
    configs = {}
    for name in STAGES:
        module = load_stage(name)
        if module.SECTION not in params:
            raise ConfigError(f"{path}: missing section '{module.SECTION}'")
        configs[name] = parse_section(module.Config, params[module.SECTION], module.SECTION, str(path))
    return configs


def stage_items(name: str, cfg: Any) -> list[str | None]:
    """The DVC foreach items of a stage, read from its config (None: not a foreach stage)."""
    attr = {"sft": "mixes", "evaluate": "models", "sample": "items"}.get(name)
    if attr:
        return list(getattr(cfg, attr))
    if name == "control":
        from vlmcot.pipeline.control import ITEMS

        return list(ITEMS)
    return [None]


def plan(path: str | Path) -> list[str]:
    """One line per stage run: the DVC command, plus how it executes at this profile's scale
    (accelerate launch for multi-process training, the generation backend for sampling/eval)."""
    import shlex

    from vlmcot.stage import load_stage

    lines = []
    for name, cfg in validate_params(path).items():
        module = load_stage(name)
        if name == "base" and not getattr(cfg, "enabled", True):
            lines.append("base: skipped (base.enabled: false - sft starts from sft.base_model)")
            continue
        for item in stage_items(name, cfg):
            flag = {"sft": "--mix", "evaluate": "--model"}.get(name, "--item")
            cmd = f"python stages/{name}.py" + (f" {flag} {item}" if item else "")
            how = ""
            launch = getattr(cfg, "launch", None)
            if launch is not None and launch.num_processes > 1 and hasattr(module, "launch_command"):
                out = Path(getattr(cfg, "out_dir", ".")) / (item or "") / "launch_config.json"
                how = "  -> " + shlex.join(module.launch_command(cfg, str(out)))
            elif getattr(cfg, "backend", None) in ("vllm", "openai"):
                how = f"  -> backend {cfg.backend}"
                if cfg.backend == "vllm":
                    v = cfg.vllm
                    how += f" (tensor_parallel_size={v.tensor_parallel_size}, max_model_len={v.max_model_len})"
                else:
                    how += f" (model {cfg.openai.model}, {cfg.openai.max_concurrency} in flight)"
            lines.append(f"{name}{'@' + item if item else ''}: {cmd}{how}")
    return lines
