from vlmcot.records import SFTRecord, validate_vqa


def rec(**kw):
    base = dict(id="r1", image="img.png", question="What?", answer="3", dataset="d", qtype="numeric",
                split="train", metric="relaxed_accuracy")
    base.update(kw)
    return base


def test_valid_record_passes():
    good, errors = validate_vqa([rec()])
    assert len(good) == 1 and errors == []


def test_each_bad_record_is_named_and_skipped(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"x")
    rows = [
        rec(id="ok", image="ok.png"),
        rec(id="noimg", image="missing.png"),
        rec(id="empty_q", image="ok.png", question="  "),
        rec(id="no_ans", image="ok.png", answer=""),
        rec(id="mc_bad", image="ok.png", qtype="multiple_choice", choices=["x", "y"], answer="C"),
        rec(id="ok", image="ok.png"),  # duplicate id
        {"id": "typo", "questoin": "?"},
    ]
    good, errors = validate_vqa(rows, check_images=True, root=tmp_path)
    assert [g.id for g in good] == ["ok"]
    text = "\n".join(errors)
    for rid, why in [("noimg", "image file not found"), ("empty_q", "empty question"),
                     ("no_ans", "missing answer"), ("mc_bad", "not a letter"), ("ok", "duplicate id"),
                     ("typo", "record typo")]:
        assert f"record {rid}" in text and why in text, (rid, why, text)
    assert len(errors) == 6


def test_sft_record_round_trips_llava_format():
    row = {"id": "x", "image": "a.png",
           "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]}
    r = SFTRecord.model_validate(row)
    assert r.model_dump_llava() == row


def test_select_records_filters_sorts_offsets_and_caps(tmp_path):
    import pytest

    from vlmcot.errors import StageError
    from vlmcot.io import write_jsonl
    from vlmcot.records import select_records

    path = tmp_path / "eval.jsonl"
    rows = [rec(id=f"{ds}_{i}", dataset=ds) for ds in ("b", "a") for i in reversed(range(4))]
    write_jsonl(path, rows + [{"id": "bad"}])  # 1 bad row of 9
    pick = dict(datasets=None, offset=0, max_per_dataset=None, max_bad_rate=0.2)
    assert [r.id for r in select_records(path, **pick)] == [f"{ds}_{i}" for ds in "ab" for i in range(4)]
    got = select_records(path, **{**pick, "datasets": ["b"], "offset": 1, "max_per_dataset": 2})
    assert [r.id for r in got] == ["b_1", "b_2"]
    with pytest.raises(StageError, match="1 of 9 records malformed"):
        select_records(path, **{**pick, "max_bad_rate": 0.1})
    with pytest.raises(StageError, match="no questions left"):
        select_records(path, **{**pick, "offset": 4})
    with pytest.raises(StageError, match="not found"):
        select_records(tmp_path / "none.jsonl", **pick)
