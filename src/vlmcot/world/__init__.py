"""The synthetic visual-reasoning world behind the embedded (CPU, offline) default.

Small PIL-drawn images and questions mirroring the paper's reasoning types, each family its own
dataset with train and eval splits:

- ``synth_chart`` (ChartQA-like, relaxed accuracy): bar charts; lookup, compare, count, arithmetic.
- ``synth_doc`` (DocVQA/InfoVQA-like, ANLS): receipts and forms; copy a field, compare, add.
- ``synth_geo`` (MathVision/G-LLaVA-like, relaxed accuracy): shapes with labelled sides; perimeter,
  area, multi-step sums.
- ``synth_sci`` (AI2D/SQA/A-OKVQA-like, multiple choice): food chains plus a fixed knowledge table.
- ``synth_sign`` (TextVQA-like, VQA accuracy with 10 annotator answers; off by default): signs.

Every record carries ``facts`` (the ground truth a rationale needs; the scripted teacher writes from
it) and ``meta["description"]`` (a complete description of the image, for base pretraining and the
"general" SFT set). Generation is a pure function of the config: same config, same bytes.
"""

from __future__ import annotations

from vlmcot.world.chart import ChartConfig
from vlmcot.world.common import Explanation, FamilyConfig, Sample
from vlmcot.world.doc import DocConfig
from vlmcot.world.generate import FAMILIES, WorldConfig, explain, family_of, generate, solve
from vlmcot.world.geo import GeoConfig
from vlmcot.world.sci import SciConfig
from vlmcot.world.sign import SignConfig

__all__ = [
    "FAMILIES",
    "ChartConfig",
    "DocConfig",
    "Explanation",
    "FamilyConfig",
    "GeoConfig",
    "Sample",
    "SciConfig",
    "SignConfig",
    "WorldConfig",
    "explain",
    "family_of",
    "generate",
    "solve",
]
