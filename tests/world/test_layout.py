"""Per-patch reading targets: the recorded redraw equals the generated image, tokens sit where they
are printed, colours name what is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import every_family
from vlmcot.world import generate
from vlmcot.world.layout import COLOUR_CLASSES, draw_with_text, patch_targets


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return out, generate(every_family(6, 0), out, progress=False)


def test_redraw_is_the_generated_image_and_restores_imagedraw(world):
    from PIL import ImageDraw

    original = ImageDraw.ImageDraw.text
    for r in world[1]:
        img, items = draw_with_text(r.facts, 64)
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(Image.open(r.image).convert("RGB"))), r.id
        assert items, f"{r.id}: nothing printed"
    assert ImageDraw.ImageDraw.text is original


def test_chart_tokens_are_its_labels_and_values_in_their_rows(world):
    chart = next(r for r in world[1] if r.dataset == "synth_chart")
    _, t = patch_targets(chart.facts, 64, 8)
    printed = set(t.tokens) - {""}
    labels = chart.facts["labels"]
    assert set(labels) <= printed
    assert {str(v) for v in chart.facts["values"].values()} <= printed
    # the first label is in the top rows and in the leftmost column, the last one lower down
    rows = {w: [i // 8 for i, x in enumerate(t.tokens) if x == w] for w in labels}
    assert min(rows[labels[0]]) < min(rows[labels[-1]])
    assert any(t.tokens[i * 8] == labels[0] for i in range(8))
    # the bar colour labels some patches, and white paper is not a drawing colour
    colour = COLOUR_CLASSES.index(chart.facts["color"])
    assert t.colours.count(colour) >= 3


def test_every_family_labels_text_and_background(world):
    for r in world[1]:
        _, t = patch_targets(r.facts, 64, 8)
        assert len(t.tokens) == len(t.colours) == 64
        assert 0 < sum(bool(x) for x in t.tokens) < 64, r.id


def test_patch_must_divide_size(world):
    with pytest.raises(ValueError, match="multiple"):
        patch_targets(world[1][0].facts, 64, 7)


def test_unknown_facts_fail_clearly():
    with pytest.raises(ValueError, match="family"):
        patch_targets({"values": [1, 2]}, 64, 8)
