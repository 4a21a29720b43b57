"""Stage `rerank`: trained models as verifiers of the SFT model's samples (paper 5.2, Figures 6 and 7).

    python stages/rerank.py          # same as: vlmcot rerank

Each verifier (``verifiers``: name -> policy and reference) gives every held-out candidate (``sample@eval``)
the reward r(y) = beta * sum over response tokens of log pi_policy - log pi_reference
(vlmcot.voting.sequence_reward, the one definition; log-probs from vlmcot.logprobs, teacher-forced,
batched). The paper's verifier is the DPO model against the SFT model it was trained from; a GRPO model
(KL-regularised against the same SFT model) or a later DPO round (against the round before) is read the
same way. beta is the one the policy was trained with, read from the resolved config its stage saved
beside it (``<policy>/vlmcot_config.json``, ``train.beta``), never restated here. A model several
verifiers use (the SFT reference of both dpo and grpo) is loaded and scored once.

The first verifier is the primary one: its reward is ``reward`` and its curves ``best_of_n`` and
``weighted``, the names the claims stage, the report and the headline read. Every other verifier v adds
``reward.<v>``, ``best_of_n.<v>`` and ``weighted.<v>``; majority voting and the oracle use no reward and
are computed once. A candidate whose reward is not finite under some verifier (an inf or nan log-prob) is
named in the log, counted (``unscorable``) and left out for every verifier, so all methods vote over the
same candidates; they count against ``max_bad_rate`` with the malformed rows. Then, per dataset, accuracy
at N = 1, 2, 4, ... of self-consistency (majority vote), best-of-N, weighted voting and the oracle
(pass@N) via vlmcot.voting.rerank_curves. Writes:

- ``rewards``: one row per candidate: id, sample, dataset, extracted, correct, tokens, the primary's
  summed log-probs ``logp_dpo`` (policy) and ``logp_sft`` (reference) and ``reward``, and per other
  verifier v ``logp_policy.<v>``, ``logp_reference.<v>`` and ``reward.<v>``;
- ``<plots_dir>/rerank_<dataset>.csv``: columns n, majority, best_of_n, weighted, oracle, and
  best_of_n.<v>, weighted.<v> per other verifier (DVC plots);
- ``metrics``: ``<dataset>.<column>.n<N>`` and ``avg.<column>.n<N>`` (macro average over datasets), the
  mean reward gap of correct over wrong candidates ``<dataset>.reward_gap[.<v>]``;
- ``per_question``: one row per question at its dataset's largest N (id, dataset, n, one 0-1 value per
  column, the share of its subsets the method got right): what the claims stage's paired bootstrap
  resamples. Averaged per dataset these rows are exactly the curves' last point;
- ``summary``: the DVC metrics headline at the largest N, % (vlmcot.summary.rerank_summary, plus
  ``best_of_n.<v>`` and ``weighted.<v>`` per other verifier).
"""

from __future__ import annotations

import logging
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.io import output_path, read_jsonl, write_csv, write_json, write_jsonl
from vlmcot.summary import pct, rerank_summary, write_summary

log = logging.getLogger(__name__)

SECTION = "rerank"


class Verifier(StrictModel):
    """One verifier: r(y) = beta * sum_t [log pi_policy - log pi_reference], beta the policy's own."""

    # the trained model whose log-ratio is the reward (a dpo, dpo_round or grpo stage's out_dir: its
    # vlmcot_config.json holds train.beta)
    policy: str
    # the model the policy was trained from and regularised towards (its DPO reference or GRPO KL reference)
    reference: str


