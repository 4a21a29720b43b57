"""Token-level credit assignment by the DPO model (paper section 5.4, Figure 8).

Each response token gets log pi_dpo(y_i | x, V, y_<i) - log pi_sft(y_i | x, V, y_<i), normalised to
mean 0 over the response: how much more (orange, positive) or less (blue, negative) the DPO model
believes a token than the SFT model did. Two renderings of the same examples:

- :func:`render_html`: a self-contained page, each token on a colored background (tooltip: its score),
  tokens HTML-escaped, whitespace and newlines preserved, a legend;
- :func:`render_png`: a heat map drawn with matplotlib (Agg), tokens laid out as wrapped text boxes.

Both share one blue-white-orange scale centred at 0. Pass tokens as the strings they decode to (e.g.
``tokenizer.decode([id])`` per token), so that concatenating them gives back the response.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The diverging scale, negative -> 0 -> positive (ColorBrewer-like blue and orange).
NEG_RGB = (33, 102, 172)
MID_RGB = (255, 255, 255)
POS_RGB = (230, 97, 1)


@dataclass
class CreditExample:
    title: str  # shown above the tokens, e.g. "chartqa_12 (acc 0.41)"
    tokens: list[str]  # decoded response tokens, in order
    scores: list[float]  # one per token, usually normalize(token_rewards(...))
    label: str | None = None  # "chosen" / "rejected" (or None)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.scores):
            raise ValueError(f"example {self.title!r}: {len(self.tokens)} tokens but {len(self.scores)} scores")
        if not np.all(np.isfinite(np.asarray(self.scores, dtype=np.float64))):
            raise ValueError(f"example {self.title!r}: scores contain inf or nan")


def token_rewards(logp_dpo: Sequence[float] | np.ndarray, logp_sft: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-token log pi_dpo - log pi_sft over the response tokens."""
    a = np.asarray(logp_dpo, dtype=np.float64)
    b = np.asarray(logp_sft, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"per-token log-probs must be 1-D and the same length, got {a.shape} and {b.shape}")
    return a - b


