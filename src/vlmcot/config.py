"""Typed, validated stage configs read from params.yaml.

Each stage reads exactly one top-level section of params.yaml into a pydantic model that forbids
unknown keys and does not coerce types: pydantic strict mode (``true`` is not an int, ``"3"`` is not
a number, ``1.5`` is not an int), no ``.inf``/``.nan`` in any float (no params key means "unbounded"
by infinity; use null where a key allows it), and a key written twice in one YAML mapping is an
error rather than "the last one wins". A bad value fails with one line naming the key, e.g.
``params.yaml: prepare.world.n_train: Input should be a valid integer (got True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound="StrictModel")


class ConfigError(ValueError):
    """A params problem a user can fix; the message names the offending key."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True, frozen=False
    )


class DuplicateKeyError(yaml.YAMLError):
    """A mapping key written twice (the YAML spec forbids it; PyYAML would keep the last)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # unhashable: SafeLoader reports it itself
                if key in seen:
                    raise DuplicateKeyError(
                        f"line {key_node.start_mark.line + 1}: key {key!r} is written twice in one mapping "
                        f"(first at line {seen[key] + 1}); remove one"
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def load_yaml(text: str):
    """Parse YAML like yaml.safe_load, but a duplicated key is an error (used for every params file)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _format_validation_error(err: ValidationError, section: str, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (section, *e["loc"]) if p != "")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see the commented params.yaml)"
        inp = e.get("input")
        got = "" if e["type"] in ("extra_forbidden", "missing") else f" (got {inp!r})"
        if len(got) > 120:
            got = got[:117] + "...)"
        lines.append(f"{source}: {loc}: {msg}{got}")
    return "\n".join(lines)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of stage sections")
    return data


def parse_section(cls: type[T], data: Any, section: str, source: str = "params.yaml") -> T:
    """Validate one section's raw data into ``cls``; raise ConfigError naming the key on failure."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {section}: must be a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, section, source)) from None


def load_section(cls: type[T], section: str, path: str | Path = "params.yaml") -> T:
    params = load_params(path)
    if section not in params:
        raise ConfigError(f"{path}: missing section '{section}'")
    return parse_section(cls, params[section], section, str(path))


def save_resolved(cfg: BaseModel, path: str | Path) -> None:
    """Write the fully resolved config (defaults filled in) beside an output, as litgpt does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
