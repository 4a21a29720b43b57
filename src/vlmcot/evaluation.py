"""Evaluation: a model x {direct, CoT} x every eval dataset, scored with each record's own metric.

Prompts come from :mod:`vlmcot.prompts`, answer extraction from :mod:`vlmcot.answers`, scores from
:mod:`vlmcot.metrics` (each defined once in the project). Generation goes through a
:class:`~vlmcot.generation.GenerationBackend`, so the same code evaluates the tiny model in-process
and an 8B model behind vLLM.

Metric keys are flat: ``<model>.<mode>.<dataset>.<metric>`` (mean score in [0, 1]), plus
``<model>.<mode>.avg`` (macro average over datasets, as the paper's "avg" column),
``<model>.<mode>.<dataset>.extract_fail`` and ``<model>.<mode>.extract_fail`` (extraction failure rate).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

from vlmcot.answers import extract
from vlmcot.generation import GenerationBackend, GenerationConfig, GenRequest
from vlmcot.metrics import get_metric
from vlmcot.prompts import build_prompt
from vlmcot.records import VQARecord

MODES = ("direct", "cot")


def make_requests(records: list[VQARecord], mode: str, style: str = "paper") -> list[GenRequest]:
    return [GenRequest(id=r.id, image=r.image, prompt=build_prompt(r, mode, style)) for r in records]


SCORINGS = ("project", "vlmevalkit")


def score_answer(record: VQARecord, answer: str | None, scoring: str = "project") -> tuple[str, float]:
    """(metric key, score) of an extracted answer: the project's metric named by record.metric, or
    VLMEvalKit's rule for it (vlmevalkit_scoring, keys ``vlmevalkit_<metric>``)."""
    if scoring == "vlmevalkit":
        from vlmcot import vlmevalkit_scoring as vk

        return vk.metric_name(record), (vk.score(record, answer) if answer is not None else 0.0)
    if scoring != "project":
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    metric = get_metric(record.metric)
    score = float(metric.score(answer, record.all_answers(), record.choices)) if answer is not None else 0.0
    return record.metric, score


def score_response(record: VQARecord, mode: str, text: str, scoring: str = "project") -> dict:
    """One prediction row: the response, what was extracted, and the score under record.metric."""
    ex = extract(text, mode)
    name, score = score_answer(record, ex.answer if ex.ok else None, scoring)
    extra = {}
    if scoring != "project":
        # the project's (lenient) score beside it, for diagnostics: never aggregated into metrics
        extra["project_metric"], extra["project_score"] = score_answer(record, ex.answer if ex.ok else None)
    return {
        "id": record.id,
        "dataset": record.dataset,
        "mode": mode,
        "metric": name,
        "response": text,
        "extracted": ex.answer,
        "extract_ok": ex.ok,
        "extract_reason": ex.reason,
        "answer": record.answer,
        "score": score,
        **extra,
    }


def apply_judge(judge, records: list[VQARecord], rows: list[dict], scoring: str) -> int:
    """Re-extract with the judge model where the rule-based extraction failed (judge.wants), and
    rescore those rows; the judge's reply is kept in ``row["judge"]``. Returns the number judged."""
    todo = []
    for rec, row in zip(records, rows, strict=True):
        pred = row["extracted"] if row["extract_ok"] else None
        if judge.wants(rec, pred):
            # upstream's judge reads the whole response; ours the extracted answer when there is one
            todo.append((rec, row, pred if pred is not None else (row["response"] or "")))
    replies = judge.extract([(rec, pred) for rec, _, pred in todo])
    for (rec, row, _), reply in zip(todo, replies, strict=True):
        row["judge"] = reply
        if reply is not None:
            row["metric"], row["score"] = score_answer(rec, reply, scoring)
            if "project_score" in row:
                row["project_metric"], row["project_score"] = score_answer(rec, reply)
    return len(todo)


def evaluate(
    backend: GenerationBackend,
    records: list[VQARecord],
    gen: GenerationConfig,
    modes: Iterable[str] = MODES,
    style: str = "paper",
    scoring: str = "project",
    judge=None,
) -> list[dict]:
    """Generate and score every record under every mode; one prediction row per (record, mode).
    ``judge`` (a vlmcot.judge.Judge) re-extracts the answers rule-based extraction missed."""
    rows: list[dict] = []
    for mode in modes:
        outputs = backend.generate(make_requests(records, mode, style), gen)
        mode_rows = []
        for rec, out in zip(records, outputs, strict=True):
            row = score_response(rec, mode, out.texts[0], scoring)
            row["num_tokens"] = out.num_tokens[0]
            mode_rows.append(row)
        if judge is not None:
            apply_judge(judge, records, mode_rows, scoring)
        rows.extend(mode_rows)
    return rows


def summarize(rows: list[dict], model: str) -> dict[str, float]:
    """Flat metrics from prediction rows (see the module docstring for the keys)."""
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["mode"], r["dataset"])].append(r)
    out: dict[str, float] = {}
    per_mode: dict[str, list[float]] = defaultdict(list)
    fails: dict[str, list[bool]] = defaultdict(list)
    for (mode, ds), rs in sorted(by.items()):
        metric = rs[0]["metric"]
        acc = statistics.fmean(r["score"] for r in rs)
        out[f"{model}.{mode}.{ds}.{metric}"] = acc
        out[f"{model}.{mode}.{ds}.extract_fail"] = statistics.fmean(0.0 if r["extract_ok"] else 1.0 for r in rs)
        out[f"{model}.{mode}.{ds}.n"] = len(rs)
        per_mode[mode].append(acc)
        fails[mode].extend(not r["extract_ok"] for r in rs)
    for mode, accs in per_mode.items():
        out[f"{model}.{mode}.avg"] = statistics.fmean(accs)
        out[f"{model}.{mode}.extract_fail"] = statistics.fmean(float(f) for f in fails[mode])
        toks = [r.get("num_tokens", 0) for r in rows if r["mode"] == mode]
        out[f"{model}.{mode}.mean_tokens"] = statistics.fmean(toks) if toks else 0.0
    return out


def table_rows(metrics: dict[str, float]) -> tuple[list[str], list[tuple[str, str, dict[str, float]]]]:
    """Parse flat metrics into (datasets, [(model, mode, {dataset: score, "avg": score})])."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    datasets: set[str] = set()
    for key, v in metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[2] == "avg":
            cells.setdefault((parts[0], parts[1]), {})["avg"] = v
        elif len(parts) == 4 and parts[3] not in ("extract_fail", "n"):
            cells.setdefault((parts[0], parts[1]), {})[parts[2]] = v
            datasets.add(parts[2])
    return sorted(datasets), [(m, mode, c) for (m, mode), c in cells.items()]


def markdown_table(metrics: dict[str, float], model_order: list[str] | None = None) -> str:
    """The paper's Table 2 layout: rows model x prompt, columns datasets + avg, scores in percent."""
    datasets, rows = table_rows(metrics)
    order = {m: i for i, m in enumerate(model_order or [])}
    rows.sort(key=lambda r: (order.get(r[0], len(order)), r[0], MODES.index(r[1]) if r[1] in MODES else 9))
    head = ["model", "prompt", *datasets, "avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, mode, c in rows:
        vals = [f"{100 * c[d]:.1f}" if d in c else "-" for d in [*datasets, "avg"]]
        lines.append("| " + " | ".join([model, "CoT" if mode == "cot" else mode, *vals]) + " |")
    return "\n".join(lines) + "\n"
