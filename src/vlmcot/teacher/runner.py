"""Drive a teacher over records: bounded concurrency, durable cache, budget, progress bar.

Two kinds of backend go through the same :func:`run_teacher`:
- async backends (``OpenAITeacher``) expose ``prepare(record) -> Prepared`` (with a cache key) and
  ``async asend(prepared) -> entry``; records are deduplicated by key, answered from the cache when
  they can be, and the rest sent by ``concurrency`` workers. Every completed request is appended to
  the cache (flush + fsync) before it counts, so a rerun after any interruption sends only what is
  missing. Transport failures (retries exhausted) are not cached: a rerun tries them again.
- synchronous Teachers (the Teacher protocol in base.py, e.g. the free scripted teacher) are called
  in chunks and bypass the cache.

A budget (tokens and/or estimated USD for this run) stops new requests cleanly: what was done stays
in the cache and the result says the budget ran out. A FatalTeacherError (bad key, no quota) also
stops new requests, lets the ones in flight land in the cache, then propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from vlmcot.records import VQARecord
from vlmcot.teacher.protocol import FatalTeacherError, RecordError, TeacherReply, TransportFailure, redact
from vlmcot.teacher.cache import ReplyCache

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """Spending cap for one run; None means no cap on that axis."""

    max_tokens: int | None = None
    max_usd: float | None = None

    def reached(
        self, tokens: int, usd: float, in_flight: int = 0, per_req_tokens: float = 0.0, per_req_usd: float = 0.0
    ) -> bool:
        """True when spending so far, plus the expected cost of what is in flight and one more
        request, would pass a cap (keeps the overshoot to about one request, not ``concurrency``)."""
        n = in_flight + 1
        over_tokens = self.max_tokens is not None and tokens + n * per_req_tokens > self.max_tokens
        over_usd = self.max_usd is not None and usd + n * per_req_usd > self.max_usd
        return over_tokens or over_usd


@dataclass
class RunStats:
    records: int = 0
    cache_hits: int = 0  # records answered from the cache (a duplicate answered earlier in this run too)
    new_replies: int = 0  # completed requests this run (usable or malformed), now cached
    transport_failures: int = 0  # requests that ran out of retries (not cached)
    record_errors: int = 0  # records that could not become a request (missing image ...)
    not_sent: int = 0  # records left unanswered because the budget ran out or the run was stopped
    run_prompt_tokens: int = 0
    run_completion_tokens: int = 0
    run_cost_usd: float = 0.0
    budget_exhausted: bool = False
    counters: Counter = field(default_factory=Counter)  # backend counters: attempts, retries, retry.<reason>

    @property
    def run_tokens(self) -> int:
        return self.run_prompt_tokens + self.run_completion_tokens


@dataclass
class RunResult:
    replies: dict[str, TeacherReply]  # by record id; records left unsent are absent
    stats: RunStats


def _reply(record_id: str, entry: dict) -> TeacherReply:
    return TeacherReply(
        id=record_id,
        text=entry.get("text"),
        ok=bool(entry.get("ok")),
        reason=entry.get("reason"),
        prompt_tokens=int(entry.get("prompt_tokens", 0)),
        completion_tokens=int(entry.get("completion_tokens", 0)),
        meta=dict(entry.get("meta") or {}),
    )


class _Progress:
    """tqdm bar with tokens, estimated cost and failures in the postfix (rate and ETA come from tqdm)."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=not enabled,
            desc=desc,
            unit="rec",
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self.tokens = 0
        self.usd = 0.0
        self.failed = 0
        self.cached = 0

    def update(self, n: int, tokens: int = 0, usd: float = 0.0, failed: int = 0, cached: int = 0) -> None:
        self.tokens += tokens
        self.usd += usd
        self.failed += failed
        self.cached += cached
        self.bar.set_postfix_str(
            f"tok={self.tokens / 1000:.1f}k ${self.usd:.3f} cached={self.cached} fail={self.failed}", refresh=False
        )
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _GroupCommitter:
    """Append entries to the cache; callers wait until their entry is fsynced.

    Each entry is written (``write()`` + flush: in the kernel, so it survives a ``kill -9`` of this
    process) at once, from the event loop; the fsync, which only a machine crash needs, runs in a
    worker thread, and entries written while one is syncing share the next, so a slow disk costs
    one sync per batch rather than one per reply and the event loop never waits for a sync.
    """

    def __init__(self, cache: ReplyCache):
        self.cache = cache
        self.pending: list[asyncio.Future] = []
        self.task: asyncio.Task | None = None

    async def commit(self, entry: dict, on_written=None) -> None:
        self.cache.write_many([entry])  # raises on a full disk: nothing may count as done
        if on_written is not None:
            on_written()
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        await fut

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await asyncio.to_thread(self.cache.sync)
            except Exception as e:  # noqa: BLE001 - disk full, permissions: nothing may count as done
                for f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            for f in batch:
                if not f.done():
                    f.set_result(None)


