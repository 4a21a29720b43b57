"""Stage `pairs`: correct/incorrect preference pairs from the SFT model's samples (paper section 3.3).

Reads the candidates written by `sample` (one row per (question id, sample index), already marked
correct under the dataset's metric) and the VQA records they answer; keeps questions whose sample
accuracy is in [low, high]; pairs correct with incorrect responses at random, at most
``max_pairs_per_question`` per question; truncates both sides to ``truncate_words`` words. Writes the
pairs (TRL preference fields: prompt / chosen / rejected, plus image, answer, dataset), per-dataset
counts and drop reasons to metrics/pairs.json, and the per-question accuracy histogram as a DVC plot.

    python stages/pairs.py        # or: vlmcot pairs
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.io import read_jsonl, write_csv, write_json, write_jsonl
from vlmcot.summary import write_summary
from vlmcot.pairing import build_pairs
from vlmcot.prompts import PROMPT_STYLES
from vlmcot.records import read_candidates, validate_vqa

SECTION = "pairs"
log = logging.getLogger(__name__)


# the Config keys build_pairs takes, passed through by name
PAIRING_KEYS = {"low", "high", "max_pairs_per_question", "truncate_words", "truncate_unit", "seed", "prompt_style"}


class Config(StrictModel):
    # candidates from `sample`: one row per (question id, sample index) with text / extracted / correct
    candidates: str = "data/sample/train/candidates.jsonl"
    # the VQA records the candidates answer (image, question, annotated answer, dataset)
    records: str = "data/prepared/train.jsonl"
    # preference pairs, sorted by id ("<question id>-p<k>")
    out: str = "data/pairs/pairs.jsonl"
    # per-dataset counts, drop reasons, truncation rates (for `dvc metrics`)
    metrics: str = "metrics/pairs.json"
    # headline (DVC metrics): pair and question counts (vlmcot.summary)
    summary: str = "metrics/paper/pairs.json"
    # per-question sample accuracy histogram, bins of 1/N (for `dvc plots`)
    plot: str = "metrics/plots/pair_accuracy_hist.csv"
    # keep questions whose sample accuracy is in [low, high], inclusive (paper: 0.25, 0.85)
    low: float = Field(0.125, ge=0, le=1)
    high: float = Field(0.875, ge=0, le=1)
    # at most this many pairs per question (paper: 3)
    max_pairs_per_question: int = Field(3, ge=1)
    # keep the first N whitespace-separated words of each response; null = no truncation (paper: 90;
    # its ablation: 70 / 90 / 110 / none)
    truncate_words: int | None = Field(90, ge=1)
    # what a word is: "whitespace" (runs of non-space, newlines kept) or "space" (the authors' run_dpo.py:
    # ' '.join(text.split(' ')[:n]), where a newline does not separate words)
    truncate_unit: Literal["whitespace", "space"] = "whitespace"
    # seeds the per-question random pairing
    seed: int = 0
    # prompt layout of the pair's prompt (vlmcot.prompts.PROMPT_STYLES); must be the one `sample` used
    prompt_style: str = "paper"
    # fail the stage if more than this fraction of candidate rows or records is malformed
    max_bad_rate: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _window(self) -> Config:
        if self.low > self.high:
            raise ValueError(f"pairs.low ({self.low}) must be <= pairs.high ({self.high})")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"pairs.prompt_style {self.prompt_style!r} unknown; one of {sorted(PROMPT_STYLES)}")
        return self


def run(cfg: Config, tracker) -> None:
    for p in (cfg.candidates, cfg.records):
        if not Path(p).is_file():
            raise StageError(f"input not found: {p}")
    records, rec_errors = validate_vqa(read_jsonl(cfg.records))
    cands, cand_errors = read_candidates(cfg.candidates)
    for e in (rec_errors + cand_errors)[:20]:
        log.warning("skipped %s", e)
    n_rows = len(cands) + len(cand_errors)
    if cand_errors and len(cand_errors) > cfg.max_bad_rate * n_rows:
        raise StageError(f"{len(cand_errors)} of {n_rows} candidate rows are malformed (first: {cand_errors[0]}); "
                         f"fix `sample` or raise pairs.max_bad_rate")
    n_recs = len(records) + len(rec_errors)
    if rec_errors and len(rec_errors) > cfg.max_bad_rate * n_recs:
        raise StageError(f"{len(rec_errors)} of {n_recs} records are malformed (first: {rec_errors[0]})")

    pairs, stats = build_pairs(cands, {r.id: r for r in records}, **cfg.model_dump(include=PAIRING_KEYS))
    for e in stats.errors[:20]:
        log.warning("%s", e)
    n_questions = sum(s.questions for s in stats.by_dataset.values())
    if stats.errors and len(stats.errors) > cfg.max_bad_rate * max(1, n_questions):
        raise StageError(f"{len(stats.errors)} of {n_questions} questions failed (first: {stats.errors[0]}); "
                         f"are candidates and records from the same split?")
    write_jsonl(cfg.out, pairs, sort_key="id")

    metrics = stats.to_metrics()
    metrics["all.bad_candidate_rows"] = len(cand_errors)
    metrics["all.bad_records"] = len(rec_errors)
    write_json(cfg.metrics, metrics)
    write_summary(cfg.summary, {"pairs": metrics.get("all.pairs", 0), "questions": metrics.get("all.kept", 0)})
    hist = stats.histogram()
    write_csv(cfg.plot, hist)

    for ds in sorted(stats.by_dataset):
        phi, bound = metrics.get(f"{ds}.dispersion"), metrics.get(f"{ds}.dispersion_guess_bound")
        if phi is not None and phi <= bound and metrics[f"{ds}.pairs"]:
            chance = metrics.get(f"{ds}.chance_accuracy")
            log.warning("%s: every question is answered correctly at about one rate (dispersion %.2f <= %.2f over %d "
                        "questions; sample accuracy %.1f%%%s), as guessing would be: the chosen side of its %d pairs is "
                        "likely right by luck. Sample a stronger model, or leave the dataset out of "
                        "sample.items.<item>.datasets.", ds, phi, bound, metrics[f"{ds}.questions"],
                        100 * metrics[f"{ds}.mean_accuracy"],
                        f", chance {100 * chance:.1f}%" if chance is not None else "", metrics[f"{ds}.pairs"])
    tracker.log_metrics(metrics)
    for k, row in enumerate(hist):  # the histogram as a stepped series: step k = accuracy k/N
        tracker.log_metrics({"hist.questions": row["questions"], "hist.kept": row["kept"]}, step=k)
    tracker.log_artifact(cfg.plot, "plots")
    tracker.log_artifact(cfg.metrics)
    if pairs:
        tracker.log_text(json.dumps([p.model_dump(mode="json", exclude_none=True) for p in pairs[:5]], indent=2),
                         "pairs_examples.json")
    if not pairs:
        log.warning("no pairs at all: see the drop reasons in %s", cfg.metrics)
    log.info("%d pairs from %d of %d questions", len(pairs), metrics["all.kept"], metrics["all.questions"])
