"""`dvc plots show` renders offline: the project's HTML template inlines vega / vega-lite / vega-embed
(.dvc/plots/template.html, tools/build_plots_template.py), every figure the README names is declared
once, and the training curves are plots too. A structure check of the page DVC writes (pure Python);
where chromium is installed, also the rendered DOM (every plot drew its canvas)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DVC = os.path.join(os.path.dirname(sys.executable), "dvc")
TRAIN = {"dpo": "step,loss,rewards_accuracies,rewards_margins,rewards_chosen,rewards_rejected\n"
                "5,0.69,0.5,0.01,0.0,-0.01\n10,0.66,0.7,0.05,0.02,-0.03\n",
         "sft_both": "step,loss\n5,3.1\n10,2.4\n",
         "grpo": "step,loss,reward,reward_all,accuracy,kl,completions_mean_length,band_share_in_band,entropy\n"
                 "2,0.01,0.2,0.1,0.1,0.0,70,0.5,0.3\n4,-0.02,0.3,0.15,0.15,0.001,66,0.6,0.3\n"}


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.script_src: list[str] = []
        self.libs: list[str] = []
        self.divs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.script_src.append(a["src"])
        if tag == "script" and a.get("data-lib"):
            self.libs.append(a["data-lib"].split("@")[0])
        if tag == "div" and a.get("id"):
            self.divs.append(a["id"])


def _rerank_stand_ins(plots_dir: Path) -> None:
    """The rerank curves as the stage writes them for params.yaml's verifiers (its own code, on one stand-in
    question): the committed CSVs are the last run's, which may predate a verifier dvc.yaml now draws."""
    from vlmcot.config import load_params, parse_section
    from vlmcot.pipeline import rerank
    from vlmcot.voting import Question

    cfg = parse_section(rerank.Config, load_params(ROOT / "params.yaml")["rerank"], "rerank")
    q = {v: [Question("q", ["1", "2", "1", "2"], [0.0, 1.0, 0.5, -1.0], lambda a: a == "1")] for v in cfg.verifiers}
    curves = rerank.verifier_curves(cfg, q, None)
    rerank.write_curves(plots_dir, {ds: curves for ds in ("synth_chart", "synth_doc", "synth_geo", "synth_sci")})


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    shutil.copytree(ROOT / "metrics" / "plots", repo / "metrics" / "plots",
                    ignore=shutil.ignore_patterns("train", "rerank"))
    (repo / "metrics/plots/train").mkdir()
    for name, text in TRAIN.items():
        (repo / f"metrics/plots/train/{name}.csv").write_text(text)
    _rerank_stand_ins(repo / "metrics/plots/rerank")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    r = subprocess.run([DVC, "plots", "show", "-o", "out"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "failed to load" not in r.stdout + r.stderr, r.stdout + r.stderr
    return repo / "out" / "index.html"


def test_page_needs_no_network(page):
    text = page.read_text(encoding="utf-8")
    p = Page()
    p.feed(text)
    assert p.script_src == []  # nothing loaded from anywhere: the libraries are inline
    assert sorted(p.libs) == ["vega", "vega-embed", "vega-lite"]
    assert "cdn.jsdelivr" not in text
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert (ROOT / ".dvc" / "plots" / f"LICENSE.{lib}.txt").read_text().count("BSD-3-Clause") >= 1


def test_every_figure_once_with_data(page):
    text = page.read_text(encoding="utf-8")
    p = Page()
    p.feed(text)
    rerank = [f"metrics_plots_rerank_rerank_{ds}_csv" for ds in ("synth_chart", "synth_doc", "synth_geo", "synth_sci")]
    train = [f"metrics_plots_train_{n}_csv" for n in sorted(TRAIN)]
    assert sorted(p.divs) == sorted(["answer_lengths", "pair_accuracy", "dpo_rewards", "grpo_rewards", "grpo_kl_length",
                                     *rerank, *train])
    # each plot embeds a vega-lite spec with data rows
    specs = re.findall(r"var spec = (\{.*?\});\s*vegaEmbed", text, flags=re.S)
    assert len(specs) == len(p.divs)
    for s in specs:
        assert json.loads(s)["data"]["values"], s[:200]


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no chromium")
def test_chromium_draws_every_plot(page):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                        "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = r.stdout
    p = Page()
    p.feed(page.read_text(encoding="utf-8"))
    # vega-embed renders each chart into its div: one canvas (or svg) per plot
    drawn = dom.count("<canvas") + dom.count('class="marks"')
    assert drawn >= len(p.divs), (drawn, r.stderr[-2000:])
