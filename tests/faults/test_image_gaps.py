"""Fault injection for the images no prepare/filter check sees (issue #14): imported ShareGPT rows
reaching `mix`, SFT and DPO rows built from a file changed since, and what the hub adapters read
from local paths, zip members and bytes (bounded, confined)."""

import io
import logging
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import noise_png
from vlmcot.adapters.geoqa import _ImageStore
from vlmcot.adapters.images import ImageError, image_bytes, save_bytes, save_image
from vlmcot.images import ImagePolicy
from vlmcot.io import read_json, read_jsonl
from vlmcot.pipeline import mix
from vlmcot.records import SFTRecord
from vlmcot.sharegpt import export_sft
from vlmcot.stage import StageError
from vlmcot.training.data import sft_rows
from vlmcot.training.dpo import dpo_rows


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])  # header intact, pixel data cut


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    return tmp_path / "repo"


def _release(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """A ShareGPT-format release with n direct + n cot rows, images unpacked outside the repo."""
    image_root = tmp_path / "unpacked"
    rows = []
    for i in range(n):
        noise_png(image_root / "chartqa" / f"{i}.png", 32)
        for kind, answer in (("direct", "7"), ("cot", "The bar is 7.\n\n### Answer: 7")):
            rows.append(SFTRecord.model_validate({
                "id": f"chartqa_{i}_{kind}", "image": f"chartqa/{i}.png", "dataset": "chartqa", "kind": kind,
                "conversations": [{"from": "human", "value": f"<image>\nQ{i}?"}, {"from": "gpt", "value": answer}]}))
    export_sft(rows, tmp_path / "release" / "sft")
    return tmp_path / "release" / "sft", image_root


def _cfg(tmp_path, sft_dir, image_root, **kw):
    return mix.Config(source="sharegpt", sharegpt_dir=str(sft_dir), sharegpt_image_root=str(image_root),
                      out_dir=str(tmp_path / "mix"), metrics=str(tmp_path / "mix.json"),
                      format_per_dataset=2, include_general=False, **kw)


def test_mix_names_and_skips_a_truncated_imported_image(repo, tmp_path, tracker, caplog):
    sft_dir, image_root = _release(tmp_path, 60)
    _truncate(image_root / "chartqa" / "7.png")
    cfg = _cfg(tmp_path, sft_dir, image_root, max_bad_rate=0.05)
    with caplog.at_level(logging.WARNING, logger="vlmcot.pipeline.mix"):
        mix.run(cfg, tracker)
    both = read_jsonl(tmp_path / "mix" / "both.jsonl")
    assert len(both) == 118  # 120 rows, the two naming the truncated file skipped
    assert not any(r["image"].endswith("chartqa/7.png") for r in both)
    assert read_json(cfg.metrics)["skipped.images"] == 2
    assert "chartqa_7_cot" in caplog.text and "does not decode" in caplog.text
    # and SFT, reading the mix, gets every row (its own check finds nothing left to skip)
    rows, errors = sft_rows(both)
    assert len(rows) == 118 and errors == []


def test_mix_fails_naming_the_record_when_too_many_images_are_bad(repo, tmp_path, tracker):
    sft_dir, image_root = _release(tmp_path, 10)
    for i in range(3):
        _truncate(image_root / "chartqa" / f"{i}.png")
    with pytest.raises(StageError, match=r"6 of 20 rows .*mix.max_bad_rate.*chartqa_0"):
        mix.run(_cfg(tmp_path, sft_dir, image_root), tracker)


def test_mix_refuses_an_imported_image_that_links_out_of_the_image_root(repo, tmp_path, tracker):
    sft_dir, image_root = _release(tmp_path, 60)
    secret = tmp_path / "elsewhere" / "x.png"
    noise_png(secret, 32)
    (image_root / "chartqa" / "3.png").unlink()
    (image_root / "chartqa" / "3.png").symlink_to(secret)
    cfg = _cfg(tmp_path, sft_dir, image_root, max_bad_rate=0.05)
    mix.run(cfg, tracker)
    assert read_json(cfg.metrics)["skipped.images"] == 2
    # allowed once its folder is a configured root
    cfg = _cfg(tmp_path, sft_dir, image_root, images=ImagePolicy(roots=[str(secret.parent)]))
    mix.run(cfg, tracker)
    assert read_json(cfg.metrics)["skipped.images"] == 0


def test_sft_rows_skip_an_image_truncated_after_the_mix_naming_record_and_file(repo):
    for i in range(3):
        noise_png(repo / "img" / f"{i}.png", 32)
    _truncate(repo / "img" / "1.png")
    recs = [{"id": f"r{i}", "image": f"img/{i}.png",
             "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]}
            for i in range(3)]
    rows, errors = sft_rows(recs)
    assert [r["id"] for r in rows] == ["r0", "r2"]
    assert len(errors) == 1 and "record r1" in errors[0] and "img/1.png" in errors[0] and "decode" in errors[0]


def test_dpo_rows_decode_imported_pair_images_once(repo):
    noise_png(repo / "img" / "a.png", 32)
    noise_png(repo / "img" / "b.png", 32)
    _truncate(repo / "img" / "b.png")
    pairs = [{"id": f"p{i}", "image": img, "prompt": "Q?", "chosen": "yes", "rejected": "no"}
             for i, img in enumerate(["img/a.png", "img/b.png", "img/b.png"])]
    rows, errors = dpo_rows(pairs)
    assert [r["id"] for r in rows] == ["p0"]
    assert [e.split(":")[0] for e in errors] == ["pair p1", "pair p2"]
    assert "img/b.png" in errors[0] and "decode" in errors[0]


# --- hub adapters: what they read from local paths, zip members and bytes ---


def test_adapter_refuses_a_symlink_out_of_the_source_folder(repo, tmp_path):
    src = tmp_path / "source"
    noise_png(tmp_path / "outside" / "x.png", 32)
    src.mkdir()
    (src / "a.png").symlink_to(tmp_path / "outside" / "x.png")
    with pytest.raises(ImageError, match="outside the repo"):
        save_image("a.png", repo / "out", base_dir=src)
    # an explicit root (prepare.images.roots) allows it
    assert save_image("a.png", repo / "out", base_dir=src, policy=ImagePolicy(roots=[str(tmp_path / "outside")]))


def test_adapter_does_not_read_a_file_over_max_bytes(repo):
    data = noise_png(repo / "big.png", 64)
    small = ImagePolicy(max_bytes=len(data) - 1)
    with pytest.raises(ImageError, match="max_bytes"):
        save_image("big.png", repo / "out", policy=small)
    with pytest.raises(ImageError, match="max_bytes"):
        image_bytes({"bytes": data, "path": None}, policy=small)
    with pytest.raises(ImageError, match="max_bytes"):
        save_bytes(data, repo / "out", policy=small)
    assert not (repo / "out").exists()


def test_adapter_refuses_a_pixel_bomb_from_its_header(repo):
    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, format="PNG")  # 48M pixels in a few KB
    with pytest.raises(ImageError, match="max_pixels"):
        save_bytes(buf.getvalue(), repo / "out")


def test_zip_member_over_max_bytes_is_not_inflated(repo):
    archive = repo / "images.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("geoqa_plus/1.png", b"\0" * 21_000_000)  # 21 MB of zeros: ~20 KB compressed
        z.writestr("geoqa_plus/2.png", noise_png(repo / "two.png", 32))
    store = _ImageStore(archive)
    with pytest.raises(ImageError, match="max_bytes"):
        store.read("geoqa_plus/1.png")
    assert store.read("geoqa_plus/2.png") == (repo / "two.png").read_bytes()
    # prepare.images reaches the store: a tighter limit refuses the small member too
    with pytest.raises(ImageError, match="max_bytes=100"):
        _ImageStore(archive, ImagePolicy(max_bytes=100)).read("geoqa_plus/2.png")


def test_an_image_damaged_during_training_is_one_error_naming_record_and_file(repo):
    """The collator (TRL's, with a real processor) on a file cut after sft_rows checked it."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from vlmcot.models import build_processor, train_bpe_tokenizer
    from vlmcot.training.data import NamedImageErrors, TrainingImageError, to_dataset

    tok = train_bpe_tokenizer(["What is 3+4? ### Answer: 7", "USER:\nASSISTANT:\n"] * 4, vocab_size=300)
    collator = NamedImageErrors(DataCollatorForVisionLanguageModeling(
        processor=build_processor(tok, 32, 16), assistant_only_loss=True))
    for name in ("a", "b"):
        noise_png(repo / f"{name}.png", 32)
    conv = [{"from": "human", "value": "<image>\nWhat is 3+4?"}, {"from": "gpt", "value": "### Answer: 7"}]
    rows, errors = sft_rows([{"id": "rec-a", "image": "a.png", "conversations": conv},
                             {"id": "rec-b", "image": "b.png", "conversations": conv}])
    assert errors == []
    ds = to_dataset(rows, decode=False)  # as train_sft builds it
    assert collator([dict(ds[i]) for i in range(2)])["pixel_values"].shape == (2, 3, 32, 32)  # "id" rides along
    _truncate(repo / "b.png")
    with pytest.raises(TrainingImageError, match=r"record rec-b: image .*b\.png does not decode during training"):
        collator([dict(ds[i]) for i in range(2)])