class Config(StrictModel):
    # candidates sampled from the SFT model on eval questions (sample@eval)
    candidates: str = "data/sample/eval/candidates.jsonl"
    # the VQA records they answer
    records: str = "data/prepared/eval.jsonl"
    # the verifiers by name; the first is the primary one (columns best_of_n, weighted: what the claims,
    # the report and the headline read), every other v adds best_of_n.<v> and weighted.<v>
    verifiers: dict[str, Verifier] = {
        # the paper's verifier: the DPO model against the SFT model it was trained from
        "dpo": Verifier(policy="models/dpo", reference="models/sft/both"),
        # online RL (#16): GRPO from the same SFT model, which is also its KL reference
        "grpo": Verifier(policy="models/grpo", reference="models/sft/both"),
        # iterative DPO (#16): round 2 against round 1, its reference
        "dpo_r2": Verifier(policy="models/dpo_rounds/r2", reference="models/dpo"),
    }
    # weighted voting: softmax of rewards / temperature, rank weights, or raw rewards
    weighting: Literal["softmax", "rank", "raw"] = "softmax"
    # softmax temperature for weighted voting
    temperature: float = Field(1.0, gt=0)
    # random subsets of size N averaged per question and N (one when N is all candidates)
    n_subsets: int = Field(16, ge=1)
    # seeds the subsets
    seed: int = 0
    # the N values (None: 1, 2, 4, ... up to the candidates per question)
    ns: list[int] | None = None
    # score EOS too (the model's decision to stop is part of the response)
    include_eos: bool = True
    # prompt layout the candidates were sampled with
    prompt_style: str = "paper"
    # an answer is correct when it scores at least this under the record's metric
    min_score: float = Field(1.0, ge=0, le=1)
    # sequences per teacher-forced forward
    batch_size: int = Field(32, ge=1)
    # per-candidate rewards
    rewards: str = "data/rerank/rewards.jsonl"
    # per-question correctness of each method at the largest N (the claims stage's input)
    per_question: str = "data/rerank/per_question.jsonl"
    # curve CSVs: <plots_dir>/rerank_<dataset>.csv
    plots_dir: str = "metrics/plots/rerank"
    # accuracy at each N per method per dataset
    metrics: str = "metrics/rerank.json"
    # headline (DVC metrics): the voting accuracies at the largest N, % (vlmcot.summary)
    summary: str = "metrics/paper/rerank.json"
    # image paths are relative to this folder
    root: str = "."
    # weights dtype (paper scale: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuda when available, else cpu (or "cuda:1", "cpu")
    device: str = "auto"
    # fail if more than this share of candidate rows is malformed, answers no record or gets no finite reward
    max_bad_rate: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data):
        if isinstance(data, dict) and "beta" in data:
            raise ValueError(
                "rerank.beta was removed: each verifier's beta is its policy's own (dpo.train.beta, grpo.train.beta), "
                "read from <policy>/vlmcot_config.json; delete the key (change dpo.train.beta and rerun dpo to "
                "change it)")
        old = [k for k in ("policy", "reference") if isinstance(data, dict) and k in data]
        if old:
            raise ValueError(
                f"rerank.{' and rerank.'.join(old)} {'was' if len(old) == 1 else 'were'} replaced by rerank.verifiers, "
                "name -> {policy, reference} (the first is the primary verifier), e.g. verifiers: {dpo: {policy: "
                "models/dpo, reference: models/sft/both}}; set rerank.verifiers.<name>.policy / .reference instead")
        return data

    @field_validator("verifiers")
    @classmethod
    def _names(cls, v: dict[str, Verifier]) -> dict[str, Verifier]:
        if not v:
            raise ValueError("name at least one verifier (the first is the primary one)")
        for name in v:
            # the name is a suffix of CSV columns and of dotted metric keys
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"verifier name {name!r} must be letters, digits, '_' or '-' (no '.')")
        return v

    @property
    def primary(self) -> str:
        """The first verifier: its columns keep the plain names (best_of_n, weighted, reward)."""
        return next(iter(self.verifiers))


def column(cfg: Config, name: str, verifier: str) -> str:
    """A verifier's column or metric name: ``name`` for the primary verifier, ``<name>.<verifier>`` otherwise."""
    return name if verifier == cfg.primary else f"{name}.{verifier}"


# the resolved config the dpo and grpo stages save beside their model (vlmcot.pipeline.dpo, .grpo)
POLICY_CONFIG = "vlmcot_config.json"


def policy_beta(policy: str | Path) -> float:
    """The beta the policy was trained with (``train.beta`` of its saved resolved config)."""
    import json

    path = Path(policy) / POLICY_CONFIG
    if not path.is_file():
        raise StageError(f"{path} not found: the reward's beta comes from the config the dpo or grpo stage saves "
                         "beside its model; point rerank.verifiers.<name>.policy at a model such a stage wrote")
    try:
        beta = json.loads(path.read_text(encoding="utf-8"))["train"]["beta"]
    except (ValueError, KeyError, TypeError) as e:
        raise StageError(f"{path}: no train.beta in the saved config ({type(e).__name__}: {e})") from None
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise StageError(f"{path}: train.beta must be a positive number (the reward is beta times the log-ratio "
                         f"to the reference), got {beta!r}")
    return float(beta)


def model_key(path: str | Path) -> str:
    """One key per model folder however it is spelt (``models/sft/both/`` is ``models/sft/both``)."""
    return os.path.normpath(path)


