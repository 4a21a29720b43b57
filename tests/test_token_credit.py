import numpy as np
import pytest

from vlmcot.token_credit import CreditExample, normalize, render_html, render_png, score_rgb, token_rewards


def test_token_rewards_and_normalisation_keep_order():
    r = token_rewards([-1.0, -0.5, -3.0], [-2.0, -2.5, -1.0])
    assert r.tolist() == [1.0, 2.0, -2.0]
    n = normalize(r)
    assert n.mean() == pytest.approx(0.0)
    assert n.tolist() == pytest.approx([1 - 1 / 3, 2 - 1 / 3, -2 - 1 / 3])
    assert normalize([]).size == 0
    with pytest.raises(ValueError, match="same length"):
        token_rewards([-1.0], [-1.0, -2.0])


def test_color_sign_and_intensity():
    r, g, b = score_rgb(-1.0, 2.0)
    assert b > r  # negative: blue
    r, g, b = score_rgb(1.0, 2.0)
    assert r > b  # positive: orange
    assert score_rgb(0.0, 2.0) == (255, 255, 255)
    assert score_rgb(5.0, 2.0) == score_rgb(2.0, 2.0)  # clipped at the scale
    light, dark = score_rgb(-0.5, 2.0), score_rgb(-1.5, 2.0)
    assert sum(dark) < sum(light)  # larger magnitude, stronger color


def test_example_validates_lengths():
    with pytest.raises(ValueError, match="ex1"):
        CreditExample("ex1", ["a", "b"], [0.1])


def test_html_escapes_tokens_and_keeps_whitespace():
    ex = CreditExample("<title & co>", ["<script>", " &amp", "\n\n", "### Answer: 4"], [-1.0, 0.5, 0.0, 0.5],
                       "rejected")
    page = render_html([ex])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&amp;amp" in page  # the literal text '&amp' survives as text
    assert "&lt;title &amp; co&gt;" in page
    assert ">\n\n</span>" in page and "white-space:pre-wrap" in page
    assert "rejected" in page and 'class="legend"' in page
    assert 'title="-1.000"' in page


def test_png_written_and_nontrivial(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    tokens = ["The", " bar", " for", " Beef", " is", " 41", ".\n\n", "###", " Answer", ":", " 41", " $x$"] * 6
    scores = normalize(rng.normal(0, 1, len(tokens)))
    path = render_png(tmp_path / "credit.png", [CreditExample("chartqa_1", tokens, list(scores), "chosen"),
                                                CreditExample("chartqa_1", tokens, list(-scores), "rejected")])
    img = Image.open(path).convert("RGB")
    assert img.width > 500 and img.height > 300
    px = np.asarray(img).reshape(-1, 3).astype(int)
    assert len(np.unique(px, axis=0)) > 50
    bluish = ((px[:, 2] - px[:, 0]) > 80).sum()
    orangish = ((px[:, 0] - px[:, 2]) > 80).sum()
    assert bluish > 500 and orangish > 500
