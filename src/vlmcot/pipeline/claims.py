"""Stage `claims`: each of the paper's claims tested on this run, with a paired bootstrap 95% interval.

    python stages/claims.py          # same as: vlmcot claims

Every number comes from the pipeline's outputs: the evaluate stage's per-question predictions
(``<predictions_dir>/<model>.jsonl``), the pairs stage's per-dataset pair counts (which datasets gave
DPO no pairs) and the rerank stage's per-question correctness at the largest N. A claim is "arm A beats
arm B"; its delta is A - B in points over the questions both arms answered, averaged as the paper's
"avg" is (per dataset, then the macro mean), or pooled over questions where the claim is about a set of
ops. The interval resamples question ids, the same resample for both arms (vlmcot.stats). The verdict
follows from the interval alone (vlmcot.stats.verdict): supported (low > 0), contradicted (high < 0),
inconclusive (it contains 0), not measured (an input is missing: the claim is listed, never dropped).
Beyond the paper, issue #16's claims put GRPO and the last round of iterative DPO against SFT, DPO and
the same controls, and rerank with the GRPO model as a second verifier (``<method>.grpo`` columns).

Writes ``out_json`` (every claim with both arms' accuracies, n, delta, interval, verdict, per dataset)
and ``out_md`` (the table the report shows); the deltas also go to MLflow. Neither file is a DVC metrics
file: a dozen claim columns would make `dvc metrics show` unreadable. Both are committed outputs, so
tools/seed_spread.py reads ``out_json`` from each experiment's commit for the spread over seeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import field_validator

from vlmcot.errors import StageError
from vlmcot.config import StrictModel
from vlmcot.io import read_json, read_jsonl, write_json
from vlmcot.stats import BootstrapConfig, paired_diff_ci, verdict

log = logging.getLogger(__name__)

SECTION = "claims"

# the roles a claim names, each played by one evaluated model (evaluate.models names)
ROLES = ("direct_only", "cot_only", "sft", "dpo", "cont_sft", "rft", "grpo", "dpo_round")


class Config(StrictModel):
    # per-question predictions of the evaluate stage: <predictions_dir>/<model>.jsonl
    predictions_dir: str = "data/eval"
    # which evaluated model plays each role: the paper's model 2 (direct data only), 3 (CoT data only),
    # 4 (both: the SFT model), DPO on it, the two controls with DPO's step budget, and beyond the paper
    # (#16) GRPO from the SFT model and the last round of iterative DPO
    models: dict[str, str] = {"direct_only": "direct", "cot_only": "cot", "sft": "both", "dpo": "dpo",
                              "cont_sft": "cont_sft", "rft": "rft", "grpo": "grpo", "dpo_round": "dpo_r2"}
    # the pairs stage's counts: a dataset with no <dataset>.pairs (or 0) gave DPO nothing to learn from
    pairs_metrics: str = "metrics/pairs.json"
    # the rerank stage's per-question correctness of each voting method at the largest N; a method scored
    # with a second verifier is keyed <method>.<verifier> (weighted.grpo)
    rerank_per_question: str = "data/rerank/per_question.jsonl"
    # ops (record meta.op) that need two or more reading + arithmetic steps; absent ones are skipped
    compositional_ops: list[str] = ["sum2", "diff", "total", "area", "sum_area", "diff_area", "sum_perimeter",
                                    "perimeter", "range", "increase", "decrease", "age_plus"]
    # issue #18's bar for CoT(CoT only) - CoT(direct only) on those ops, in points (reported, not a verdict)
    compositional_target: float = 10.0
    # issue #16's bar for CoT(GRPO) - CoT(SFT), in points (reported, not a verdict)
    grpo_target: float = 5.0
    # the paired bootstrap over questions (vlmcot.stats)
    bootstrap: BootstrapConfig = BootstrapConfig()
    # every claim in full
    out_json: str = "metrics/claims.json"
    # the markdown table (a section of reports/report.md)
    out_md: str = "metrics/claims.md"

    @field_validator("models")
    @classmethod
    def _roles(cls, v: dict[str, str]) -> dict[str, str]:
        unknown, lacking = sorted(set(v) - set(ROLES)), [r for r in ROLES if r not in v]
        if unknown or lacking:
            raise ValueError(f"claims.models: roles are {list(ROLES)} (unknown: {unknown}, missing: {lacking})")
        return v


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str  # what the paper says, in a line
    a: tuple[str, str]  # (role, mode) or ("rerank", method): the arm the paper says is better
    b: tuple[str, str]
    scope: str = "all"  # "all" | "compositional" | "unpaired" (eval datasets that gave no pairs) | "rerank"
    target_key: str | None = None  # the Config key of a bar in points, reported beside the verdict


CLAIMS: tuple[Claim, ...] = (
    Claim("cot_data_helps_cot", "Training on CoT data improves CoT prediction (Table 2: model 3 > model 2, CoT)",
          ("cot_only", "cot"), ("direct_only", "cot")),
    Claim("cot_data_helps_direct", "CoT data also helps direct prediction (Table 2: model 4 > model 2, direct)",
          ("sft", "direct"), ("direct_only", "direct")),
    Claim("both_is_best.cot", "Combining CoT and direct data is best, CoT prompt (model 4 > model 3)",
          ("sft", "cot"), ("cot_only", "cot")),
    Claim("both_is_best.direct", "Combining CoT and direct data is best, direct prompt (model 4 > model 2)",
          ("sft", "direct"), ("direct_only", "direct")),
    Claim("cot_beats_direct_on_compositional_ops.both",
          "CoT beats a direct answer where the question needs several steps (SFT model, compositional ops)",
          ("sft", "cot"), ("sft", "direct"), scope="compositional"),
    Claim("cot_beats_direct_on_compositional_ops.cot_data",
          "CoT data is what teaches multi-step reasoning: CoT(CoT only) > CoT(direct only) on compositional ops",
          ("cot_only", "cot"), ("direct_only", "cot"), scope="compositional",
          target_key="compositional_target"),
    Claim("dpo_helps_cot", "DPO on the model's own pairs improves CoT (Table 6: DPO > SFT)",
          ("dpo", "cot"), ("sft", "cot")),
    Claim("dpo_helps_cot.vs_cont_sft", "DPO's gain is not just more steps (DPO > continued SFT, CoT)",
          ("dpo", "cot"), ("cont_sft", "cot")),
    Claim("dpo_helps_cot.vs_rft", "DPO beats training on its own correct samples (DPO > RFT, CoT)",
          ("dpo", "cot"), ("rft", "cot")),
    Claim("dpo_helps_unpaired_datasets", "DPO helps datasets that supplied no pairs (DPO > SFT, CoT)",
          ("dpo", "cot"), ("sft", "cot"), scope="unpaired"),
    Claim("weighted_voting_beats_majority", "DPO-reward weighted voting beats majority voting (Fig. 6-7, largest N)",
          ("rerank", "weighted"), ("rerank", "majority"), scope="rerank"),
    Claim("best_of_n_beats_majority", "Best-of-N by the DPO reward beats majority voting (Fig. 6-7, largest N)",
          ("rerank", "best_of_n"), ("rerank", "majority"), scope="rerank"),
    # beyond the paper (#16): online RL and iterative DPO, against SFT, DPO and the same controls
    Claim("grpo_helps_cot", "Online RL (GRPO) on the model's own samples improves CoT (#16: GRPO > SFT)",
          ("grpo", "cot"), ("sft", "cot"), target_key="grpo_target"),
    Claim("grpo_helps_cot.vs_rft", "GRPO beats training on the model's own correct samples (GRPO > RFT, CoT)",
          ("grpo", "cot"), ("rft", "cot")),
    Claim("grpo_helps_cot.vs_cont_sft", "GRPO's gain is not just more steps (GRPO > continued SFT, CoT)",
          ("grpo", "cot"), ("cont_sft", "cot")),
    Claim("grpo_vs_dpo", "Online RL beats offline DPO on the same questions (GRPO > DPO, CoT)",
          ("grpo", "cot"), ("dpo", "cot")),
    Claim("dpo_round2_helps_cot", "A second DPO round (new samples and pairs from the DPO model) improves CoT "
          "(DPO round 2 > DPO, CoT)", ("dpo_round", "cot"), ("dpo", "cot")),
    Claim("dpo_round2_vs_sft", "Iterative DPO improves CoT over SFT (DPO round 2 > SFT, CoT)",
          ("dpo_round", "cot"), ("sft", "cot")),
    Claim("grpo_weighted_voting_beats_majority",
          "GRPO-verifier weighted voting beats majority voting (as Fig. 6-7 with the GRPO model, largest N)",
          ("rerank", "weighted.grpo"), ("rerank", "majority"), scope="rerank"),
    Claim("grpo_best_of_n_beats_majority",
          "Best-of-N by the GRPO verifier beats majority voting (as Fig. 6-7 with the GRPO model, largest N)",
          ("rerank", "best_of_n.grpo"), ("rerank", "majority"), scope="rerank"),
)


@dataclass
class Arms:
    """Per-question scores by (model, mode), and each question's dataset and op."""

    scores: dict[tuple[str, str], dict[str, float]]
    dataset: dict[str, str]
    op: dict[str, str | None]


