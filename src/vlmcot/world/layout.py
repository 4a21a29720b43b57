"""Where things are drawn: per-patch reading targets for an image, recomputed from its facts.

Every family's ``draw(facts, size)`` is a pure function of the facts, so an image can be redrawn
exactly (tested byte for byte) while recording each ``ImageDraw.text`` call. That gives, for each
``patch x patch`` cell of the image, the printed token covering it most ("kiwi", "7", "Name:", or ""
for none) and its dominant colour. The base stage uses these as dense labels to pretrain the vision
tower to read - the stand-in for the web-scale CLIP pretraining a real LLaVA starts from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image, ImageDraw

from vlmcot.world.common import COLORS
from vlmcot.world.doc import PAPER

# Colour classes: 0 none, then the chromatic drawing colours, then the paper / box background tints.
# A patch is a drawing colour when >= CHROMA_MIN_PIXELS of its pixels are within CHROMA_TOL of it
# (a thin bar edge or a shape outline counts), else the background tint most of it shows.
_CHROMA = {k: v for k, v in COLORS.items() if k != "black"}
_PAPERS = {**{f"paper_{k}": v for k, v in PAPER.items()}, "sci_box": (228, 242, 228)}  # sci.py's box fill
COLOUR_CLASSES: tuple[str, ...] = ("none", *_CHROMA, *_PAPERS)
CHROMA_TOL, CHROMA_MIN_PIXELS = 40, 4
PAPER_TOL, PAPER_MIN_PIXELS = 6, 8


@dataclass
class TextItem:
    """One printed token and its pixel box (left, top, right, bottom)."""

    text: str
    box: tuple[float, float, float, float]


@dataclass
class PatchTargets:
    """Row-major per-patch labels of one image: ``tokens[i]`` ("" for none) and ``colours[i]``
    (an index into COLOUR_CLASSES)."""

    tokens: list[str]
    colours: list[int]


def draw_with_text(facts: dict, size: int) -> tuple[Image.Image, list[TextItem]]:
    """Redraw the image ``facts`` describe, returning it and every printed whitespace-separated token."""
    from vlmcot.world.generate import family_of

    fam = family_of(facts)
    calls: list[tuple] = []
    original = ImageDraw.ImageDraw.text

    # Families draw through ImageDraw.text; wrapping it (and restoring it) records positions without
    # each family having to report them.
    def recording(self, xy, text, fill=None, font=None, anchor=None, *args, **kwargs):
        calls.append((self, xy, text, font, anchor))
        return original(self, xy, text, fill, font, anchor, *args, **kwargs)

    ImageDraw.ImageDraw.text = recording
    try:
        img = fam.draw(facts, size)
    finally:
        ImageDraw.ImageDraw.text = original
    items: list[TextItem] = []
    for d, xy, text, font, anchor in calls:
        left, top, _, bottom = d.textbbox(xy, text, font=font, anchor=anchor)
        for m in re.finditer(r"\S+", text):
            x0 = left + font.getlength(text[: m.start()])
            x1 = left + font.getlength(text[: m.end()])
            items.append(TextItem(m.group(), (x0, top, x1, bottom)))
    return img, items


def _overlap(box, x0, y0, x1, y1) -> float:
    w = min(box[2], x1) - max(box[0], x0)
    h = min(box[3], y1) - max(box[1], y0)
    return w * h if w > 0 and h > 0 else 0.0


def patch_targets(facts: dict, size: int, patch: int, min_overlap: float = 6.0) -> tuple[Image.Image, PatchTargets]:
    """The image and its per-patch token / colour labels. A patch takes the token whose box covers
    most of it, when that covers at least ``min_overlap`` pixels."""
    import numpy as np

    if size % patch:
        raise ValueError(f"image size {size} is not a multiple of patch size {patch}")
    img, items = draw_with_text(facts, size)
    g = size // patch
    tokens: list[str] = []
    for gy in range(g):
        for gx in range(g):
            cell = (gx * patch, gy * patch, (gx + 1) * patch, (gy + 1) * patch)
            best = max(items, key=lambda it: _overlap(it.box, *cell), default=None)
            ok = best is not None and _overlap(best.box, *cell) >= min_overlap
            tokens.append(best.text if ok else "")
    px = np.asarray(img.convert("RGB"), dtype=np.int32)
    chroma = np.array(list(_CHROMA.values()))
    papers = np.array(list(_PAPERS.values()))
    colours: list[int] = []
    for gy in range(g):
        for gx in range(g):
            p = px[gy * patch : (gy + 1) * patch, gx * patch : (gx + 1) * patch].reshape(-1, 1, 3)
            near = (np.abs(p - chroma[None]).sum(-1) < CHROMA_TOL).sum(0)
            if near.max() >= CHROMA_MIN_PIXELS:
                colours.append(1 + int(near.argmax()))
                continue
            near = (np.abs(p - papers[None]).sum(-1) < PAPER_TOL).sum(0)
            colours.append(1 + len(_CHROMA) + int(near.argmax()) if near.max() >= PAPER_MIN_PIXELS else 0)
    return img, PatchTargets(tokens, colours)
