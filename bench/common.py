"""Shared by the bench scripts: merge figures into metrics/bench.json (one key prefix per script), and
time training steps (a TrainerCallback clock and the steps/s after warm-up)."""

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
