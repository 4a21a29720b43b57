"""Stage `report`: one markdown report of the run's tables and figures (reports/report.md).

    python stages/report.py          # same as: vlmcot report

Table 1 (filter counts), the pairs built for DPO, Table 2 (the four SFT mixes) and Table 6 (SFT vs
DPO and its second round vs GRPO vs the controls), direct and CoT per dataset, GRPO's training stats
(#16), the reranking curves (Figures 6-7, PNGs drawn from the rerank CSVs), the token-level credit heat
map (Figure 8), the answer-length histogram (Figure 3) and the latest MLflow run of every stage. A missing input becomes a line saying which stage to run,
so the report can be built at any point of the pipeline.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from vlmcot.config import StrictModel
from vlmcot.io import output_path, read_json
from vlmcot.pipeline import STAGES

log = logging.getLogger(__name__)

SECTION = "report"


class Config(StrictModel):
    # the report and its figures (figures go to <out_dir>/figures)
    out_dir: str = "reports"
    # Table 1: the filter stage's counts
    filter_metrics: str = "metrics/filter.json"
    # the pairs stage's counts
    pairs_metrics: str = "metrics/pairs.json"
    # the DPO stage's training stats
    dpo_metrics: str = "metrics/dpo.json"
    # the grpo stage's first/last sampled accuracy, reward and KL (#16)
    grpo_metrics: str = "metrics/grpo.json"
    # per-model evaluation metrics: <eval_metrics_dir>/<model>.json
    eval_metrics_dir: str = "metrics/eval"
    # Table 2 rows (the paper's models 1-4)
    table2_models: list[str] = ["format", "direct", "cot", "both"]
    # Table 6 rows: SFT vs DPO (rounds 1 and 2) vs GRPO vs the controls
    table6_models: list[str] = ["both", "dpo", "dpo_r2", "grpo", "cont_sft", "rft"]
    # row labels (model name -> label)
    labels: dict[str, str] = {
        "format": "1 format only", "direct": "2 direct only", "cot": "3 CoT only", "both": "4 both (SFT)",
        "dpo": "6 SFT + DPO", "dpo_r2": "6b SFT + DPO, round 2", "grpo": "7 SFT + GRPO",
        "cont_sft": "control: continued SFT", "rft": "control: RFT (own correct samples)",
    }
    # rerank curve CSVs (rerank_<dataset>.csv) and the rerank metrics
    plots_dir: str = "metrics/plots/rerank"
    rerank_metrics: str = "metrics/rerank.json"
    # the credit heat map PNG (copied next to the report)
    credit_png: str = "data/credit/credit.png"
    # Figure 3 data
    lengths_csv: str = "metrics/plots/answer_lengths.csv"
    # the claims stage's table (the paper's claims with deltas, intervals and verdicts)
    claims_md: str = "metrics/claims.md"
    # list the latest MLflow run of each stage
    mlflow_runs: bool = True


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def build_report(cfg: Config) -> tuple[str, list[Path]]:
    """(markdown, figure paths). Every section degrades to a note when its input is missing."""
    from vlmcot import report_render as R

    out = Path(cfg.out_dir)
    figs = out / "figures"
    figures: list[Path] = []
    md = ["# vlmcot report", "",
          ("Reproduction of *Improve Vision Language Model Chain-of-thought Reasoning* (arXiv 2410.16198). "
           "Accuracies in percent."), ""]

    def missing(path: str, stage: str) -> str:
        return f"_Not available: {path} is missing (run `dvc repro {stage}`)._\n"

    md.append("## Table 1: distilled CoT examples kept by the correctness filter\n")
    if Path(cfg.filter_metrics).is_file():
        md.append(R.counts_table(read_json(cfg.filter_metrics),
                                 [("total", "records"), ("kept", "kept"), ("dropped_wrong", "wrong answer"),
                                  ("dropped_failed", "no answer"), ("kept_rate", "kept rate")]))
    else:
        md.append(missing(cfg.filter_metrics, "filter"))

    md.append("## Figure 3: answer lengths\n")
    if Path(cfg.lengths_csv).is_file():
        figures.append(R.plot_lengths(cfg.lengths_csv, figs / "answer_lengths.png"))
        md.append(f"![answer lengths]({_rel(figures[-1], out)})\n")
    else:
        md.append(missing(cfg.lengths_csv, "filter"))

    per_model = {}
    for m in dict.fromkeys(cfg.table2_models + cfg.table6_models):
        p = Path(cfg.eval_metrics_dir) / f"{m}.json"
        if p.is_file():
            per_model[m] = read_json(p)
    for title, models in (("Table 2: SFT data mixes", cfg.table2_models),
                          ("Table 6: SFT vs DPO vs GRPO vs controls", cfg.table6_models)):
        md.append(f"## {title}\n")
        have = [m for m in models if m in per_model]
        if have:
            md.append("Accuracy [95% bootstrap interval over questions].\n")
            md.append(R.model_table(per_model, have, cfg.labels))
            md.append("Lenient score (a CoT answer without `### Answer:` read from its last line) and, after "
                      "fail, the strict extraction failure rate:\n")
            md.append(R.model_table(per_model, have, cfg.labels, formats=True))
        lacking = [m for m in models if m not in per_model]
        if lacking:
            md.append(f"_Not evaluated yet: {', '.join(lacking)} (run `dvc repro evaluate@<model>`)._\n")

    md.append("## The paper's claims, tested\n")
    if Path(cfg.claims_md).is_file():
        body = Path(cfg.claims_md).read_text(encoding="utf-8")
        md.append(body.split("\n", 1)[1].lstrip("\n") if body.startswith("# ") else body)  # its own title dropped
    else:
        md.append(missing(cfg.claims_md, "claims"))

    md.append("## DPO pairs and training\n")
    if Path(cfg.pairs_metrics).is_file():
        md.append(R.counts_table(read_json(cfg.pairs_metrics),
                                 [("questions", "questions"), ("mean_accuracy", "sample acc"),
                                  ("chance_accuracy", "chance"), ("dispersion", "dispersion"),
                                  ("dispersion_guess_bound", "guessing bound"), ("kept", "kept"),
                                  ("pairs", "pairs"), ("answer_cut_rate", "answer cut")], total_key="all"))
        md.append("Dispersion: how much more the per-question counts of correct samples spread than one common "
                  "rate would (vlmcot.pairing.dispersion). At or under the guessing bound the model answers every "
                  "question alike, as guessing does, and a chosen side is right by luck.\n")
    else:
        md.append(missing(cfg.pairs_metrics, "pairs"))
    if Path(cfg.dpo_metrics).is_file():
        md.append(R.stats_row(read_json(cfg.dpo_metrics), ["pairs", "global_step", "train_loss", "last_rewards_margins",
                                                            "last_rewards_accuracies", "train_runtime"]))

    md.append("## GRPO training (#16, beyond the paper)\n")
    if Path(cfg.grpo_metrics).is_file():
        md.append("Sampled accuracy, reward and KL to the SFT model over the first and last logged steps "
                  "(the held-out scores are Table 6's grpo row):\n")
        md.append(R.stats_row(read_json(cfg.grpo_metrics), [
            "questions", "global_step", "first_accuracy", "last_accuracy", "first_reward", "last_reward", "last_kl",
            "last_completions_mean_length", "train_runtime"]))
    else:
        md.append(missing(cfg.grpo_metrics, "grpo"))

    md.append("## Figures 6-7: reranking with the DPO reward\n")
    csvs = sorted(Path(cfg.plots_dir).glob("rerank_*.csv")) if Path(cfg.plots_dir).is_dir() else []
    if csvs:
        for c in csvs:
            ds = c.stem.removeprefix("rerank_")
            figures.append(R.plot_rerank(c, output_path(figs, f"rerank_{ds}.png"), f"{ds}: accuracy vs N"))
            md.append(f"![rerank {ds}]({_rel(figures[-1], out)})\n")
        if Path(cfg.rerank_metrics).is_file():
            rm = read_json(cfg.rerank_metrics)
            ns = sorted({int(k.rsplit(".n", 1)[1]) for k in rm if k.startswith("avg.") and ".n" in k})
            if ns:
                methods = [m for m in R.RERANK_LABELS if f"avg.{m}.n{ns[-1]}" in rm]
                md.append("| method (avg over datasets) | " + " | ".join(f"N={n}" for n in ns) + " |\n|---|"
                          + "---|" * len(ns))
                for m in methods:
                    md.append(f"| {R.RERANK_LABELS[m]} | "
                              + " | ".join(f"{100 * rm.get(f'avg.{m}.n{n}', float('nan')):.1f}" for n in ns) + " |")
                md.append("")
    else:
        md.append(missing(f"{cfg.plots_dir}/rerank_*.csv", "rerank"))

    md.append("## Figure 8: token-level credit (log pi_DPO - log pi_SFT, mean 0 per response)\n")
    if Path(cfg.credit_png).is_file():
        dst = figs / "credit.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cfg.credit_png, dst)
        figures.append(dst)
        md.append(f"![credit]({_rel(dst, out)})\n")
        html = Path(cfg.credit_png).with_suffix(".html")
        if html.is_file():
            md.append(f"Interactive version (hover for scores): `{html}`\n")
    else:
        md.append(missing(cfg.credit_png, "credit"))

    if cfg.mlflow_runs:
        md.append("## MLflow runs (latest per stage)\n")
        try:
            runs = R.latest_runs(list(STAGES))
        except Exception as e:  # the report must not die on a tracking-store problem
            runs = []
            md.append(f"_MLflow query failed: {type(e).__name__}: {e}_\n")
        if runs:
            md.append("| stage | run | run id | status | commit |\n|---|---|---|---|---|")
            md.extend(f"| {r['stage']} | {r['run']} | `{r['run_id']}` | {r['status']} | {r['commit']} |" for r in runs)
            md.append("")
        uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        md.append(f"Browse them with `mlflow ui --backend-store-uri {uri}` and open http://127.0.0.1:5000.\n")
    return "\n".join(md) + "\n", figures


def run(cfg: Config, tracker) -> None:
    text, figures = build_report(cfg)
    path = Path(cfg.out_dir) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    tracker.log_artifact(path, "report")
    for f in figures:
        tracker.log_artifact(f, "report/figures")
    tracker.log_metrics({"figures": len(figures)})
    log.info("report: %s (%d figures)", path, len(figures))
