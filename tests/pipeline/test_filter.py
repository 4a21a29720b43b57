import json

import pytest
from PIL import Image

from vlmcot.io import read_json, read_jsonl, write_jsonl
from vlmcot.pipeline import filter as filt
from vlmcot.stage import StageError


def _rec(root, i, ds, answer, metric, qtype="numeric", choices=None):
    img = root / f"{ds}-{i}.png"
    Image.new("RGB", (4, 4)).save(img)  # filter decodes every image
    return dict(id=f"{ds}-{i}", image=str(img), question="q?", answer=answer, dataset=ds,
                qtype=qtype, split="train", metric=metric, choices=choices)


@pytest.fixture
def world(tmp_path):
    recs = [
        _rec(tmp_path, 0, "chart", "40", "relaxed_accuracy"),       # 41 is within 5% -> kept
        _rec(tmp_path, 1, "chart", "40", "relaxed_accuracy"),       # 45 is not -> wrong
        _rec(tmp_path, 2, "chart", "10", "relaxed_accuracy"),       # teacher failed (http 500)
        _rec(tmp_path, 3, "sci", "B", "mc_accuracy", "multiple_choice", ["cat", "dog", "owl"]),  # kept
        _rec(tmp_path, 4, "sci", "A", "mc_accuracy", "multiple_choice", ["cat", "dog", "owl"]),  # no marker
    ]
    replies = [
        {"id": "chart-0", "ok": True, "text": "The bar reads 41.\n\n### Answer: 41"},
        {"id": "chart-1", "ok": True, "text": "It is 45.\n\n### Answer: 45"},
        {"id": "chart-2", "ok": False, "text": None, "reason": "http_500"},
        {"id": "sci-3", "ok": True, "text": "A dog barks.\n\n### Answer: B"},
        {"id": "sci-4", "ok": True, "text": "I think it is the cat."},
    ]
    write_jsonl(tmp_path / "train.jsonl", [{k: v for k, v in r.items() if v is not None} for r in recs])
    write_jsonl(tmp_path / "replies.jsonl", replies)
    cfg = filt.Config(records=str(tmp_path / "train.jsonl"), replies=str(tmp_path / "replies.jsonl"),
                      out=str(tmp_path / "out/cot.jsonl"), metrics=str(tmp_path / "filter.json"), summary=str(tmp_path / "summary.json"),
                      lengths_csv=str(tmp_path / "lengths.csv"), lengths_png=str(tmp_path / "len.png"))
    return cfg


def test_filter_keeps_only_agreeing_rationales(world, tracker):
    filt.run(world, tracker)
    kept = read_jsonl(world.out)
    assert [k["id"] for k in kept] == ["chart-0", "sci-3"]
    assert kept[0]["teacher_answer"] == "41" and kept[0]["cot"].endswith("### Answer: 41")
    m = read_json(world.metrics)
    assert m["chart.total"] == 3 and m["chart.kept"] == 1 and m["chart.dropped_wrong"] == 1
    assert m["chart.dropped_failed"] == 1 and m["chart.failed_http_500"] == 1
    assert m["sci.failed_no_marker"] == 1
    assert m["total.kept"] == 2 and m["total.kept_rate"] == 0.4
    csv = open(world.lengths_csv).read().splitlines()
    assert csv[0] == "length,cot,direct"
    assert sum(int(line.split(",")[2]) for line in csv[1:]) == 2  # two direct answers counted


def test_missing_reply_fails_with_ids(world, tracker, tmp_path):
    rows = read_jsonl(world.replies)[:-1]
    write_jsonl(world.replies, rows)
    with pytest.raises(StageError, match="sci-4"):
        filt.run(world, tracker)


def test_histogram_bins():
    rows = filt.length_histogram([3, 7, 12], [1, 1], 5)
    assert rows == [{"length": 0, "cot": 1, "direct": 2}, {"length": 5, "cot": 1, "direct": 0},
                    {"length": 10, "cot": 1, "direct": 0}]


def test_bad_rows_are_named_counted_and_skipped(world, tracker, tmp_path):
    good = (tmp_path / "train.jsonl").read_bytes()
    bad = (b'{"id": "x-\xff"}\n'                                   # not UTF-8
           b'{"id": "chart-9", "image": "/nope.png", "question": "q", "answer": "1", "dataset": "chart",'
           b' "qtype": "numeric", "split": "train", "metric": "relaxed_accuracy"}\n')  # missing image
    (tmp_path / "train.jsonl").write_bytes(good + bad)
    (tmp_path / "replies.jsonl").write_bytes((tmp_path / "replies.jsonl").read_bytes() + b"{torn\n")
    world.max_bad_rate = 0.5
    filt.run(world, tracker)
    m = read_json(world.metrics)
    assert m["total.invalid_records"] == 2 and m["total.invalid_replies"] == 1
    assert m["total.kept"] == 2  # the good records are untouched
    world.max_bad_rate = 0.1
    with pytest.raises(Exception, match=r"2 of 7 rows are bad \(more than filter.max_bad_rate=0.1\)"):
        filt.run(world, tracker)
