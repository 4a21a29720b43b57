"""Throughput of the distill runner against a local chat-completions server with fixed latency.

    OMP_NUM_THREADS=1 python bench/bench_distill.py [--latency 0.2] [--concurrency 1 8 32 64]

Not a test. The fake server (tests/teacher/server.py) runs in its own process and answers every
request after ``--latency`` seconds; the runner drives the real OpenAITeacher (AsyncOpenAI client,
base64 images, the paper's teacher prompt) through the durable cache (fsync per commit) at each
concurrency. With a fixed latency L and C requests in flight, no client can beat C / L requests per
second: the bound. The figure of merit is req/s as a fraction of that bound (target >= 0.9 at 32);
each level runs ``--repeat`` times and reports the median (other work on shared CPUs adds noise).
Writes metrics/bench_distill.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py

from common import chart_records  # noqa: E402
from vlmcot.io import write_json  # noqa: E402
from vlmcot.teacher.cache import ReplyCache  # noqa: E402
from vlmcot.teacher.openai_backend import OpenAIConfig, OpenAITeacher  # noqa: E402
from vlmcot.teacher.runner import run_teacher  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/teacher/server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.split()[1])


def bench_one(port: int, concurrency: int, n: int, root: Path, offset: int, http_client: str = "aiohttp") -> dict:
    # Fresh records (distinct images) per level, so nothing comes from the cache.
    recs = chart_records(root / f"c{concurrency}", n, tag=f" (level {offset})")
    cfg = OpenAIConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key_env="BENCH_KEY",
        max_concurrency=concurrency,
        request_timeout_s=30,
        max_retries=0,
        http_client=http_client,
    )
    teacher = OpenAITeacher(cfg, image_root=root / f"c{concurrency}")
    with ReplyCache(root / f"cache{concurrency}") as cache:
        t0 = time.perf_counter()
        res = run_teacher(recs, teacher, cache=cache, concurrency=concurrency, progress=False)
        wall = time.perf_counter() - t0
    ok = sum(r.ok for r in res.replies.values())
    assert ok == n, f"{n - ok} requests failed at concurrency {concurrency}"
    return {"requests": n, "wall_s": wall, "req_per_s": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--rounds", type=int, default=20, help="requests per worker at each level (min 20 requests)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per level; the median is reported (shared CPUs are noisy)"
    )
    ap.add_argument("--http-client", choices=["aiohttp", "httpx"], default="aiohttp", help="distill.openai.http_client")
    ap.add_argument("--out", default=str(REPO / "metrics/bench_distill.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ["BENCH_KEY"] = "bench-not-a-secret"
    proc, port = start_server(args.latency)
    out: dict[str, float | int | str] = {
        "latency_s": args.latency,
        "http_client": args.http_client,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench_one(port, 4, 8, Path(tmp), -1, args.http_client)  # warm-up: imports, first connections
            print(f"{'concurrency':>11} {'requests':>8} {'req/s':>8} {'(min-max)':>15} {'bound':>8} {'of bound':>8}")
            for i, c in enumerate(args.concurrency):
                n = max(20, args.rounds * c)
                rates = sorted(
                    bench_one(port, c, n, Path(tmp), i * 100 + k, args.http_client)["req_per_s"]
                    for k in range(args.repeat)
                )
                med = statistics.median(rates)
                bound = c / args.latency
                frac = med / bound
                print(
                    f"{c:>11} {n:>8} {med:>8.1f} {f'({rates[0]:.1f}-{rates[-1]:.1f})':>15} {bound:>8.1f} {frac:>8.1%}",
                    flush=True,
                )
                out[f"c{c}.req_per_s"] = round(med, 2)
                out[f"c{c}.req_per_s_min"] = round(rates[0], 2)
                out[f"c{c}.req_per_s_max"] = round(rates[-1], 2)
                out[f"c{c}.bound_req_per_s"] = round(bound, 2)
                out[f"c{c}.fraction_of_bound"] = round(frac, 4)
                out[f"c{c}.requests"] = n
    finally:
        proc.kill()
        proc.wait()
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
