"""Fault injection in the data (issue #14, probes 5-7, 9): truncated and oversized images, decode
bombs, non-UTF-8 lines in every JSONL reader, file names and image paths that climb out, and params
that pydantic's lax mode or PyYAML used to accept."""

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
import yaml

from tests.helpers import noise_png
from tests.teacher.helpers import fast_openai, make_records, write_params, write_records
from tests.teacher.server import FakeChatServer
from vlmcot.images import ImagePolicy, ImageRejected, check_image, resolve_image
from vlmcot.io import DataError, UnsafePathError, output_path, read_json, read_jsonl, safe_name
from vlmcot.pipeline import filter as filt
from vlmcot.pipeline.rerank import write_curves
from vlmcot.records import validate_vqa
from vlmcot.stage import main


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLMCOT_TEST_KEY", "sk-test-data-0123456789")
    return tmp_path


def _truncate(path: Path, data: bytes) -> None:
    path.write_bytes(data[: len(data) * 6 // 10])  # header intact, pixel data cut


def _bomb_png(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header declares width x height pixels (decoding would need w*h*3 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _row(rid, image, **kw):
    return dict(id=rid, image=image, question="q?", answer="1", dataset="chart", qtype="numeric", split="train",
                metric="relaxed_accuracy", **kw)


# -- probe 6: a truncated PNG is caught (and named) where the data is checked ----------------------


def test_a_truncated_png_is_named_and_skipped_by_the_prepare_check(ws):
    data = noise_png(ws / "img/t.png", 64)
    _truncate(ws / "img/t.png", data)
    noise_png(ws / "img/ok.png", 64)
    good, errors = validate_vqa([_row("ok", "img/ok.png"), _row("cut", "img/t.png")], verify_images=True)
    assert [g.id for g in good] == ["ok"]
    assert errors[0].startswith("record cut: image img/t.png does not decode") and "truncated" in errors[0]


def test_filter_decodes_every_image_and_counts_a_truncated_one_as_bad(ws, tmp_path):
    rows = []
    for i in range(20):
        noise_png(ws / f"img/{i}.png", 64)
        rows.append(_row(f"chart-{i}", f"img/{i}.png"))
    _truncate(ws / "img/7.png", (ws / "img/7.png").read_bytes())
    (ws / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ws / "replies.jsonl").write_text("".join(
        json.dumps({"id": r["id"], "ok": True, "text": "because\n\n### Answer: 1"}) + "\n" for r in rows))
    from tests.conftest import FakeTracker

    cfg = filt.Config(records="train.jsonl", replies="replies.jsonl", out="cot.jsonl", metrics="m.json",
                      lengths_csv="l.csv", lengths_png="l.png", max_bad_rate=0.1, max_missing_rate=1.0)
    filt.run(cfg, FakeTracker())
    m = read_json("m.json")
    assert m["total.invalid_records"] == 1 and m["total.kept"] == 19
    assert "chart-7" not in {r["id"] for r in read_jsonl("cot.jsonl")}
    # above the stage's max bad rate the stage fails, naming the file
    cfg.max_bad_rate = 0.01
    with pytest.raises(DataError, match=r"1 of 20 rows are bad .*record chart-7: image img/7.png does not decode"):
        filt.run(cfg, FakeTracker())


def test_a_decode_bomb_is_refused_from_its_header(ws):
    (ws / "bomb.png").write_bytes(_bomb_png(100_000, 100_000))  # 10^10 pixels in 60 bytes
    with pytest.raises(ImageRejected, match=r"bomb.png: .*10000000000 pixels.*images.max_pixels") as e:
        check_image("bomb.png", policy=ImagePolicy(max_pixels=40_000_000))  # PIL's own check fires first
    assert e.value.reason == "image_too_large"
    (ws / "wide.png").write_bytes(_bomb_png(8000, 6000))  # 48M: over the default 40M, under PIL's own
    with pytest.raises(ImageRejected, match=r"8000x6000 = 48000000 pixels, over images.max_pixels=40000000") as e:
        check_image("wide.png")
    assert e.value.reason == "image_too_large"


# -- probe 6: non-UTF-8 lines are named and skipped by every reader -------------------------------


def test_read_jsonl_names_and_skips_a_non_utf8_line_and_fails_cleanly_above_the_rate(tmp_path, caplog):
    p = tmp_path / "a.jsonl"
    good = b"".join(json.dumps({"id": f"r{i}"}).encode() + b"\n" for i in range(200))
    p.write_bytes(good + b'{"id": "\xff"}\n')
    errors = []
    assert len(read_jsonl(p, errors=errors)) == 200  # 1 of 201 is under the default 1%
    assert errors == [f"{p}:201: not valid UTF-8 (byte 8)"] and "a.jsonl:201" in caplog.text
    p.write_bytes(b'{"id": "\xff"}\n' + b'{"id": "ok"}\n')
    with pytest.raises(DataError, match=r"1 of 2 lines unreadable .*a\.jsonl:1: not valid UTF-8"):
        read_jsonl(p)


def test_distill_skips_a_non_utf8_line_instead_of_refusing_the_file(ws):
    recs = make_records(ws, 12)
    write_records(ws / "data/prepared/train.jsonl", recs)
    with (ws / "data/prepared/train.jsonl").open("ab") as f:
        f.write(b'{"id": "bad-\xff", "question": "q"}\n')
    with FakeChatServer() as srv:
        assert main("distill", str(write_params(ws / "params.yaml", openai=fast_openai(srv.base_url)))) == 0
    m = read_json("metrics/distill.json")
    assert (m["records"], m["ok"], m["failed.unreadable_input"]) == (13, 12, 1) and srv.total == 12


def test_sft_fails_cleanly_naming_the_line_not_with_a_traceback(ws, capsys):
    (ws / "data/mix").mkdir(parents=True)
    (ws / "data/mix/both.jsonl").write_bytes(b'{"id": "a\xff"}\n{"id": "b\xfe"}\n')
    (ws / "params.yaml").write_text(yaml.safe_dump({"sft": {"mix_dir": "data/mix", "mixes": ["both"]}}))
    assert main("sft", "params.yaml", item="both") == 1
    err = capsys.readouterr().err
    assert "both.jsonl:1: not valid UTF-8" in err and "Traceback" not in err


# -- probe 7: confined output names and image paths --------------------------------------------------


@pytest.mark.parametrize("label", ["../../x", "/etc/passwd", "..", "", "a/b\\c", ".hidden"])
def test_output_names_from_data_are_sanitised_and_stay_inside(tmp_path, label):
    p = output_path(tmp_path / "plots", f"rerank_{label}.csv")
    assert p.parent == tmp_path / "plots" and "/" not in p.name and not p.name.startswith(".")
    assert safe_name(label) not in ("", ".", "..")


def test_rerank_curve_for_a_climbing_dataset_label_lands_in_the_plots_folder(tmp_path):
    plots = tmp_path / "a" / "b" / "plots"
    paths = write_curves(plots, {"../../x": {"majority": {1: 0.5}}})
    assert paths == [plots / "rerank_.._.._x.csv"] and paths[0].is_file()
    assert [p.parent for p in tmp_path.rglob("*.csv")] == [plots]  # nothing written two levels up


def test_an_output_name_that_is_a_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "plots").mkdir()
    os.symlink(tmp_path, tmp_path / "plots" / "rerank_x.csv")
    with pytest.raises(UnsafePathError, match="outside"):
        output_path(tmp_path / "plots", "rerank_x.csv")


def test_image_paths_are_confined_to_the_repo_and_roots(ws, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    noise_png(other / "o.png", 64)
    noise_png(ws / "in.png", 64)
    os.symlink(other / "o.png", ws / "link.png")
    cases = {"../" * 8 + str(other / "o.png").lstrip("/"): "image_outside", str(other / "o.png"): "image_outside",
             "link.png": "image_outside", "/dev/zero": "image_outside", "in.png": None}
    for image, reason in cases.items():
        if reason is None:
            assert resolve_image(image) == Path("in.png")
            continue
        with pytest.raises(ImageRejected) as e:
            resolve_image(image)
        assert e.value.reason == reason, image
    resolve_image(str(other / "o.png"), policy=ImagePolicy(roots=[str(other)]))  # a configured data root
    resolve_image("link.png", policy=ImagePolicy(allow_outside=True))
    for dev in ("/dev/zero", "/dev/null"):  # never read, even when allowed
        with pytest.raises(ImageRejected) as e:
            check_image(dev, policy=ImagePolicy(allow_outside=True))
        assert e.value.reason == "image_not_file"
    os.mkfifo(ws / "fifo.png")
    with pytest.raises(ImageRejected) as e:
        check_image("fifo.png")  # open() would block forever
    assert e.value.reason == "image_not_file"


# -- probe 9: strict params ----------------------------------------------------------------------------


def _params_error(ws, capsys, text: str, stage: str = "prepare") -> str:
    (ws / "params.yaml").write_text(text)
    assert main(stage, "params.yaml") == 2
    return capsys.readouterr().err.strip()


def test_a_boolean_is_not_an_integer(ws, capsys):
    err = _params_error(ws, capsys, "prepare:\n  world:\n    chart:\n      n_train: true\n")
    assert err == ("error: params.yaml: prepare.world.chart.n_train: Input should be a valid integer (got True)")


def test_a_duplicated_key_is_an_error_naming_it(ws, capsys):
    err = _params_error(ws, capsys, "prepare:\n  max_error_rate: 0.01\n  out_dir: a\n  max_error_rate: 0.5\n")
    assert err == ("error: params.yaml: line 4: key 'max_error_rate' is written twice in one mapping "
                   "(first at line 2); remove one")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_floats_are_rejected(ws, capsys, value):
    err = _params_error(ws, capsys, f"sample:\n  temperature_short: {value}\n", stage="sample")
    assert err.startswith("error: params.yaml: sample.temperature_short: Input should be a finite number")


def test_strings_are_not_numbers(ws, capsys):
    err = _params_error(ws, capsys, "prepare:\n  max_error_rate: '0.5'\n")
    assert err.startswith("error: params.yaml: prepare.max_error_rate: Input should be a valid number")
