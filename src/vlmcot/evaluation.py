"""Evaluation: a model x {direct, CoT} x every eval dataset, scored with each record's own metric.

Prompts come from :mod:`vlmcot.prompts`, answer extraction from :mod:`vlmcot.answers`, scores from
:mod:`vlmcot.metrics` (each defined once in the project). Generation goes through a
:class:`~vlmcot.generation.GenerationBackend`, so the same code evaluates the tiny model in-process
and an 8B model behind vLLM.

Metric keys are flat: ``<model>.<mode>.<dataset>.<metric>`` (mean score in [0, 1]), plus
``<model>.<mode>.avg`` (macro average over datasets, as the paper's "avg" column),
``<model>.<mode>.<dataset>.extract_fail`` and ``<model>.<mode>.extract_fail`` (extraction failure rate).
With a :class:`~vlmcot.stats.BootstrapConfig` also, per dataset: ``.n`` (questions), ``.lenient`` (the
score when a CoT answer without ``### Answer:`` is read from its last line, vlmcot.answers.extract_lenient),
``.ci_low`` / ``.ci_high`` (95% percentile bootstrap interval over questions, vlmcot.stats) and per op
(the record's ``meta.op``) ``<model>.<mode>.<dataset>.op.<op>.acc`` / ``.n``; per mode ``.avg_ci_low`` /
``.avg_ci_high`` (each dataset resampled on its own) and ``.lenient_avg``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

from vlmcot.answers import extract, extract_lenient
from vlmcot.generation import GenerationBackend, GenerationConfig, GenRequest
from vlmcot.metrics import get_metric
from vlmcot.prompts import build_prompt
from vlmcot.records import VQARecord
from vlmcot.stats import BootstrapConfig, mean_ci

MODES = ("direct", "cot")


def make_requests(records: list[VQARecord], mode: str, style: str) -> list[GenRequest]:
    return [GenRequest(id=r.id, image=r.image, prompt=build_prompt(r, mode, style)) for r in records]


SCORINGS = ("project", "vlmevalkit")


def score_answer(record: VQARecord, answer: str | None, scoring: str) -> tuple[str, float]:
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


def score_response(record: VQARecord, mode: str, text: str, scoring: str) -> dict:
    """One prediction row: the response, what was extracted, and the score under record.metric."""
    ex = extract(text, mode)
    name, score = score_answer(record, ex.answer if ex.ok else None, scoring)
    lenient = ex if ex.ok else extract_lenient(text, mode)
    lenient_score = score if ex.ok else score_answer(record, lenient.answer if lenient.ok else None, scoring)[1]
    extra = {}
    if scoring != "project":
        # the project's (lenient) score beside it, for diagnostics: never aggregated into metrics
        extra["project_metric"], extra["project_score"] = score_answer(record, ex.answer if ex.ok else None, "project")
    return {
        "id": record.id,
        "dataset": record.dataset,
        "op": (record.meta or {}).get("op"),  # question type in the synthetic world (per-op metrics)
        "mode": mode,
        "metric": name,
        "response": text,
        "extracted": ex.answer,
        "extract_ok": ex.ok,
        "extract_reason": ex.reason,
        "answer": record.answer,
        "score": score,
        "lenient_score": lenient_score,
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
            row["lenient_score"] = row["score"]  # the judge read the whole response: as lenient as it gets
            if "project_score" in row:
                row["project_metric"], row["project_score"] = score_answer(rec, reply, "project")
    return len(todo)


def evaluate(
    backend: GenerationBackend,
    records: list[VQARecord],
    gen: GenerationConfig,
    modes: Iterable[str],
    style: str,
    scoring: str,
    judge=None,
) -> list[dict]:
    """Generate and score every record under every mode; one prediction row per (record, mode).

    ``modes`` (of MODES), ``style`` (a vlmcot.prompts style) and ``scoring`` (of SCORINGS) have no
    defaults here: the evaluate stage's Config (params.yaml ``evaluate:``) is where they are set.
    ``judge`` (a vlmcot.judge.Judge), when given, re-extracts the answers rule-based extraction missed.
    """
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


def summarize(rows: list[dict], model: str, bootstrap: BootstrapConfig | None = None) -> dict[str, float]:
    """Flat metrics from prediction rows (see the module docstring for the keys); ``bootstrap`` adds the
    intervals, the lenient score and the per-op accuracies."""
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["mode"], r["dataset"])].append(r)
    out: dict[str, float] = {}
    per_mode: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, list[list[float]]] = defaultdict(list)
    lenient: dict[str, list[float]] = defaultdict(list)
    fails: dict[str, list[bool]] = defaultdict(list)
    for (mode, ds), rs in sorted(by.items()):
        metric = rs[0]["metric"]
        acc = statistics.fmean(r["score"] for r in rs)
        key = f"{model}.{mode}.{ds}"
        out[f"{key}.{metric}"] = acc
        out[f"{key}.extract_fail"] = statistics.fmean(0.0 if r["extract_ok"] else 1.0 for r in rs)
        out[f"{key}.n"] = len(rs)
        per_mode[mode].append(acc)
        fails[mode].extend(not r["extract_ok"] for r in rs)
        if bootstrap is not None:
            s = [float(r["score"]) for r in rs]
            scores[mode].append(s)
            _, out[f"{key}.ci_low"], out[f"{key}.ci_high"] = mean_ci(s, bootstrap)
            # rows written before the lenient score existed count as strict
            out[f"{key}.lenient"] = statistics.fmean(r.get("lenient_score", r["score"]) for r in rs)
            lenient[mode].append(out[f"{key}.lenient"])
            ops: dict[str, list[float]] = defaultdict(list)
            for r in rs:
                if r.get("op") is not None:
                    ops[str(r["op"])].append(r["score"])
            for op, vs in sorted(ops.items()):
                out[f"{key}.op.{op}.acc"] = statistics.fmean(vs)
                out[f"{key}.op.{op}.n"] = len(vs)
    for mode, accs in per_mode.items():
        out[f"{model}.{mode}.avg"] = statistics.fmean(accs)
        if bootstrap is not None:
            _, out[f"{model}.{mode}.avg_ci_low"], out[f"{model}.{mode}.avg_ci_high"] = mean_ci(scores[mode], bootstrap)
            out[f"{model}.{mode}.lenient_avg"] = statistics.fmean(lenient[mode])
        out[f"{model}.{mode}.extract_fail"] = statistics.fmean(float(f) for f in fails[mode])
        toks = [r.get("num_tokens", 0) for r in rows if r["mode"] == mode]
        out[f"{model}.{mode}.mean_tokens"] = statistics.fmean(toks) if toks else 0.0
    return out


# per-dataset keys <model>.<mode>.<dataset>.<suffix> that are not the dataset's accuracy
CELL_STATS = ("extract_fail", "n", "lenient", "ci_low", "ci_high")


def table_cells(metrics: dict[str, float]) -> tuple[list[str], dict[tuple[str, str], dict[str, dict[str, float]]]]:
    """Parse flat metrics into (datasets, {(model, mode): {dataset or "avg": {"acc", "ci_low", ...}}})."""
    cells: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    datasets: set[str] = set()
    avg_keys = {"avg": "acc", "avg_ci_low": "ci_low", "avg_ci_high": "ci_high", "lenient_avg": "lenient",
                "extract_fail": "extract_fail"}
    for key, v in metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[2] in avg_keys:
            cells.setdefault((parts[0], parts[1]), {}).setdefault("avg", {})[avg_keys[parts[2]]] = v
        elif len(parts) == 4:
            stat = parts[3] if parts[3] in CELL_STATS else "acc"
            cells.setdefault((parts[0], parts[1]), {}).setdefault(parts[2], {})[stat] = v
            if stat == "acc":
                datasets.add(parts[2])
    return sorted(datasets), cells


def table_rows(metrics: dict[str, float]) -> tuple[list[str], list[tuple[str, str, dict[str, float]]]]:
    """Parse flat metrics into (datasets, [(model, mode, {dataset: score, "avg": score})])."""
    datasets, cells = table_cells(metrics)
    return datasets, [(m, mode, {d: c["acc"] for d, c in cs.items() if "acc" in c}) for (m, mode), cs in cells.items()]


def _sorted_rows(cells, model_order: list[str] | None):
    order = {m: i for i, m in enumerate(model_order or [])}
    return sorted(cells.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0],
                                                 MODES.index(kv[0][1]) if kv[0][1] in MODES else 9))


def _accuracy_cell(c: dict[str, float] | None) -> str:
    if not c or "acc" not in c:
        return "-"
    if "ci_low" in c and "ci_high" in c:
        return f"{100 * c['acc']:.1f} [{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]"
    return f"{100 * c['acc']:.1f}"


def markdown_table(metrics: dict[str, float], model_order: list[str] | None = None) -> str:
    """The paper's Table 2 layout: rows model x prompt, columns datasets + avg, scores in percent; with
    the evaluate stage's intervals, each cell is ``acc [ci_low, ci_high]`` (95% bootstrap over questions)."""
    datasets, cells = table_cells(metrics)
    head = ["model", "prompt", *datasets, "avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, mode), c in _sorted_rows(cells, model_order):
        if not any("acc" in v for v in c.values()):
            continue
        vals = [_accuracy_cell(c.get(d)) for d in [*datasets, "avg"]]
        lines.append("| " + " | ".join([model, "CoT" if mode == "cot" else mode, *vals]) + " |")
    return "\n".join(lines) + "\n"


def format_table(metrics: dict[str, float], model_order: list[str] | None = None) -> str:
    """Beside Table 2: per cell the lenient score (a CoT answer without ``### Answer:`` read from its last
    line) and the strict extraction failure rate, in percent: a gap that is a format effect shows here."""
    datasets, cells = table_cells(metrics)
    head = ["model", "prompt", *datasets, "avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, mode), c in _sorted_rows(cells, model_order):
        vals = []
        for d in [*datasets, "avg"]:
            v = c.get(d, {})
            lenient = f"{100 * v['lenient']:.1f}" if "lenient" in v else "-"
            fail = f"{100 * v['extract_fail']:.1f}" if "extract_fail" in v else "-"
            vals.append(f"{lenient} (fail {fail})")
        lines.append("| " + " | ".join([model, "CoT" if mode == "cot" else mode, *vals]) + " |")
    return "\n".join(lines) + "\n"
