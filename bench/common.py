"""Shared by the bench scripts: merge figures into metrics/bench.json (one key prefix per script), time
training steps (a TrainerCallback clock and the steps/s after warm-up), and make distinct tiny records.

The benches import only the package and this file, never tests/ (the fake chat server they start,
tests/teacher/server.py, runs as its own process)."""

from __future__ import annotations

import json
import time
from pathlib import Path

BENCH_JSON = Path("metrics/bench.json")


def record(prefix: str, figures: dict[str, float], path: Path = BENCH_JSON) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data = {k: v for k, v in data.items() if not k.startswith(prefix + ".")}
    data.update({f"{prefix}.{k}": v for k, v in figures.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []  # wall clock at the end of each step
            self.cpu: list[float] = []  # this process's CPU time at the end of each step

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepTimer()


def rate(t: list[float], warmup: int) -> float:
    """Steps per second after the warm-up steps, from per-step clock readings."""
    return (len(t) - warmup) / (t[-1] - t[warmup - 1])


def chart_records(root: Path, n: int, tag: str = "") -> list:
    """``n`` numeric chart-style VQA records, each with its own tiny PNG under ``root/images`` (distinct
    bytes and questions, so no two share a teacher cache key); ``tag`` makes the questions of another
    bench level distinct too."""
    from PIL import Image

    from vlmcot.records import VQARecord

    (root / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rel = f"images/{i:04d}.png"
        img = Image.new("RGB", (8, 8), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
        img.putpixel((i % 8, (i // 8) % 8), (255, 255, 255))
        img.save(root / rel, format="PNG")
        out.append(VQARecord(id=f"r{i:04d}", image=rel, question=f"What is the value of bar {i}?{tag}",
                             answer=str(i % 17), dataset="synth_chart", qtype="numeric", split="train",
                             metric="relaxed_accuracy"))
    return out