def candidate_logprobs(cfg: Config, cands, records) -> dict[str, list]:
    """Each candidate's per-token log-probs (vlmcot.logprobs.ResponseLogprobs) in candidate order, under
    every model a verifier names, keyed by model_key(path): a model several verifiers use is scored once."""
    from vlmcot.logprobs import ScoreRequest, response_logprobs
    from vlmcot.models import load_model_and_processor
    from vlmcot.models.loading import free_device_memory
    from vlmcot.prompts import build_prompt

    prompts = {qid: build_prompt(rec, "cot", cfg.prompt_style) for qid, rec in records.items()}
    reqs = [ScoreRequest(f"{c.id}#{c.sample}", records[c.id].image, prompts[c.id], c.text) for c in cands]
    outs: dict[str, list] = {}
    for path in (p for v in cfg.verifiers.values() for p in (v.policy, v.reference)):
        if model_key(path) in outs:
            continue
        # one model at a time on the device (two 8B models need not fit together)
        model, processor = load_model_and_processor(path, dtype=cfg.dtype, device=cfg.device)
        outs[model_key(path)] = response_logprobs(model, processor, reqs, batch_size=cfg.batch_size, root=cfg.root,
                                                  include_eos=cfg.include_eos, progress=True)
        del model
        free_device_memory()
    return outs


class VerifierLogprobs(NamedTuple):
    """One verifier's inputs to the reward, per candidate in candidate order."""

    policy: Sequence  # ResponseLogprobs under the policy
    reference: Sequence  # ResponseLogprobs under the reference
    beta: float


def reward_rows(cands, verifiers: dict[str, VerifierLogprobs]) -> tuple[list[dict], list[str]]:
    """One row per candidate with a finite reward under every verifier (vlmcot.voting.sequence_reward):
    summed log-probs under each verifier's policy and reference, its reward, the token count; and one line
    per candidate left out, naming it, the verifier and why. The first verifier is the primary one
    (``logp_dpo``, ``logp_sft``, ``reward``); another v writes ``logp_policy.<v>``, ``logp_reference.<v>``,
    ``reward.<v>``.

    A non-finite log-prob (or the two models scoring a different number of tokens) makes that candidate's
    reward meaningless, not the run's: it is skipped here and counted against max_bad_rate by the caller.
    """
    from vlmcot.voting import sequence_reward

    primary = next(iter(verifiers))
    rows, unscorable = [], []
    for i, c in enumerate(cands):
        row = {"id": c.id, "sample": c.sample, "dataset": c.dataset, "extracted": c.extracted, "correct": c.correct}
        for name, v in verifiers.items():
            d, s = v.policy[i], v.reference[i]
            try:
                reward = sequence_reward(d.logprobs, s.logprobs, v.beta)
            except ValueError as e:
                unscorable.append(f"{c.id}#{c.sample}: verifier {name}: {e} (logp policy {d.total}, "
                                  f"logp reference {s.total})")
                break
            if name == primary:
                row.update({"logp_dpo": d.total, "logp_sft": s.total, "reward": reward})
            else:
                row.update({f"logp_policy.{name}": d.total, f"logp_reference.{name}": s.total,
                            f"reward.{name}": reward})
        else:
            rows.append({**row, "tokens": len(verifiers[primary].policy[i].token_ids)})
    return rows, unscorable


def check_bad_rate(cfg: Config, bad: list[str], n_rows: int) -> None:
    """StageError when more than max_bad_rate of the ``n_rows`` candidate rows are unusable, naming the first."""
    if len(bad) > cfg.max_bad_rate * max(1, n_rows):
        raise StageError(f"{cfg.candidates}: {len(bad)} of {n_rows} candidate rows unusable (> rerank.max_bad_rate="
                         f"{cfg.max_bad_rate}; malformed, no record or no finite reward); first: {bad[0]}")


def questions_by_dataset(cfg: Config, rows: list[dict], records, reward: str = "reward") -> dict[str, list]:
    """Reward rows grouped into vlmcot.voting.Question per question (sample order), per dataset (sorted);
    ``reward`` names the row field that holds the verifier's reward."""
    from vlmcot.metrics import get_metric
    from vlmcot.voting import Question

    by_q: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_q[r["id"]].append(r)
    by_ds: dict[str, list[Question]] = defaultdict(list)
    for qid in sorted(by_q):
        rs = sorted(by_q[qid], key=lambda r: r["sample"])
        rec = records[qid]
        metric = get_metric(rec.metric)

        def is_correct(a: str, rec=rec, metric=metric) -> bool:
            return float(metric.score(a, rec.all_answers(), rec.choices)) >= cfg.min_score

        by_ds[rec.dataset].append(Question(qid, [r["extracted"] for r in rs], [r[reward] for r in rs], is_correct))
    return {ds: by_ds[ds] for ds in sorted(by_ds)}


