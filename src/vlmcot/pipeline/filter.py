"""Stage `filter`: keep rationales whose teacher answer matches the annotation (paper section 3.1).

A rationale survives when the answer after its last '### Answer:' scores >= ``min_score`` under the
record's own metric (relaxed accuracy, ANLS, VQA accuracy, letter accuracy...). Writes the kept
CoT records, the paper's Table 1 (kept / dropped per dataset, and why) to metrics/filter.json, and the
CoT-vs-direct answer length histogram (Figure 3) as a DVC plot CSV and a PNG logged to MLflow.

    python stages/filter.py        # or: vlmcot filter
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

from pydantic import Field

from vlmcot.answers import extract_answer
from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.images import ImagePolicy
from vlmcot.io import iter_jsonl, write_csv, write_json, write_jsonl
from vlmcot.summary import pct, write_summary
from vlmcot.metrics import get_metric
from vlmcot.records import CoTRecord, VQARecord, load_vqa

SECTION = "filter"
log = logging.getLogger(__name__)


class Config(StrictModel):
    # VQA records the teacher was asked about (train split)
    records: str = "data/prepared/train.jsonl"
    # teacher replies from `distill` (one row per record id)
    replies: str = "data/distill/replies.jsonl"
    # kept CoT records (VQA record + cot + teacher_answer)
    out: str = "data/filter/cot.jsonl"
    # keep a rationale when its answer scores at least this under the dataset's metric
    # (1.0 = exact agreement after the metric's own normalisation, the paper's rule)
    min_score: float = Field(1.0, ge=0, le=1)
    # Table 1 counts
    metrics: str = "metrics/filter.json"
    # headline (DVC metrics): rationales kept and their share, % (Table 1 totals; vlmcot.summary)
    summary: str = "metrics/paper/filter.json"
    # Figure 3: answer length histogram (CSV for `dvc plots`, PNG for MLflow)
    lengths_csv: str = "metrics/plots/answer_lengths.csv"
    lengths_png: str = "data/filter/answer_lengths.png"
    # histogram bin width, in whitespace words
    length_bin: int = Field(5, ge=1)
    # fail if a reply references an unknown record or a record has no reply, beyond this fraction
    max_missing_rate: float = Field(0.0, ge=0, le=1)
    # bad input rows (not UTF-8, not JSON, invalid record, missing image) are named, counted and
    # skipped; above this share the stage fails
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # every record's image is fully decoded once here (a truncated file is a bad row, named), within
    # these limits (vlmcot.images), so no later stage can die on one
    images: ImagePolicy = Field(default_factory=ImagePolicy)


def judge(record: VQARecord, reply: dict, min_score: float) -> tuple[str, str | None]:
    """Return (verdict, teacher answer): verdict in kept / failed:<reason> / wrong."""
    if not reply.get("ok") or not reply.get("text"):
        return f"failed:{reply.get('reason') or 'unknown'}", None
    ext = extract_answer(reply["text"])
    if not ext.ok:
        return f"failed:{ext.reason}", None
    score = get_metric(record.metric).score(ext.answer, record.all_answers(), record.choices)
    return ("kept" if score >= min_score else "wrong"), ext.answer


def length_histogram(cot_lengths: list[int], direct_lengths: list[int], bin_width: int) -> list[dict]:
    top = max([0, *cot_lengths, *direct_lengths])
    rows = []
    for lo in range(0, top + 1, bin_width):
        rows.append({
            "length": lo,
            "cot": sum(lo <= n < lo + bin_width for n in cot_lengths),
            "direct": sum(lo <= n < lo + bin_width for n in direct_lengths),
        })
    return rows


def _plot_png(rows: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    xs = [r["length"] for r in rows]
    w = (xs[1] - xs[0]) if len(xs) > 1 else 1
    ax.bar(xs, [r["direct"] for r in rows], width=w, align="edge", alpha=0.7, label="direct answer")
    ax.bar(xs, [r["cot"] for r in rows], width=w, align="edge", alpha=0.7, label="CoT response")
    ax.set_xlabel("length (whitespace words)")
    ax.set_ylabel("examples")
    ax.set_title("Answer length: CoT vs direct (paper Fig. 3)")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run(cfg: Config, tracker) -> None:
    # images may live beside the records (prepare writes <out_dir>/images), in the repo, or in images.roots
    policy = cfg.images.model_copy(update={"roots": [*cfg.images.roots, str(Path(cfg.records).parent)]})
    records, errors = load_vqa(cfg.records, check_images=True, verify_images=True, images=policy,
                               max_error_rate=cfg.max_bad_rate, key="filter.max_bad_rate", log=log)
    bad_replies: list[str] = []
    replies = {r["id"]: r for _, r in iter_jsonl(cfg.replies, on_error=bad_replies.append) if "id" in r}
    for e in bad_replies[:20]:
        log.warning("skipped reply %s", e)
    missing = [r.id for r in records if r.id not in replies]
    if len(missing) > cfg.max_missing_rate * max(1, len(records)):
        raise StageError(f"{len(missing)} records have no teacher reply (first: {missing[:3]}); "
                         f"rerun `distill` or raise filter.max_missing_rate")

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    kept: list[CoTRecord] = []
    for rec in records:
        reply = replies.get(rec.id)
        if reply is None:
            counts[rec.dataset]["missing"] += 1
            continue
        verdict, answer = judge(rec, reply, cfg.min_score)
        counts[rec.dataset]["total"] += 1
        if verdict == "kept":
            counts[rec.dataset]["kept"] += 1
            kept.append(CoTRecord(**rec.model_dump(), cot=reply["text"], teacher_answer=answer))
        elif verdict == "wrong":
            counts[rec.dataset]["dropped_wrong"] += 1
        else:
            counts[rec.dataset]["dropped_failed"] += 1
            counts[rec.dataset][verdict.replace(":", "_")] += 1
    write_jsonl(cfg.out, kept, sort_key="id")

    metrics: dict[str, float] = {}
    for ds, c in sorted(counts.items()):
        for k, v in sorted(c.items()):
            metrics[f"{ds}.{k}"] = v
        metrics[f"{ds}.kept_rate"] = round(c["kept"] / max(1, c["total"]), 4)
    tot = sum(c["total"] for c in counts.values())
    metrics["total.kept"] = len(kept)
    metrics["total.total"] = tot
    metrics["total.kept_rate"] = round(len(kept) / max(1, tot), 4)
    metrics["total.invalid_records"] = len(errors)
    metrics["total.invalid_replies"] = len(bad_replies)
    write_json(cfg.metrics, metrics)
    write_summary(cfg.summary, {"kept": len(kept), "kept_rate": pct(metrics["total.kept_rate"])})
    tracker.log_metrics(metrics)

    cot_len = [len(k.cot.split()) for k in kept]
    direct_len = [len(k.answer.split()) for k in kept]
    rows = length_histogram(cot_len, direct_len, cfg.length_bin)
    write_csv(cfg.lengths_csv, rows, columns=["length", "cot", "direct"])
    _plot_png(rows, cfg.lengths_png)
    tracker.log_artifact(cfg.lengths_png, "plots")
    tracker.log_artifact(cfg.lengths_csv, "plots")
    log.info("kept %d / %d rationales", len(kept), tot)