def run_teacher(
    records: Sequence[VQARecord],
    teacher: Any,
    cache: ReplyCache | None = None,
    budget: Budget | None = None,
    concurrency: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
    chunk_size: int = 64,
) -> RunResult:
    """Answer every record once (see the module docstring). Never raises for one bad record."""
    budget = budget or Budget()
    if hasattr(teacher, "asend"):
        return asyncio.run(_run_async(records, teacher, cache, budget, concurrency, retry_failed, progress))
    return _run_sync(records, teacher, budget, progress, chunk_size)


def _run_sync(records: Sequence[VQARecord], teacher: Any, budget: Budget, progress: bool, chunk_size: int) -> RunResult:
    stats = RunStats(records=len(records))
    replies: dict[str, TeacherReply] = {}
    bar = _Progress(len(records), 0, progress, f"distill[{getattr(teacher, 'name', 'teacher')}]")
    try:
        for i in range(0, len(records), chunk_size):
            chunk = list(records[i : i + chunk_size])
            done = stats.new_replies
            per_tok, per_usd = (stats.run_tokens / done, stats.run_cost_usd / done) if done else (0.0, 0.0)
            if budget.reached(stats.run_tokens, stats.run_cost_usd, len(chunk) - 1, per_tok, per_usd):
                stats.budget_exhausted = True
                stats.not_sent = len(records) - i
                break
            out = teacher.generate(chunk)
            if len(out) != len(chunk):
                raise RuntimeError(f"teacher {teacher.name!r} returned {len(out)} replies for {len(chunk)} records")
            for rec, rep in zip(chunk, out):
                if rep.id != rec.id:
                    raise RuntimeError(
                        f"teacher {teacher.name!r} answered record {rep.id!r} in the place of {rec.id!r}"
                    )
                replies[rec.id] = rep
                stats.new_replies += 1
                stats.run_prompt_tokens += rep.prompt_tokens
                stats.run_completion_tokens += rep.completion_tokens
            stats.counters["attempts"] += len(chunk)
            bar.update(
                len(chunk), sum(r.prompt_tokens + r.completion_tokens for r in out), 0.0, sum(not r.ok for r in out)
            )
    finally:
        bar.close()
    return RunResult(replies, stats)


