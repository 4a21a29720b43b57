"""Fixtures that write small local copies of hub datasets in their real schemas.

A repo directory gets parquet files (written by ``datasets`` with the source's ``Features``, so
``Image()`` columns are ``struct{bytes, path}`` as on the hub) and a README.md whose ``configs:``
block and ``data_files`` globs mirror the hub repo's, so ``datasets.load_dataset(<dir>, <config>,
split=...)`` behaves as it would on the hub id. Nothing binary is committed: all of it is generated.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image


def png(color=(200, 30, 30), size=(12, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(color=(30, 30, 200), size=(12, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


class Hub:
    """Writes hub-like dataset repos under a tmp dir and loads them through the adapters."""

    def __init__(self, root: Path):
        self.root = root
        self.png = png
        self.jpeg = jpeg
        self.image_dir = root / "images"
        self.cache_dir = root / "hf-cache"

    def img(self, data: bytes) -> dict:
        # What an Image() column holds in parquet: struct{bytes, path}.
        return {"bytes": data, "path": None}

    def repo(self, name: str, configs: dict, features) -> Path:
        """``configs``: {config_name: {split: rows}}; one config named "default" uses data/."""
        from datasets import Dataset

        repo = self.root / name
        yaml = ["---", "configs:"]
        for config, splits in configs.items():
            folder = "data" if config == "default" else config
            yaml.append(f"- config_name: {config}")
            yaml.append("  data_files:")
            for split, rows in splits.items():
                cols = {k: [r.get(k) for r in rows] for k in features}
                path = repo / folder / f"{split}-00000-of-00001.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                Dataset.from_dict(cols, features=features).to_parquet(str(path))
                yaml.append(f"  - split: {split}")
                yaml.append(f"    path: {folder}/{split}-*")
        yaml += ["---", f"# {name} (test fixture)", ""]
        (repo / "README.md").write_text("\n".join(yaml))
        return repo

    def load(self, **kw):
        from vlmcot.adapters import SourceConfig, load_all

        kw.setdefault("cache_dir", str(self.cache_dir))
        return load_all(SourceConfig(**kw), self.image_dir)


@pytest.fixture
def hub(tmp_path) -> Hub:
    return Hub(tmp_path)