def verifier_questions(cfg: Config, rows: list[dict], records) -> dict[str, dict[str, list]]:
    """{dataset: {verifier: [Question]}}: the same questions and answers, each verifier's rewards."""
    out: dict[str, dict[str, list]] = defaultdict(dict)
    for v in cfg.verifiers:
        for ds, qs in questions_by_dataset(cfg, rows, records, column(cfg, "reward", v)).items():
            out[ds][v] = qs
    return dict(out)


def verifier_curves(cfg: Config, qs_by_verifier: dict[str, list], ns: list[int] | None) -> dict[str, dict[int, float]]:
    """{column: {N: accuracy}}: every method under the primary verifier (plain names, so a one-verifier
    run gives the same numbers), and the reward-using methods under each other one (``<method>.<v>``).
    Subsets are seeded per question and N, so every verifier votes over the same subsets."""
    from vlmcot.voting import METHODS, REWARD_METHODS, rerank_curves

    out: dict[str, dict[int, float]] = {}
    for v, qs in qs_by_verifier.items():
        methods = METHODS if v == cfg.primary else REWARD_METHODS
        c = rerank_curves(qs, ns=ns, n_subsets=cfg.n_subsets, seed=cfg.seed, weighting=cfg.weighting,
                          temperature=cfg.temperature, methods=methods)
        out.update({column(cfg, m, v): pts for m, pts in c.items()})
    return out


def dataset_ns(cfg: Config, qs: list) -> list[int] | None:
    """The N values of one dataset's curves (None: rerank_curves' default, 1, 2, 4, ... up to its fewest
    candidates)."""
    if cfg.ns is None:
        return None
    n_min = min(len(q.answers) for q in qs)
    return [n for n in cfg.ns if n <= n_min]


def curves_by_dataset(cfg: Config, rows: list[dict], records) -> dict[str, dict[str, dict[int, float]]]:
    out = {}
    for ds, by_v in verifier_questions(cfg, rows, records).items():
        out[ds] = verifier_curves(cfg, by_v, dataset_ns(cfg, by_v[cfg.primary]))
    return out


def per_question_rows(cfg: Config, rows: list[dict], records) -> list[dict]:
    """Each question's score per column at its dataset's largest N: the curves on that question alone
    (its subsets are seeded per question and N, so they are the ones the curves drew)."""
    from vlmcot.voting import default_ns

    out = []
    for ds, by_v in verifier_questions(cfg, rows, records).items():
        qs = by_v[cfg.primary]
        ns = dataset_ns(cfg, qs) or default_ns(min(len(q.answers) for q in qs))
        if not ns:
            continue
        n = max(ns)
        for i, q in enumerate(qs):
            c = verifier_curves(cfg, {v: [vqs[i]] for v, vqs in by_v.items()}, [n])
            out.append({"id": q.id, "dataset": ds, "n": n, **{m: round(c[m][n], 6) for m in sorted(c)}})
    return out


def write_curves(plots_dir: str | Path, curves: dict[str, dict]) -> list[Path]:
    """One ``rerank_<dataset>.csv`` per dataset. The label comes from the records: it is sanitised and
    the file checked to land inside ``plots_dir`` (a dataset called ``../../x`` must not write elsewhere)."""
    paths = []
    for ds, c in curves.items():
        path = output_path(plots_dir, f"rerank_{ds}.csv")
        write_curve_csv(path, c)
        paths.append(path)
    return paths


def write_curve_csv(path: Path, curves: dict[str, dict[int, float]]) -> None:
    """Wide CSV: one row per N, one column per method (what `dvc plots` draws as lines)."""
    methods = sorted(curves)
    ns = sorted({n for c in curves.values() for n in c})
    rows = [{"n": n, **{m: f"{curves[m][n]:.6f}" for m in methods}} for n in ns]
    write_csv(path, rows, columns=["n", *methods])