def normalize(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Shift to mean 0 over the response (the paper's normalisation); token order is kept."""
    s = np.asarray(scores, dtype=np.float64)
    return s - s.mean() if s.size else s


def auto_scale(examples: Sequence[CreditExample]) -> float:
    """One scale for a whole page: the largest |score|, so colors compare across examples."""
    m = max((float(np.max(np.abs(e.scores))) for e in examples if e.scores), default=0.0)
    return m if m > 0 else 1.0


def score_rgb(score: float, scale: float) -> tuple[int, int, int]:
    """Blue for negative, orange for positive, white at 0; full color at |score| >= scale."""
    t = max(-1.0, min(1.0, score / scale)) if scale > 0 else 0.0
    end = POS_RGB if t > 0 else NEG_RGB
    a = abs(t)
    return tuple(round(m + (e - m) * a) for m, e in zip(MID_RGB, end))  # type: ignore[return-value]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _text_on(score: float, scale: float) -> str:
    # dark backgrounds need white text to stay readable
    return "#ffffff" if scale > 0 and abs(score) / scale > 0.6 else "#111111"


_LABEL_COLORS = {"chosen": "#1a7f37", "rejected": "#cf222e"}


def render_html(examples: Sequence[CreditExample], title: str = "DPO token-level credit",
                scale: float | None = None) -> str:
    """A standalone HTML page: one block per example, one colored span per token, and a legend."""
    scale = scale or auto_scale(examples)
    esc = html.escape
    stops = ", ".join(_hex(score_rgb(v * scale, scale)) for v in np.linspace(-1, 1, 9))
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>",
        "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#111}",
        ".resp{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.9;"
        "border:1px solid #ddd;padding:.6em;border-radius:4px}",
        ".tok{border-radius:2px}",
        ".label{font-weight:bold;margin-left:.5em}",
        f".bar{{height:1em;width:20em;background:linear-gradient(to right,{stops});border:1px solid #999}}",
        ".legend{display:flex;align-items:center;gap:.6em;font-size:90%}",
        "</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<div class="legend"><span>',
        f"{-scale:.2f} (DPO &lt; SFT)</span><div class=\"bar\"></div><span>+{scale:.2f} (DPO &gt; SFT)</span></div>",
        "<p>Per-token log &pi;<sub>DPO</sub> &minus; log &pi;<sub>SFT</sub>, normalised to mean 0 over each "
        "response. Hover a token for its score.</p>",
    ]
    for ex in examples:
        label = ""
        if ex.label:
            color = _LABEL_COLORS.get(ex.label, "#555")
            label = f'<span class="label" style="color:{color}">{esc(ex.label)}</span>'
        out.append(f"<h3>{esc(ex.title)}{label}</h3>")
        spans = []
        for tok, s in zip(ex.tokens, ex.scores):
            bg, fg = _hex(score_rgb(s, scale)), _text_on(s, scale)
            spans.append(f'<span class="tok" style="background:{bg};color:{fg}" title="{s:+.3f}">{esc(tok)}</span>')
        out.append('<div class="resp">' + "".join(spans) + "</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html(path: str | Path, examples: Sequence[CreditExample], **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(examples, **kwargs), encoding="utf-8")
    return path


def colormap():
    """The blue-white-orange matplotlib colormap matching :func:`score_rgb`."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "credit", [tuple(c / 255 for c in rgb) for rgb in (NEG_RGB, MID_RGB, POS_RGB)])


def render_png(path: str | Path, examples: Sequence[CreditExample], title: str = "DPO token-level credit",
               scale: float | None = None, width_in: float = 10.0, dpi: int = 150,
               fontsize: float = 10.0) -> Path:
    """Draw the examples as wrapped, colored token boxes with a colorbar; write a PNG and return its path.

    Layout is computed in inches from the renderer's own text metrics, so boxes fit their text at any
    font size. A token's leading/trailing spaces become gaps; a newline inside a token starts a new line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import Rectangle

    scale = scale or auto_scale(examples)
    font = FontProperties(family="DejaVu Sans Mono", size=fontsize)
    head_font = FontProperties(family="DejaVu Sans", size=fontsize + 1, weight="bold")
    measure = RendererAgg(100, 100, dpi)

    def width(s: str, prop=font) -> float:  # inches
        return measure.get_text_width_height_descent(s, prop, ismath=False)[0] / dpi

    margin, pad = 0.3, 0.025
    line_h = fontsize / 72 * 1.75
    space_w = width("x")  # monospace: one space = one character cell
    right = width_in - margin

    # pass 1: place every item at (x, y-from-top) in inches
    # (kind, x, y, box width, score, text, color); kind is "title", "head" or "tok"
    items: list[tuple[str, float, float, float, float, str, str]] = []
    y = margin + line_h
    items.append(("title", margin, y, 0.0, 0.0, title, "#111111"))
    y += line_h * 0.6
    for ex in examples:
        y += line_h * 1.2
        head = ex.title + (f"  [{ex.label}]" if ex.label else "")
        items.append(("head", margin, y, 0.0, 0.0, head, _LABEL_COLORS.get(ex.label or "", "#111111")))
        y += line_h
        x = margin
        for tok, s in zip(ex.tokens, ex.scores):
            parts = tok.split("\n")
            for pi, part in enumerate(parts):
                if pi > 0:
                    x, y = margin, y + line_h
                lead = len(part) - len(part.lstrip(" \t"))
                body = part.strip(" \t")
                trail = len(part) - lead - len(body) if body else 0
                x += lead * space_w
                if not body:
                    continue
                w = width(body) + 2 * pad
                if x + w > right and x > margin:  # wrap, as text would
                    x, y = margin, y + line_h
                items.append(("tok", x, y, w, s, body, _text_on(s, scale)))
                x += w + trail * space_w
    height = y + line_h + 0.9  # room for the colorbar

    fig = plt.figure(figsize=(width_in, height), dpi=dpi)
    tr = fig.dpi_scale_trans
    title_font = FontProperties(family="DejaVu Sans", size=fontsize + 3, weight="bold")
    box_h = line_h * 0.82
    for kind, x, yy, w, s, text, color in items:
        yb = height - yy  # text baseline, in inches from the bottom
        if kind == "tok":
            fig.add_artist(Rectangle((x, yb - box_h * 0.3), w, box_h, transform=tr, linewidth=0,
                                     facecolor=_hex(score_rgb(s, scale))))
            x += pad
        prop = {"title": title_font, "head": head_font}.get(kind, font)
        # parse_math=False: a '$' in a response must not switch matplotlib into mathtext
        fig.text(x, yb, text, transform=tr, fontproperties=prop, color=color, parse_math=False)
    cax = fig.add_axes((margin / width_in, 0.3 / height, 0.4, 0.15 / height))
    cb = fig.colorbar(ScalarMappable(norm=Normalize(-scale, scale), cmap=colormap()), cax=cax,
                      orientation="horizontal")
    cax.set_title("token reward log pi_DPO - log pi_SFT, mean 0 per response (blue: DPO < SFT, orange: DPO > SFT)",
                  loc="left", fontsize=fontsize - 1)
    cb.ax.tick_params(labelsize=fontsize - 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    plt.close(fig)
    return path
