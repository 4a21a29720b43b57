from vlmcot.io import read_json, read_jsonl
from vlmcot.pipeline import prepare


def _cfg(tmp_path, **world):
    fam = {"n_train": 6, "n_eval": 3}
    w = {"chart": fam, "doc": fam, "geo": fam, "sci": fam, **world}
    return prepare.Config(out_dir=str(tmp_path / "prepared"), metrics=str(tmp_path / "prepare.json"), world=w)


def test_prepare_writes_sorted_splits_and_counts(tmp_path, tracker):
    cfg = _cfg(tmp_path)
    prepare.run(cfg, tracker)
    train = read_jsonl(tmp_path / "prepared/train.jsonl")
    ev = read_jsonl(tmp_path / "prepared/eval.jsonl")
    assert len(train) == 24 and len(ev) == 12
    assert [r["id"] for r in train] == sorted(r["id"] for r in train)
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in ev} == {"eval"}
    assert all((tmp_path / "prepared/images").exists() for _ in [0])
    m = read_json(cfg.metrics)
    assert m["synth_chart.train"] == 6 and m["synth_sci.eval"] == 3 and m["invalid"] == 0
    assert tracker.metrics["records"] == 36


def test_prepare_is_byte_deterministic(tmp_path, tracker):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for d in (a, b):
        prepare.run(_cfg(d), tracker)
    # records hold the out_dir in image paths; compare after stripping it
    ta = (a / "prepared/train.jsonl").read_text().replace(str(a), "")
    tb = (b / "prepared/train.jsonl").read_text().replace(str(b), "")
    assert ta == tb
    img = "prepared/images/synth_geo/synth_geo-train-000003.png"
    assert (a / img).read_bytes() == (b / img).read_bytes()


def test_prepare_writes_a_checkable_image_manifest(tmp_path, tracker):
    """images.sha256 (what the later stages depend on instead of the images folder) names every image a
    kept record names, once, sorted, with the sha256 of its bytes, in `sha256sum -c` format: the check
    passes on the images written and fails once one is rewritten."""
    import hashlib
    import shutil
    import subprocess

    cfg = _cfg(tmp_path)
    prepare.run(cfg, tracker)
    out = tmp_path / "prepared"
    records = read_jsonl(out / "train.jsonl") + read_jsonl(out / "eval.jsonl")
    lines = (out / "images.sha256").read_text().splitlines()
    entries = [line.split("  ", 1) for line in lines]
    paths = [p for _, p in entries]
    assert paths == sorted({r["image"] for r in records})
    for digest, path in entries:
        with open(path, "rb") as f:
            assert digest == hashlib.sha256(f.read()).hexdigest(), path
    assert read_json(cfg.metrics)["images"] == len(lines) == 36
    if shutil.which("sha256sum"):
        check = ["sha256sum", "--quiet", "-c", str(out / "images.sha256")]
        assert subprocess.run(check, capture_output=True).returncode == 0
        with open(paths[0], "ab") as f:
            f.write(b"\0")
        assert subprocess.run(check, capture_output=True).returncode != 0