async def _run_async(
    records: Sequence[VQARecord],
    teacher: Any,
    cache: ReplyCache | None,
    budget: Budget,
    concurrency: int,
    retry_failed: bool,
    progress: bool,
    prefetch_chunk: int = 8,
) -> RunResult:
    """Stream records through ``concurrency`` workers.

    A producer prepares records ahead of the workers, a few at a time in a thread (image read +
    hash), into a bounded queue; a worker answers its record from the cache, joins an identical
    request already in flight, or sends it. A reply counts once it is fsynced; the worker does not
    wait for the disk (it takes its next record while the fsync runs), but a new request waits for
    a slot, and a slot is freed only when its reply is written to the cache file: never more than
    ``concurrency`` requests are paid for and not yet on file, which bounds what a ``kill -9`` makes
    a rerun resend. Memory holds images only
    for queued and in-flight requests, so 200k records cost no more than a few hundred.
    """
    stats = RunStats(records=len(records))
    replies: dict[str, TeacherReply] = {}
    n_workers = max(1, min(concurrency, len(records)))
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * n_workers + prefetch_chunk)
    in_flight: dict[str, asyncio.Future] = {}  # key -> outcome of the request being sent/committed
    commits: set[asyncio.Task] = set()
    slots = asyncio.Semaphore(n_workers)  # requests sent and not yet durable (see handle)
    bar = _Progress(len(records), 0, progress, f"distill[{teacher.name}]")
    committer = _GroupCommitter(cache) if cache is not None else None
    state = {"sending": 0, "stop": False, "sent_ok": 0}
    fatal: list[BaseException] = []

    def secret() -> str | None:  # read late: the backend learns its key on the first send
        return getattr(teacher, "_secret", None)

    def apply(rec: VQARecord, outcome: tuple, cached: bool = False) -> None:
        kind, payload = outcome
        if kind == "entry":
            replies[rec.id] = _reply(rec.id, payload)
            bar.update(1, failed=0 if payload["ok"] else 1, cached=int(cached))
        elif kind == "failure":
            replies[rec.id] = TeacherReply(id=rec.id, text=None, ok=False, reason=payload[0], meta=payload[1])
            bar.update(1, failed=1)
        else:  # "stopped": a fatal error or the budget ended the run before this was answered
            stats.not_sent += 1

    def prepare_many(chunk: list[VQARecord]) -> list[tuple[VQARecord, Any]]:
        out = []
        for rec in chunk:
            try:
                out.append((rec, teacher.prepare(rec)))
            except RecordError as e:
                out.append((rec, e))
        return out

    async def producer() -> None:
        try:
            for i in range(0, len(records), prefetch_chunk):
                if fatal:
                    stats.not_sent += len(records) - i  # never prepared: the run is stopping
                    break
                for item in await asyncio.to_thread(prepare_many, list(records[i : i + prefetch_chunk])):
                    await queue.put(item)
        finally:
            for _ in range(n_workers):
                await queue.put(None)

    async def send(prep) -> tuple:
        """Send one request; returns ("entry", entry) (not yet durable), ("failure", ...) or ("stopped", None)."""
        n = state["sent_ok"]
        if n:
            tok, usd = stats.run_tokens / n, stats.run_cost_usd / n
        elif hasattr(teacher, "estimate_prompt_tokens"):  # no reply yet: the local estimate of this one
            tok = float(teacher.estimate_prompt_tokens(prep))
            usd = teacher.cost_usd(int(tok), 0)
        else:
            tok, usd = 0.0, 0.0
        if state["stop"] or budget.reached(stats.run_tokens, stats.run_cost_usd, state["sending"], tok, usd):
            if not state["stop"]:
                stats.budget_exhausted = True
                state["stop"] = True
            return ("stopped", None)
        state["sending"] += 1
        try:
            entry = await teacher.asend(prep)
        except TransportFailure as f:
            stats.transport_failures += 1
            return ("failure", (f.reason, {"error": f.detail, "attempts": f.attempts}))
        except FatalTeacherError as e:
            fatal.append(e)
            state["stop"] = True
            return ("stopped", None)
        except Exception as e:  # noqa: BLE001 - a backend bug on one odd record: record it, go on
            detail = redact(f"{type(e).__name__}: {e}", secret())[:300]
            log.warning("distill: a request failed unexpectedly: %s", detail)
            stats.transport_failures += 1
            return ("failure", ("internal_error", {"error": detail}))
        finally:
            state["sending"] -= 1
        # Spent, durable or not: the budget counts it now.
        pt, ct = entry["prompt_tokens"], entry["completion_tokens"]
        cost = teacher.cost_usd(pt, ct)
        stats.run_prompt_tokens += pt
        stats.run_completion_tokens += ct
        stats.run_cost_usd += cost
        state["sent_ok"] += 1
        bar.update(0, pt + ct, cost)
        return ("entry", entry)

    async def settle(rec: VQARecord, key: str, fut: asyncio.Future, outcome: tuple, on_written=None) -> None:
        """Make a reply durable (if it is one), then publish it to the record and any twins."""
        try:
            if outcome[0] == "entry":
                if committer is not None:
                    try:
                        await committer.commit(outcome[1], on_written)
                    except Exception as e:  # noqa: BLE001 - no durability: stop, not pay for replies we may lose
                        fatal.append(FatalTeacherError(f"cannot write the reply cache {cache.path}: {e}"))
                        state["stop"] = True
                        outcome = ("stopped", None)
                if outcome[0] == "entry":
                    stats.new_replies += 1
        finally:
            in_flight.pop(key, None)
            if not fut.done():
                fut.set_result(outcome)
        apply(rec, outcome)

    async def handle(rec: VQARecord, prep: Any) -> None:
        if isinstance(prep, RecordError):
            stats.record_errors += 1
            apply(rec, ("failure", (prep.reason, {"error": prep.detail})))
            return
        hit = cache.get(prep.key) if cache is not None else None
        if hit is not None and (hit.get("ok") or not retry_failed):
            stats.cache_hits += 1
            apply(rec, ("entry", hit), cached=True)
            return
        twin = in_flight.get(prep.key)
        if twin is not None:  # the same request is on its way (or being committed) for another record
            apply(rec, await asyncio.shield(twin))
            return
        fut = asyncio.get_running_loop().create_future()
        in_flight[prep.key] = fut
        # A slot is held from the send until the reply is written to the cache file, so at most
        # `concurrency` requests are ever paid for but not yet on file: what a kill -9 can make a rerun
        # send again. (A machine crash can also lose the last batch that was written but not fsynced.)
        await slots.acquire()
        try:
            outcome = await send(prep)
        except BaseException:
            slots.release()
            in_flight.pop(prep.key, None)
            fut.set_result(("stopped", None))  # never leave a twin waiting (cancellation, Ctrl-C)
            raise
        if outcome[0] == "entry" and committer is not None:
            held = [True]

            def free(*_):  # once: when the reply is written (survives kill -9), or if the commit fails
                if held[0]:
                    held[0] = False
                    slots.release()

            task = asyncio.create_task(settle(rec, prep.key, fut, outcome, free))  # the worker moves on
            commits.add(task)
            task.add_done_callback(commits.discard)
            task.add_done_callback(free)
        else:
            slots.release()
            await settle(rec, prep.key, fut, outcome)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            rec, prep = item
            if fatal:
                stats.not_sent += 1
                continue
            await handle(rec, prep)

    counters_before = Counter(teacher.counters)
    prod = asyncio.create_task(producer())
    try:
        await asyncio.gather(*(worker() for _ in range(n_workers)))
        await prod
        while commits:
            await asyncio.gather(*list(commits))
    finally:
        prod.cancel()
        bar.close()
        stats.counters.update(teacher.counters - counters_before)
        if hasattr(teacher, "aclose"):
            await teacher.aclose()
    if fatal:
        raise fatal[0]
    return RunResult(replies, stats)