def load_predictions(cfg: Config) -> tuple[Arms, list[str]]:
    """The evaluated models' per-question scores; the second value lists the models with no predictions."""

    arms = Arms({}, {}, {})
    missing = []
    for model in dict.fromkeys(cfg.models.values()):
        path = Path(cfg.predictions_dir) / f"{model}.jsonl"
        if not path.is_file():
            missing.append(model)
            continue
        for i, r in enumerate(read_jsonl(path), 1):
            try:
                qid, ds, mode, score = r["id"], r["dataset"], r["mode"], float(r["score"])
            except (KeyError, TypeError, ValueError) as e:
                raise StageError(f"{path}:{i}: not a prediction row ({type(e).__name__}: {e})") from None
            if arms.dataset.setdefault(qid, ds) != ds:
                raise StageError(f"{path}:{i}: question {qid} is in dataset {ds} here, {arms.dataset[qid]} elsewhere")
            arms.op.setdefault(qid, r.get("op"))
            arms.scores.setdefault((model, mode), {})[qid] = score
    return arms, missing


def unpaired_datasets(cfg: Config, datasets: set[str]) -> list[str] | None:
    """Eval datasets that supplied no DPO pairs (None: the pairs metrics are missing)."""
    if not Path(cfg.pairs_metrics).is_file():
        return None
    counts = read_json(cfg.pairs_metrics)
    return sorted(d for d in datasets if not counts.get(f"{d}.pairs"))


