"""Real-dataset adapters: Hugging Face datasets (or local copies, or VLMEvalKit TSVs) -> VQA records.

    from vlmcot.adapters import SourceConfig, load
    cfg = SourceConfig(name="chartqa", split="test", limit=100)
    for rec in load(cfg, "data/prepare/images"):
        ...

Training sources: aokvqa, chartqa_train, docvqa, infovqa, textvqa, mathvision, gllava, scienceqa,
ai2d_official (AllenAI's release, local). Evaluation: aokvqa, chartqa, docvqa, infovqa, textvqa, ai2d, scienceqa (ScienceQA-IMG),
mathvista, ocrbench, mmstar, mmmu; plus vlmevalkit_tsv for any VLMEvalKit TSV. The table of hub
ids, splits, field mappings and metrics is docs/datasets.md.
"""

from vlmcot.adapters import ai2d_official, geoqa, mathvqa, mcq, vlmevalkit, vqa  # noqa: F401  (registration)
from vlmcot.adapters.core import (
    ADAPTERS,
    Adapter,
    LoadReport,
    SourceConfig,
    SourceError,
    get_adapter,
    hub_aliases,
    load,
    load_all,
    register,
)
from vlmcot.adapters.images import ImageError, save_image
from vlmcot.adapters.text import BadRow

__all__ = [
    "ADAPTERS",
    "Adapter",
    "BadRow",
    "ImageError",
    "LoadReport",
    "SourceConfig",
    "SourceError",
    "get_adapter",
    "hub_aliases",
    "load",
    "load_all",
    "register",
    "save_image",
]