def flat_metrics(curves: dict[str, dict[str, dict[int, float]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    per: dict[tuple[str, int], list[float]] = defaultdict(list)
    for ds, c in curves.items():
        for m, pts in c.items():
            for n, acc in pts.items():
                out[f"{ds}.{m}.n{n}"] = round(acc, 6)
                per[(m, n)].append(acc)
    for (m, n), accs in sorted(per.items()):
        if len(accs) == len(curves):  # average only where every dataset has the point
            out[f"avg.{m}.n{n}"] = round(statistics.fmean(accs), 6)
    return out


def run(cfg: Config, tracker) -> None:
    import time

    from vlmcot.records import read_candidates, validate_vqa

    for p in (cfg.candidates, cfg.records):
        if not Path(p).is_file():
            raise StageError(f"input not found: {p} (run sample@eval / prepare first)")
    for name, v in cfg.verifiers.items():
        for role, p in (("policy", v.policy), ("reference", v.reference)):
            if not Path(p).is_dir():
                raise StageError(f"model not found: {p} (rerank.verifiers.{name}.{role}; run the stage that writes "
                                 "it, or remove the verifier)")
    cands, errors = read_candidates(cfg.candidates)
    records, _ = validate_vqa(read_jsonl(cfg.records))
    recs = {r.id: r for r in records}
    missing = [c for c in cands if c.id not in recs]
    if missing:
        log.warning("%d candidates answer no known record (first: %s); skipped", len(missing), missing[0].id)
    n_rows = len(cands) + len(errors)
    bad = [*errors, *(f"{c.id}#{c.sample}: answers no record in {cfg.records}" for c in missing)]
    check_bad_rate(cfg, bad, n_rows)  # before the models load: a broken file fails in seconds
    cands = [c for c in cands if c.id in recs]
    if not cands:
        raise StageError(f"{cfg.candidates}: no candidates to rerank")
    betas = {name: policy_beta(v.policy) for name, v in cfg.verifiers.items()}  # before scoring: fails in seconds
    for name, beta in betas.items():
        log.info("verifier %s: reward beta %g (from %s)", name, beta, Path(cfg.verifiers[name].policy) / POLICY_CONFIG)
    tracker.log_metrics({column(cfg, "beta", name): beta for name, beta in betas.items()})
    t0 = time.perf_counter()
    outs = candidate_logprobs(cfg, cands, recs)
    scoring_s = time.perf_counter() - t0
    log.info("scored %d candidates under %d models in %.1f s", len(cands), len(outs), scoring_s)
    tracker.log_metrics({"scoring_s": round(scoring_s, 1)})
    scored = {name: VerifierLogprobs(outs[model_key(v.policy)], outs[model_key(v.reference)], betas[name])
              for name, v in cfg.verifiers.items()}
    rows, unscorable = reward_rows(cands, scored)
    for line in unscorable[:20]:
        log.warning("skipped (no finite reward) %s", line)
    check_bad_rate(cfg, bad + unscorable, n_rows)
    if not rows:
        raise StageError(f"{cfg.candidates}: no candidate got a finite reward (first: {unscorable[0]})")
    write_jsonl(cfg.rewards, rows)
    curves = curves_by_dataset(cfg, rows, recs)
    write_jsonl(cfg.per_question, per_question_rows(cfg, rows, recs))
    for path in write_curves(cfg.plots_dir, curves):
        tracker.log_artifact(path, "plots")
    metrics = flat_metrics(curves)
    metrics["unscorable"] = len(unscorable)  # candidates left out for a non-finite reward
    # how well each reward alone separates correct from wrong candidates (mean reward gap)
    for ds in sorted({r["dataset"] for r in rows}):
        for name in cfg.verifiers:
            key = column(cfg, "reward", name)
            good = [r[key] for r in rows if r["dataset"] == ds and r["correct"]]
            badr = [r[key] for r in rows if r["dataset"] == ds and not r["correct"]]
            if good and badr:
                gap = statistics.fmean(good) - statistics.fmean(badr)
                metrics[column(cfg, f"{ds}.reward_gap", name)] = round(gap, 6)
    write_json(cfg.metrics, metrics)
    # the DVC metrics headline: the primary verifier's majority, best-of-N and weighted voting at the largest N;
    # the other verifiers stay in `metrics` (two columns each would push `dvc metrics show` past 120 characters,
    # tests/e2e/test_readme_loop.py)
    write_summary(cfg.summary, rerank_summary(metrics))
    tracker.log_metrics(metrics)
    log.info("rerank: %s", {k: v for k, v in metrics.items() if k.startswith("avg.")})
