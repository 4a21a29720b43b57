"""Sampling N candidate responses per question, scored, durably and resumably (paper section 3.3).

Questions are processed in chunks. Each chunk is generated with a seed derived from (seed, chunk
index, temperature group) only, so its candidates do not depend on which chunks ran before; each
finished chunk is appended to a partial file as one JSON line and fsync'ed. A rerun after a crash or
``kill -9`` reads the partial file, drops a torn last line, skips the chunks already there and
produces exactly the output of an uninterrupted run. The partial file starts with a header holding a
hash of everything that shapes the output; a partial file from another config is discarded.

Each candidate is a :class:`vlmcot.records.Candidate`: the question id, sample index, text, the answer
extracted after the last ``### Answer:`` and whether it scores >= ``min_score`` under the record's own
metric (evaluation.score_response, so sampling and evaluation judge alike).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlmcot.evaluation import score_response
from vlmcot.generation import GenerationBackend, GenerationConfig, GenRequest
# model_identity lives in vlmcot.models.loading (the training layer keys its checkpoints on it too; below both)
from vlmcot.models.loading import model_identity
from vlmcot.prompts import build_prompt
from vlmcot.records import Candidate, VQARecord

log = logging.getLogger(__name__)


def chunk_seed(seed: int, chunk: int, group: str) -> int:
    """A 31-bit seed private to one (seed, chunk, temperature group), stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}\x00{chunk}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class SamplingSpec:
    """What shapes the candidates (hashed into the partial file's header)."""

    num_samples: int  # candidates per question (paper: 32)
    temperature_short: float  # short-answer / numeric questions (paper: 1.0)
    temperature_mc: float  # multiple-choice questions (paper: 1.2)
    generation: GenerationConfig  # max_new_tokens, top_p, batch_size (do_sample/temperature/n/seed set here)
    seed: int
    chunk_size: int  # questions per durable chunk
    prompt_style: str
    min_score: float  # a candidate is correct when its score reaches this

    def fingerprint(self, question_ids: list[str], model: str) -> str:
        blob = json.dumps({
            "n": self.num_samples, "ts": self.temperature_short, "tm": self.temperature_mc,
            "gen": self.generation.model_dump(mode="json"), "seed": self.seed, "chunk": self.chunk_size,
            "style": self.prompt_style, "min_score": self.min_score, "model": model, "ids": question_ids,
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _gen_cfg(spec: SamplingSpec, temperature: float, seed: int) -> GenerationConfig:
    return spec.generation.model_copy(update={
        "do_sample": True, "temperature": temperature, "num_return_sequences": spec.num_samples, "seed": seed,
    })


def score_candidates(record: VQARecord, texts: list[str], min_score: float) -> list[Candidate]:
    out = []
    for k, text in enumerate(texts):
        row = score_response(record, "cot", text, "project")  # the project metrics decide `correct`
        out.append(Candidate(id=record.id, sample=k, text=text, extracted=row["extracted"],
                             correct=row["score"] >= min_score, dataset=record.dataset))
    return out


def sample_chunk(backend: GenerationBackend, records: list[VQARecord], spec: SamplingSpec,
                 chunk: int) -> list[Candidate]:
    """All candidates of one chunk: short-answer and multiple-choice questions in two seeded calls."""
    groups = {
        "short": [r for r in records if r.qtype != "multiple_choice"],
        "mc": [r for r in records if r.qtype == "multiple_choice"],
    }
    temps = {"short": spec.temperature_short, "mc": spec.temperature_mc}
    cands: list[Candidate] = []
    for group, recs in groups.items():
        if not recs:
            continue
        reqs = [GenRequest(r.id, r.image, build_prompt(r, "cot", spec.prompt_style)) for r in recs]
        outs = backend.generate(reqs, _gen_cfg(spec, temps[group], chunk_seed(spec.seed, chunk, group)))
        for r, o in zip(recs, outs, strict=True):
            cands.extend(score_candidates(r, o.texts, spec.min_score))
    cands.sort(key=lambda c: (c.id, c.sample))
    return cands


class PartialFile:
    """Append-only JSONL of finished chunks: line 1 the header, then one line per chunk."""

    def __init__(self, path: str | Path, fingerprint: str):
        self.path = Path(path)
        self.fingerprint = fingerprint

    def load(self) -> dict[int, list[Candidate]]:
        """Finished chunks of this same run; a missing, foreign or torn file is cleaned up."""
        if not self.path.is_file():
            self._start()
            return {}
        done: dict[int, list[Candidate]] = {}
        good_bytes = 0
        with self.path.open("rb") as f:
            lines = f.read().split(b"\n")
        for i, raw in enumerate(lines):
            if not raw.strip():
                if i < len(lines) - 1:  # an empty line inside the file (the last piece has no newline)
                    good_bytes += len(raw) + 1
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:  # torn by a kill mid-write: everything before it is good
                log.warning("%s: dropping a torn line %d (interrupted write)", self.path, i + 1)
                break
            if i == 0:
                if row.get("header") != self.fingerprint:
                    log.info("%s: written by another config, starting fresh", self.path)
                    self._start()
                    return {}
            else:
                done[int(row["chunk"])] = [Candidate.model_validate(c) for c in row["candidates"]]
            good_bytes += len(raw) + 1
        if good_bytes == 0:  # not even the header survived
            self._start()
            return {}
        with self.path.open("r+b") as f:  # cut a torn tail so new chunks append after good lines
            size = f.seek(0, os.SEEK_END)
            f.truncate(min(good_bytes, size))
            if good_bytes > size:  # a complete last line that lost only its newline
                f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        return done

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"header": self.fingerprint}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, chunk: int, cands: list[Candidate]) -> None:
        line = json.dumps({"chunk": chunk, "candidates": [c.model_dump(mode="json") for c in cands]},
                          sort_keys=True, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def read_matching(path: str | Path, fingerprint: str) -> dict[int, list[Candidate]]:
        """Finished chunks of another file (a shard's) when its header matches, read-only; a torn last
        line (a shard killed mid-write) is left out, and so is a whole file from another config."""
        done: dict[int, list[Candidate]] = {}
        lines = Path(path).read_bytes().split(b"\n")
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                break
            if i == 0:
                if row.get("header") != fingerprint:
                    log.warning("%s: written by another config, not merged", path)
                    return {}
                continue
            done[int(row["chunk"])] = [Candidate.model_validate(c) for c in row["candidates"]]
        return done

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class SampleResult:
    candidates: list[Candidate]
    generated: int  # sequences generated in this process (resumed chunks excluded)
    seconds: float  # wall time spent generating in this process
    resumed_chunks: int


def shard_partial_path(partial_path: str | Path, shard: int, num_shards: int) -> Path:
    """Where shard ``shard`` of ``num_shards`` keeps its chunks: beside the run's own partial file."""
    p = Path(partial_path)
    return p.with_name(p.name.replace(".partial", f".shard-{shard}-of-{num_shards}.partial"))


def shard_partials(partial_path: str | Path) -> list[Path]:
    """Every shard file left beside ``partial_path`` by ``--shard i/N`` runs."""
    p = Path(partial_path)
    return sorted(p.parent.glob(p.name.replace(".partial", ".shard-*-of-*.partial")))


def sample_questions(
    backend: GenerationBackend,
    records: list[VQARecord],
    spec: SamplingSpec,
    partial_path: str | Path,
    model_name: str = "",
    on_chunk: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> SampleResult:
    """Candidates for every record (sorted by id), resuming from ``partial_path`` when it matches.

    ``shard=(i, N)``: sample only chunks ``k`` with ``k % N == i`` into the shard's own partial file
    (:func:`shard_partial_path`); the result holds those chunks. Unsharded, chunks that shard files of
    this same config already hold are taken from them (the merge), so N shard runs followed by one plain
    run write exactly what one plain run writes: each chunk's draws depend on its index alone."""
    from tqdm.auto import tqdm

    records = sorted(records, key=lambda r: r.id)
    chunks = [records[i : i + spec.chunk_size] for i in range(0, len(records), spec.chunk_size)]
    ids = [r.id for r in records]
    # shard files are keyed on the model's name (merging them must not need the model); the run's own
    # partial file on the model's identity, so chunks of a model since retrained in place never resume
    fingerprint = spec.fingerprint(ids, model_name)
    if shard is not None:
        partial_path = shard_partial_path(partial_path, *shard)
        partial = PartialFile(partial_path, fingerprint)
    else:
        partial = PartialFile(partial_path, spec.fingerprint(ids, model_identity(model_name)))
    done = partial.load()
    if shard is None:
        for path in shard_partials(partial_path):
            theirs = PartialFile.read_matching(path, fingerprint)
            for k, cands in theirs.items():
                if k not in done:
                    partial.append(k, cands)  # durable here before the shard files go
                    done[k] = cands
            if theirs:
                log.info("merged %d chunks from %s", len(theirs), path)
    else:
        i, n = shard
        chunks = [c if k % n == i else None for k, c in enumerate(chunks)]
        done = {k: v for k, v in done.items() if k % n == i}
    resumed = len(done)
    if resumed:
        log.info("resuming: %d of %d chunks already sampled", resumed, len(chunks))
    generated, seconds = 0, 0.0
    # rate shown twice: tqdm's own (sample/s, smoothed over recent chunks) and the run's average over
    # generation time only ("samples/s", what metrics record as all.samples_per_s)
    bar = tqdm(total=sum(len(c) for c in chunks if c is not None) * spec.num_samples, desc="sample", unit="sample", mininterval=5,
               initial=sum(len(v) for v in done.values()))
    for k, chunk in enumerate(chunks):
        if k in done or chunk is None:
            continue
        t0 = time.perf_counter()
        cands = sample_chunk(backend, chunk, spec, k)
        dt = time.perf_counter() - t0
        partial.append(k, cands)
        done[k] = cands
        generated += len(cands)
        seconds += dt
        bar.update(len(cands))
        bar.set_postfix({"samples/s": f"{generated / max(seconds, 1e-9):.1f}"})
        if on_chunk is not None:
            on_chunk(k, len(chunks))
    bar.close()
    all_cands = [c for k in sorted(done) for c in done[k]]
    all_cands.sort(key=lambda c: (c.id, c.sample))
    return SampleResult(all_cands, generated, seconds, resumed)


def summarize(candidates: list[Candidate], samples_per_s: float) -> dict[str, float]:
    """Flat metrics: questions, candidates, mean sample accuracy and extraction failure per dataset."""
    by_ds: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_ds.setdefault(c.dataset, []).append(c)
    out: dict[str, float] = {}
    for ds in sorted(by_ds):
        cs = by_ds[ds]
        out[f"{ds}.questions"] = len({c.id for c in cs})
        out[f"{ds}.candidates"] = len(cs)
        out[f"{ds}.sample_accuracy"] = round(sum(c.correct for c in cs) / len(cs), 6)
        out[f"{ds}.extract_fail_rate"] = round(sum(c.extracted is None for c in cs) / len(cs), 6)
        # questions with at least one correct and one wrong sample: the ones that can give pairs
        per_q: dict[str, list[bool]] = {}
        for c in cs:
            per_q.setdefault(c.id, []).append(c.correct)
        out[f"{ds}.mixed_questions"] = sum(1 for v in per_q.values() if any(v) and not all(v))
    n = len(candidates)
    out["all.questions"] = len({c.id for c in candidates})
    out["all.candidates"] = n
    out["all.sample_accuracy"] = round(sum(c.correct for c in candidates) / n, 6) if n else 0.0
    out["all.extract_fail_rate"] = round(sum(c.extracted is None for c in candidates) / n, 6) if n else 0.0
    out["all.samples_per_s"] = round(samples_per_s, 3)
    return out
