"""Bad input to `prepare`: each bad record is named, counted and skipped; too many fail the stage."""

import pytest
from PIL import Image

from vlmcot.io import read_json, read_jsonl
from vlmcot.pipeline import prepare
from vlmcot.records import VQARecord
from vlmcot.stage import StageError


def _records(tmp_path):
    img_dir = tmp_path / "prepared/images/d"
    img_dir.mkdir(parents=True)
    good_png = img_dir / "ok.png"
    Image.new("RGB", (8, 8), "red").save(good_png)
    (img_dir / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")

    def rec(i, **kw):
        base = dict(id=f"d-train-{i:03d}", image=str(good_png), question="How many?", answer="3",
                    dataset="d", qtype="numeric", split="train", metric="relaxed_accuracy")
        base.update(kw)
        return VQARecord.model_construct(**base)  # unvalidated, as a buggy generator/adapter would emit

    recs = [rec(i) for i in range(20)]
    recs += [
        rec(20, image=str(img_dir / "missing.png")),
        rec(21, image=str(img_dir / "corrupt.png")),
        rec(22, question="   "),
        rec(23, answer=""),
        rec(24, qtype="multiple_choice", choices=["cat", "dog"], answer="D"),
        rec(0),  # duplicate id
    ]
    return recs


def test_each_bad_record_named_counted_skipped(tmp_path, tracker, monkeypatch, caplog):
    recs = _records(tmp_path)
    monkeypatch.setattr(prepare, "generate", lambda cfg, out: recs)
    cfg = prepare.Config(out_dir=str(tmp_path / "prepared"), metrics=str(tmp_path / "m.json"), max_error_rate=0.3)
    prepare.run(cfg, tracker)
    assert len(read_jsonl(tmp_path / "prepared/train.jsonl")) == 20  # every good record kept
    assert read_json(cfg.metrics)["invalid"] == 6
    log = caplog.text
    for rid, why in [(20, "image file not found"), (21, "does not decode"), (22, "empty question"),
                     (23, "missing answer"), (24, "not a letter among the 2 choices"), (0, "duplicate id")]:
        assert f"record d-train-{rid:03d}: " in log and why in log, (rid, why)


def test_over_the_error_rate_the_stage_fails_naming_the_key(tmp_path, tracker, monkeypatch):
    monkeypatch.setattr(prepare, "generate", lambda cfg, out: _records(tmp_path))
    cfg = prepare.Config(out_dir=str(tmp_path / "prepared"), metrics=str(tmp_path / "m.json"), max_error_rate=0.1)
    with pytest.raises(StageError, match=r"6/26 invalid records \(> prepare.max_error_rate=0.1\)"):
        prepare.run(cfg, tracker)