def load_rerank(cfg: Config) -> tuple[dict[str, dict[str, float]], dict[str, str], int | None] | None:
    """{method: {question: score}} at the largest N, question -> dataset, and N (None: no rerank file).

    Methods are every numeric column besides id, dataset and n: majority, best_of_n, weighted, oracle,
    and <method>.<verifier> where the rerank stage scored with a second verifier (weighted.grpo)."""
    path = Path(cfg.rerank_per_question)
    if not path.is_file():
        return None
    by: dict[str, dict[str, float]] = {}
    ds: dict[str, str] = {}
    ns = set()
    for r in read_jsonl(path):
        ds[r["id"]] = r["dataset"]
        ns.add(r["n"])
        for m, v in r.items():
            if m not in ("id", "dataset", "n") and isinstance(v, (int, float)) and not isinstance(v, bool):
                by.setdefault(m, {})[r["id"]] = float(v)
    return by, ds, (max(ns) if ns else None)


def _pts(x: float) -> float:
    return round(100.0 * x, 2)


def _result(a: dict[str, float], b: dict[str, float], strata: dict[str, str] | None, cfg: Config) -> dict:
    r = paired_diff_ci(a, b, cfg.bootstrap, strata)
    return {"acc_a": _pts(r["acc_a"]), "acc_b": _pts(r["acc_b"]), "delta": _pts(r["delta"]),
            "ci_low": _pts(r["ci_low"]), "ci_high": _pts(r["ci_high"]), "n": r["n"],
            "verdict": verdict(r["ci_low"], r["ci_high"])}


def _label(arm: tuple[str, str], cfg: Config) -> str:
    who, how = arm
    if who == "rerank":
        method, _, verifier = how.partition(".")
        name = {"weighted": "weighted voting", "best_of_n": "best-of-N",
                "majority": "majority voting"}.get(method, method)
        return f"{name} ({verifier.upper()} verifier)" if verifier else name
    return f"{'CoT' if how == 'cot' else 'direct'}({cfg.models[who]})"


