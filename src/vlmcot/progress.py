"""A periodic progress line for loops that have no tqdm bar: steps, rate and ETA every ``every_s``.

A log line rather than a bar: DVC runs stages with their output in a pipe (no terminal), where a
carriage-return bar turns into one long line; log lines read the same in a terminal, a pipe and CI.
"""

from __future__ import annotations

import logging
import time


class Progress:
    def __init__(self, label: str, total: int, unit: str = "steps", every_s: float = 10.0,
                 logger: logging.Logger | None = None):
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.log = logger or logging.getLogger("vlmcot")
        self.start = self.last = time.perf_counter()
        self.done = 0

    def line(self, now: float, extra: str = "") -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / max(self.total, 1)
        eta_s = f"{int(eta // 60)}m{int(eta % 60):02d}s" if eta == eta else "?"
        return (f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {rate:.2f} {self.unit}/s, "
                f"elapsed {int(elapsed // 60)}m{int(elapsed % 60):02d}s, ETA {eta_s}" + (f", {extra}" if extra else ""))

    def update(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            self.log.info("%s", self.line(now, extra))
