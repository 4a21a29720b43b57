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
from vlmcot.params_style import restyle


def _yaml() -> YAML:
    # round-trip: keeps comments, key order and quotes; the layout written is DVC's (params_style.restyle)
    y = YAML()
    y.preserve_quotes = True
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
    # in the layout `dvc exp run -S` writes back (flow lists of the overlay made block, ...): otherwise a
    # user's first experiment on the profile rewrites the whole file and its params diff is every line
    return restyle(buf.getvalue())


def validate_params(path: str | Path) -> dict[str, Any]:
    """Parse every stage section with its Config; raise ConfigError naming the first bad key."""
    from vlmcot.pipeline import STAGES, load_stage

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
    attr = {"sft": "mixes", "evaluate": "models", "sample": "items", "dpo_round": "rounds"}.get(name)
    if attr:
        return list(getattr(cfg, attr))
    if name == "control":
        from vlmcot.pipeline.control import ITEMS

        return list(ITEMS)
    return [None]


def _vllm_missing(section: str) -> str:
    """A warning when the in-process vLLM backend is selected but this python cannot import vllm."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return ""
    return (f"\n    !! vllm is not importable in this environment ({section}.backend: vllm would fail). vLLM pins"
            f" its own torch/transformers: run it as a server instead - `make vllm-env`, then"
            f" `.venv-vllm/bin/vllm serve MODEL --port 8000`, and set {section}.backend: server with"
            f" {section}.server.urls: [http://HOST:8000/v1] (docs/gpu.md)")


# below this a bf16 LoRA adapter (QLoRA) loses its AdamW updates (see plan)
QLORA_MIN_LR = 1e-5


def plan(path: str | Path) -> list[str]:
    """One line per stage run: the DVC command, plus how it executes at this profile's scale
    (accelerate launch for multi-process training, the generation backend for sampling/eval)."""
    import shlex

    from vlmcot.pipeline import load_stage
    from vlmcot.training.launch import ClusterError

    from vlmcot.pipeline import set_params_path

    lines = []
    configs = validate_params(path)
    set_params_path(str(path))  # a stage's plan_notes may read another section of this file (dpo_round)
    for name, cfg in configs.items():
        module = load_stage(name)
        if name == "base" and not getattr(cfg, "enabled", True):
            lines.append("base: skipped (base.enabled: false - sft starts from sft.base_model)")
            continue
        for item in stage_items(name, cfg):
            flag = {"sft": "--mix", "evaluate": "--model"}.get(name, "--item")
            cmd = f"python stages/{name}.py" + (f" {flag} {item}" if item else "")
            how = ""
            launch = getattr(cfg, "launch", None)
            if launch is not None and launch.distributed and hasattr(module, "launch_command"):
                out = Path(getattr(cfg, "out_dir", ".")) / (item or "") / "launch_config.json"
                try:
                    how = "  -> " + shlex.join(module.launch_command(cfg, str(out)))
                except ClusterError:  # planned outside the allocation: the ranks exist only at run time
                    how = (f"  -> one `accelerate launch` per {launch.cluster} node ({launch.num_processes} processes"
                           " each; machine rank and rendezvous host from the job's environment)")
            elif getattr(cfg, "backend", None) in ("vllm", "openai", "server"):
                how = f"  -> backend {cfg.backend}"
                if cfg.backend == "vllm":
                    v = cfg.vllm
                    how += f" (tensor_parallel_size={v.tensor_parallel_size}, max_model_len={v.max_model_len})"
                    how += _vllm_missing(name)
                elif cfg.backend == "server":
                    how += f" ({len(cfg.server.urls)} vLLM server(s): {', '.join(cfg.server.urls)})"
                    if cfg.server.launch:
                        how += f", each started by the stage: {cfg.server.launch}"
                else:
                    how += f" (model {cfg.openai.model}, {cfg.openai.max_concurrency} in flight)"
            lines.append(f"{name}{'@' + item if item else ''}: {cmd}{how}")
        if hasattr(module, "plan_notes"):
            lines.extend("  ! " + n for n in module.plan_notes(cfg))
        if name in ("sft", "dpo", "control", "grpo"):
            from vlmcot.training.common import master_dtype

            if master_dtype(cfg.dtype, cfg.train, cfg.launch) != cfg.dtype:
                lines.append(f"  ! {name}: dtype {cfg.dtype} without DeepSpeed (no fp32 master weights): the trained "
                             "weights load as float32 under bf16 autocast (AdamW on bf16 weights drops small updates); "
                             "DeepSpeed (train.deepspeed, or launch.accelerate_config with num_processes > 1) "
                             "keeps them in bf16")
            lora = cfg.train.lora
            if lora.enabled and lora.quantize and cfg.train.learning_rate < QLORA_MIN_LR:
                # TRL casts a quantized model's adapters to bf16 (trl SFTTrainer/DPOTrainer); Adam steps of
                # ~lr on LoRA A (|w| ~ 1/sqrt(4096)) round away below |w| * 2^-9 ~ 1.5e-5
                lines.append(f"  ! {name}: QLoRA trains its adapters in bfloat16 (TRL), where AdamW steps of "
                             f"learning_rate {cfg.train.learning_rate:g} round away: set {name}.train.learning_rate "
                             f">= {QLORA_MIN_LR:g} (QLoRA practice: 1e-4) or {name}.train.lora.quantize: null")
        base_model = getattr(cfg, "base_model", None) if name == "sft" else None
        if base_model and base_model.startswith((".", "/", "models/")) and not Path(base_model).exists():
            lines.append(f"  ! sft: MISSING sft.base_model {base_model}: convert the paper's weights first "
                         f"(vlmcot convert-llava <Open-LLaVA-NeXT folder> {base_model}; docs/paper.md)")
    return lines + [f"needs: {n}" for n in preflight(configs)]


def preflight(configs: dict[str, Any]) -> list[str]:
    """What the run needs beyond params (weights, packages); raises ConfigError for what cannot run here."""
    import importlib.util

    from vlmcot.training.lora import check_lora

    needs = []
    for name, cfg in configs.items():
        train = getattr(cfg, "train", None)
        lora = getattr(train, "lora", None)
        if lora is not None:
            try:
                check_lora(lora, f"{name}.train")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        launch = getattr(cfg, "launch", None)
        acc = Path(launch.accelerate_config) if launch is not None and launch.accelerate_config else None
        uses_ds = bool(getattr(train, "deepspeed", None)) or (
            acc is not None and acc.is_file() and "DEEPSPEED" in acc.read_text(encoding="utf-8"))
        if uses_ds and importlib.util.find_spec("deepspeed") is None:
            needs.append(f"{name}: DeepSpeed is not installed: DS_BUILD_OPS=0 pip install -e '.[gpu]'")
    return needs
