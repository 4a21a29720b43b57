"""Stage `rerank`: the DPO model as a verifier of the SFT model's samples (paper 5.2, Figures 6 and 7).

    python stages/rerank.py          # same as: vlmcot rerank

For every held-out candidate (``sample@eval``) the reward is r(y) = beta * sum over response tokens of
log pi_dpo - log pi_sft (vlmcot.voting.sequence_reward, the one definition; log-probs from vlmcot.logprobs,
teacher-forced, batched). A candidate whose reward is not finite (an inf or nan log-prob) is named in
the log, counted (``unscorable``) and left out; they count against ``max_bad_rate`` with the malformed
rows. beta is the one the policy was
trained with, read from the resolved config the dpo stage saved beside it (``<policy>/vlmcot_config.json``,
``train.beta``), never restated here. Then, per dataset, accuracy at
N = 1, 2, 4, ... of self-consistency (majority vote), best-of-N, weighted voting and the oracle
(pass@N) via vlmcot.voting.rerank_curves. Writes:

- ``rewards``: one row per candidate (id, sample, logp_dpo, logp_sft, reward, tokens);
- ``<plots_dir>/rerank_<dataset>.csv``: columns n, majority, best_of_n, weighted, oracle (DVC plots);
- ``metrics``: ``<dataset>.<method>.n<N>`` and ``avg.<method>.n<N>`` (macro average over datasets);
- ``per_question``: one row per question at its dataset's largest N (id, dataset, n, one 0-1 value per
  method, the share of its subsets the method got right): what the claims stage's paired bootstrap
  resamples. Averaged per dataset these rows are exactly the curves' last point.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.io import output_path, read_jsonl, write_csv, write_json, write_jsonl
from vlmcot.summary import rerank_summary, write_summary

log = logging.getLogger(__name__)

SECTION = "rerank"


class Config(StrictModel):
    # candidates sampled from the SFT model on eval questions (sample@eval)
    candidates: str = "data/sample/eval/candidates.jsonl"
    # the VQA records they answer
    records: str = "data/prepared/eval.jsonl"
    # the verifier: the DPO model
    policy: str = "models/dpo"
    # its reference: the SFT model the candidates came from
    reference: str = "models/sft/both"
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
    def _no_beta(cls, data):
        if isinstance(data, dict) and "beta" in data:
            raise ValueError(
                "rerank.beta was removed: the reward's beta is the DPO model's own (dpo.train.beta), read from "
                "<policy>/vlmcot_config.json; delete the key (change dpo.train.beta and rerun dpo to change it)")
        return data


# the resolved config the dpo stage saves beside its model (vlmcot.pipeline.dpo)
POLICY_CONFIG = "vlmcot_config.json"


def policy_beta(policy: str | Path) -> float:
    """The beta the DPO policy was trained with (``train.beta`` of its saved resolved config)."""
    import json

    path = Path(policy) / POLICY_CONFIG
    if not path.is_file():
        raise StageError(f"{path} not found: the reward's beta comes from the config the dpo stage saves beside "
                         "its model; point rerank.policy at a model the dpo stage wrote")
    try:
        beta = json.loads(path.read_text(encoding="utf-8"))["train"]["beta"]
    except (ValueError, KeyError, TypeError) as e:
        raise StageError(f"{path}: no train.beta in the saved DPO config ({type(e).__name__}: {e})") from None
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise StageError(f"{path}: train.beta must be a positive number, got {beta!r}")
    return float(beta)


def candidate_logprobs(cfg: Config, cands, records) -> dict[str, list]:
    """Each candidate's per-token log-probs (vlmcot.logprobs.ResponseLogprobs) under the policy ("dpo")
    and the reference ("sft"), in candidate order."""
    from vlmcot.logprobs import ScoreRequest, response_logprobs
    from vlmcot.models import load_model_and_processor
    from vlmcot.models.loading import free_device_memory
    from vlmcot.prompts import build_prompt

    prompts = {qid: build_prompt(rec, "cot", cfg.prompt_style) for qid, rec in records.items()}
    reqs = [ScoreRequest(f"{c.id}#{c.sample}", records[c.id].image, prompts[c.id], c.text) for c in cands]
    outs = {}
    for name, path in (("dpo", cfg.policy), ("sft", cfg.reference)):
        # one model at a time on the device (two 8B models need not fit together)
        model, processor = load_model_and_processor(path, dtype=cfg.dtype, device=cfg.device)
        outs[name] = response_logprobs(model, processor, reqs, batch_size=cfg.batch_size, root=cfg.root,
                                       include_eos=cfg.include_eos, progress=True)
        del model
        free_device_memory()
    return outs


def reward_rows(cands, dpo_outs, sft_outs, beta: float) -> tuple[list[dict], list[str]]:
    """One row per candidate with a finite reward (vlmcot.voting.sequence_reward): summed log-probs under
    DPO and SFT, the reward, the token count; and one line per candidate left out, naming it and why.

    A non-finite log-prob (or the two models scoring a different number of tokens) makes that candidate's
    reward meaningless, not the run's: it is skipped here and counted against max_bad_rate by the caller.
    """
    from vlmcot.voting import sequence_reward

    rows, unscorable = [], []
    for c, d, s in zip(cands, dpo_outs, sft_outs, strict=True):
        try:
            reward = sequence_reward(d.logprobs, s.logprobs, beta)
        except ValueError as e:
            unscorable.append(f"{c.id}#{c.sample}: {e} (logp_dpo {d.total}, logp_sft {s.total})")
            continue
        rows.append({"id": c.id, "sample": c.sample, "dataset": c.dataset, "extracted": c.extracted,
                     "correct": c.correct, "logp_dpo": d.total, "logp_sft": s.total,
                     "reward": reward, "tokens": len(d.token_ids)})
    return rows, unscorable


def check_bad_rate(cfg: Config, bad: list[str], n_rows: int) -> None:
    """StageError when more than max_bad_rate of the ``n_rows`` candidate rows are unusable, naming the first."""
    if len(bad) > cfg.max_bad_rate * max(1, n_rows):
        raise StageError(f"{cfg.candidates}: {len(bad)} of {n_rows} candidate rows unusable (> rerank.max_bad_rate="
                         f"{cfg.max_bad_rate}; malformed, no record or no finite reward); first: {bad[0]}")


def questions_by_dataset(cfg: Config, rows: list[dict], records) -> dict[str, list]:
    """Reward rows grouped into vlmcot.voting.Question per question (sample order), per dataset (sorted)."""
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

        by_ds[rec.dataset].append(Question(qid, [r["extracted"] for r in rs], [r["reward"] for r in rs], is_correct))
    return {ds: by_ds[ds] for ds in sorted(by_ds)}


def dataset_ns(cfg: Config, qs: list) -> list[int] | None:
    """The N values of one dataset's curves (None: rerank_curves' default, 1, 2, 4, ... up to its fewest
    candidates)."""
    if cfg.ns is None:
        return None
    n_min = min(len(q.answers) for q in qs)
    return [n for n in cfg.ns if n <= n_min]


def curves_by_dataset(cfg: Config, rows: list[dict], records) -> dict[str, dict[str, dict[int, float]]]:
    from vlmcot.voting import rerank_curves

    return {ds: rerank_curves(qs, ns=dataset_ns(cfg, qs), n_subsets=cfg.n_subsets, seed=cfg.seed,
                              weighting=cfg.weighting, temperature=cfg.temperature)
            for ds, qs in questions_by_dataset(cfg, rows, records).items()}


def per_question_rows(cfg: Config, rows: list[dict], records) -> list[dict]:
    """Each question's score per method at its dataset's largest N: rerank_curves on that question alone
    (its subsets are seeded per question and N, so they are the ones the curves drew)."""
    from vlmcot.voting import default_ns, rerank_curves

    out = []
    for ds, qs in questions_by_dataset(cfg, rows, records).items():
        ns = dataset_ns(cfg, qs) or default_ns(min(len(q.answers) for q in qs))
        if not ns:
            continue
        n = max(ns)
        for q in qs:
            c = rerank_curves([q], ns=[n], n_subsets=cfg.n_subsets, seed=cfg.seed, weighting=cfg.weighting,
                              temperature=cfg.temperature)
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
    from vlmcot.records import read_candidates, validate_vqa

    for p in (cfg.candidates, cfg.records):
        if not Path(p).is_file():
            raise StageError(f"input not found: {p} (run sample@eval / prepare first)")
    for p in (cfg.policy, cfg.reference):
        if not Path(p).is_dir():
            raise StageError(f"model not found: {p}")
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
    beta = policy_beta(cfg.policy)
    log.info("reward beta %g (from %s)", beta, Path(cfg.policy) / POLICY_CONFIG)
    tracker.log_metrics({"beta": beta})
    outs = candidate_logprobs(cfg, cands, recs)
    rows, unscorable = reward_rows(cands, outs["dpo"], outs["sft"], beta)
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
    # how well the reward alone separates correct from wrong candidates (mean reward gap)
    for ds in sorted({r["dataset"] for r in rows}):
        good = [r["reward"] for r in rows if r["dataset"] == ds and r["correct"]]
        badr = [r["reward"] for r in rows if r["dataset"] == ds and not r["correct"]]
        if good and badr:
            metrics[f"{ds}.reward_gap"] = round(statistics.fmean(good) - statistics.fmean(badr), 6)
    write_json(cfg.metrics, metrics)
    write_summary(cfg.summary, rerank_summary(metrics))
    tracker.log_metrics(metrics)
    log.info("rerank: %s", {k: v for k, v in metrics.items() if k.startswith("avg.")})