def evaluate_claim(claim: Claim, cfg: Config, arms: Arms, unpaired: list[str] | None, rerank) -> dict:
    out = {"statement": claim.statement, "a": _label(claim.a, cfg), "b": _label(claim.b, cfg), "scope": claim.scope}
    target = getattr(cfg, claim.target_key) if claim.target_key else None
    if target is not None:
        out["target"] = target

    def not_measured(why: str) -> dict:
        return {**out, "verdict": "not measured", "note": why}

    if claim.scope == "rerank":
        if rerank is None:
            return not_measured(f"{cfg.rerank_per_question} is missing (run `dvc repro rerank`)")
        by, strata, n = rerank
        absent = [m for m in (claim.a[1], claim.b[1]) if m not in by]
        if absent:
            return not_measured(f"{cfg.rerank_per_question} has no {' / '.join(absent)} column")
        a, b = by[claim.a[1]], by[claim.b[1]]
        out["n_candidates"] = n
    else:
        keys = [(cfg.models[claim.a[0]], claim.a[1]), (cfg.models[claim.b[0]], claim.b[1])]
        lacking = [f"{m} ({mode})" for m, mode in keys if (m, mode) not in arms.scores]
        if lacking:
            return not_measured(f"not evaluated: {', '.join(lacking)} (run `dvc repro evaluate@<model>`)")
        a, b = arms.scores[keys[0]], arms.scores[keys[1]]
        strata = arms.dataset
    if claim.scope == "compositional":
        ops = set(cfg.compositional_ops)
        keep = {q for q in a if arms.op.get(q) in ops}
        present = sorted({arms.op[q] for q in keep})
        if not keep:
            return not_measured(f"no eval question has an op in claims.compositional_ops {sorted(ops)}")
        out["ops"] = present
        a, b = {q: a[q] for q in keep if q in b}, {q: b[q] for q in keep if q in b}
        pooled = None  # one pool of questions: the claim is about the ops, whichever dataset asks them
    elif claim.scope == "unpaired":
        if unpaired is None:
            return not_measured(f"{cfg.pairs_metrics} is missing (run `dvc repro pairs`)")
        if not unpaired:
            return not_measured("every eval dataset supplied pairs: no dataset to test this on")
        out["datasets"] = unpaired
        a = {q: v for q, v in a.items() if strata[q] in unpaired}
        pooled = strata
    else:
        pooled = strata
    if not a.keys() & b.keys():
        return not_measured("the two arms share no question")
    out.update(_result(a, b, pooled, cfg))
    if target is not None:
        out["meets_target"] = out["ci_low"] > 0 and out["delta"] >= target
    per = {}
    for ds in sorted({strata[q] for q in a.keys() & b.keys()}):
        sa = {q: v for q, v in a.items() if strata[q] == ds}
        per[ds] = _result(sa, b, None, cfg)
    out["per_dataset"] = per
    return out


def compute_claims(cfg: Config) -> dict[str, dict]:
    arms, missing = load_predictions(cfg)
    if missing:
        log.warning("no predictions for %s: their claims are 'not measured'", missing)
    unpaired = unpaired_datasets(cfg, set(arms.dataset.values()))
    rerank = load_rerank(cfg)
    out = {}
    for c in CLAIMS:
        out[c.name] = evaluate_claim(c, cfg, arms, unpaired, rerank)
    return out


def _fmt(x: float) -> str:
    return f"{x:+.1f}"


def claims_markdown(claims: dict[str, dict], cfg: Config) -> str:
    b = cfg.bootstrap
    lines = ["# The paper's claims on this run", "",
             f"Delta = A - B in points, on the questions both arms answered (macro average over datasets; pooled "
             f"over questions for the compositional ops). {int(100 * b.level)}% paired bootstrap interval over "
             f"questions ({b.n_boot} resamples, seed {b.seed}). Verdict: supported (interval above 0), "
             "contradicted (below 0), inconclusive (contains 0), not measured (an input is missing).", "",
             "| claim | paper statement | A | B | A % | B % | delta | 95% CI | n | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in claims.items():
        if c["verdict"] == "not measured":
            lines.append(f"| {name} | {c['statement']} | {c['a']} | {c['b']} | - | - | - | - | - | "
                         f"not measured: {c['note']} |")
            continue
        extra = f" (target >= +{c['target']:g}: {'met' if c['meets_target'] else 'not met'})" if "target" in c else ""
        lines.append(f"| {name} | {c['statement']} | {c['a']} | {c['b']} | {c['acc_a']:.1f} | {c['acc_b']:.1f} | "
                     f"{_fmt(c['delta'])} | [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] | {c['n']} | "
                     f"{c['verdict']}{extra} |")
    lines += ["", "Per dataset (same arms; compositional claims: those ops only):", "",
              "| claim | dataset | A % | B % | delta | 95% CI | n | verdict |", "|---|---|---|---|---|---|---|---|"]
    for name, c in claims.items():
        for ds, r in c.get("per_dataset", {}).items():
            lines.append(f"| {name} | {ds} | {r['acc_a']:.1f} | {r['acc_b']:.1f} | {_fmt(r['delta'])} | "
                         f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {r['n']} | {r['verdict']} |")
    notes = [f"- {name}: ops {', '.join(c['ops'])}" for name, c in claims.items() if "ops" in c]
    notes += [f"- {name}: datasets with no pairs: {', '.join(c['datasets'])}" for name, c in claims.items()
              if "datasets" in c]
    notes += [f"- {name}: N = {c['n_candidates']} candidates per question" for name, c in claims.items()
              if "n_candidates" in c]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def run(cfg: Config, tracker) -> None:
    claims = compute_claims(cfg)
    write_json(cfg.out_json, claims)
    md = claims_markdown(claims, cfg)
    Path(cfg.out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out_md).write_text(md, encoding="utf-8")
    tracker.log_metrics({name: c["delta"] for name, c in claims.items() if "delta" in c})
    tracker.log_text(md, "claims.md")
    log.info("\n%s", md)
