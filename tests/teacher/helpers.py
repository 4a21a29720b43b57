"""Test helpers for the teacher and distill tests: tiny images, VQA records, a params file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml
from PIL import Image

from vlmcot.records import VQARecord

REPO = Path(__file__).resolve().parents[2]


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A distinct tiny PNG per seed (distinct bytes -> distinct cache keys)."""
    img = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    img.putpixel((seed % size, (seed // size) % size), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_records(
    root: Path, n: int, questions: dict[int, str] | None = None, dataset: str = "synth_chart"
) -> list[VQARecord]:
    """n chart-style records with images under root/images (paths relative to root)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rel = f"images/{i:04d}.png"
        (root / rel).write_bytes(png_bytes(i))
        q = (questions or {}).get(i, f"What is the value of bar {i}?")
        out.append(
            VQARecord(
                id=f"r{i:04d}",
                image=rel,
                question=q,
                answer=str(i % 17),
                dataset=dataset,
                qtype="numeric",
                split="train",
                metric="relaxed_accuracy",
            )
        )
    return out


def write_records(path: Path, records: list[VQARecord], extra_rows: list[dict] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.model_dump(mode="json", exclude_none=True) for r in records] + list(extra_rows or [])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_params(path: Path, backend: str = "openai", openai: dict | None = None, **distill) -> Path:
    section = {"backend": backend, "progress": False, **distill}
    if openai is not None:
        section["openai"] = openai
    path.write_text(yaml.safe_dump({"distill": section}, sort_keys=False))
    return path


def fast_openai(base_url: str, **over) -> dict:
    """An openai section for the fake server: short timeouts and backoffs so fault tests take < 1 s."""
    cfg = {
        "model": "gpt-4o-2024-05-13",
        "base_url": base_url,
        "api_key_env": "VLMCOT_TEST_KEY",
        "max_concurrency": 4,
        "request_timeout_s": 0.5,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "jitter": 0.5,
    }
    cfg.update(over)
    return cfg
