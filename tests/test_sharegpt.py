"""Import/export of the released ShareGPT-4o-Reasoning SFT and DPO files (fixtures in their formats)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmcot.adapters import LoadReport
from vlmcot.records import PairRecord, SFTRecord
from vlmcot.sharegpt import (
    export_pairs,
    export_sft,
    import_pairs,
    import_sft,
    infer_pair_source,
    infer_sft_source,
)

# Verbatim example rows from the schema sheet (DATASETS.md; newlines look stripped in that copy).
BUS_HUMAN = ("In which country is this bus located?A. ukB. cubaC. usaD. mexicoGenerate a reason first "
             "and then output a letter answer.")
BUS_GPT = "The image shows a red double-decker bus, … located in the UK.\n\n### Answer: A. uk"
LYNX_HUMAN = ("<image>\nWhich animal's feet are also adapted for walking on snow?\nA. Eurasian lynx\n"
              "B. Lynx pardinus\nAnswer with the option's letter from the given choices directly.")


def conv(human, gpt):
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


def write_lines(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln, ensure_ascii=False)) + "\n"
                            for ln in lines), encoding="utf-8")


@pytest.fixture
def sft_dir(tmp_path):
    root = tmp_path / "sft"
    write_lines(root / "pt_data_mix_2k.jsonl", [
        {"id": "general_1", "conversations": conv("Write a haiku about rain.", "Soft rain on the roof...")},
        {"id": "general_2", "image": "coco/1.jpg", "conversations": conv("<image>\nDescribe it.", "A cat.")},
    ])
    write_lines(root / "aokvqa" / "cot.none.jsonl", [
        {"id": "aokvqa_22MexNkBPpdZGX6sxbxVBH", "image": "aokvqa/22MexNkBPpdZGX6sxbxVBH.jpg",
         "conversations": conv(BUS_HUMAN, BUS_GPT)},
    ])
    write_lines(root / "sqa" / "direct.image.none.jsonl", [
        {"id": "sqa_6179", "image": "sqa/6179.png", "conversations": conv(LYNX_HUMAN, "B. Lynx pardinus")},
    ])
    write_lines(root / "sqa" / "cot.text.none.jsonl", [
        {"id": "sqa_10", "conversations": conv("Which is a mammal?\nA. frog\nB. dog\nGenerate a reason first "
                                               "and then output a letter answer.",
                                               "Dogs nurse their young.\n\n### Answer: B")},
    ])
    write_lines(root / "math" / "geo.mcq.direct.jsonl", [
        {"id": "geo_1", "image": "geoqa_plus/8.png", "conversations": conv("<image>\nFind x.\nA. 1\nB. 2", "B")},
    ])
    write_lines(root / "math" / "geoqa_plus.qa.jsonl", [
        {"id": "geo_2", "image": "geoqa_plus/9.png", "conversations": conv("Find y.", "Since ... Answer:A")},
        {"id": "geo_3", "image": "geoqa_plus/10.png",
         "conversations": conv("Find z.", "Angles sum to 180.\n\n### Answer: 40")},
    ])
    write_lines(root / "chartqa" / "cot.none.jsonl", [
        {"id": "chartqa_1", "image": "chartqa/1.png",
         "conversations": conv("What is the max?\nGenerate a reason first and then output a short answer.",
                               "The tallest bar is 12.\n\n### Answer: 12")},
        '{"id": "chartqa_2", "image": "chartqa/2.png", "conversations": [',  # cut line
        {"id": "chartqa_3", "image": "chartqa/3.png", "conversations": [{"from": "gpt", "value": "x"},
                                                                        {"from": "human", "value": "y"}]},
        {"id": "chartqa_4", "conversations": conv("<image>\nNo image field?", "x")},
        {"id": "chartqa_5", "image": "chartqa/5.png", "conversations": conv("<image>\n<image>\ntwo?", "x")},
    ])
    return root


def test_path_inference():
    assert infer_sft_source("sft/chartqa/cot.none.jsonl") == ("chartqa", "cot")
    assert infer_sft_source("sqa/direct.image.none.jsonl") == ("sqa", "direct")
    assert infer_sft_source("pt_data_mix_2k.jsonl") == ("general", "general")
    assert infer_sft_source("math/geo-qa.rationale.4k.jsonl") == ("gllava", "cot")
    assert infer_sft_source("math/gllava.align.jsonl") == ("gllava", None)
    assert infer_sft_source("docvqa/format.none.jsonl") == ("docvqa", "format")
    assert infer_pair_source("dpo_preview/math.pairwise.dev.jsonl") == ("gllava", "dev")
    assert infer_pair_source("data/validation-00000-of-00001.parquet") == (None, "validation")


def test_import_sft_infers_dataset_kind_and_normalises(sft_dir):
    report = LoadReport()
    recs = {r.id: r for r in import_sft(sft_dir, image_root="data/share4o/images", report=report)}
    bus = recs["aokvqa_22MexNkBPpdZGX6sxbxVBH"]
    assert (bus.dataset, bus.kind) == ("aokvqa", "cot")
    assert bus.conversations[0].value == "<image>\n" + BUS_HUMAN  # token prepended
    assert bus.conversations[1].value == BUS_GPT
    assert bus.image == "data/share4o/images/aokvqa/22MexNkBPpdZGX6sxbxVBH.jpg"
    lynx = recs["sqa_6179"]
    assert (lynx.dataset, lynx.kind, lynx.conversations[0].value) == ("sqa", "direct", LYNX_HUMAN)
    text_only = recs["sqa_10"]
    assert text_only.image is None and text_only.kind == "cot"
    assert "<image>" not in text_only.conversations[0].value
    assert (recs["general_1"].dataset, recs["general_1"].kind, recs["general_1"].image) == ("general", "general", None)
    assert (recs["geo_1"].dataset, recs["geo_1"].kind) == ("gllava", "direct")
    assert recs["geo_2"].kind == "general" and recs["geo_3"].kind == "cot"  # decided by content
    assert recs["chartqa_1"].kind == "cot"
    assert set(recs) == {"general_1", "general_2", "aokvqa_22MexNkBPpdZGX6sxbxVBH", "sqa_6179", "sqa_10",
                         "geo_1", "geo_2", "geo_3", "chartqa_1"}
    assert (report.rows, report.records, report.bad) == (13, 9, 4)
    assert report.reasons == {"bad_json": 1, "bad_conversations": 1, "bad_image": 2}
    chart = str(sft_dir / "chartqa" / "cot.none.jsonl")
    assert [m.split(": ", 1)[0] for m in report.messages] == [f"{chart}:{n}" for n in (2, 3, 4, 5)]


def test_import_single_file_and_check_images(sft_dir, tmp_path):
    imgs = tmp_path / "imgs"
    (imgs / "sqa").mkdir(parents=True)
    (imgs / "sqa" / "6179.png").write_bytes(b"x")
    report = LoadReport()
    recs = import_sft(sft_dir / "sqa" / "direct.image.none.jsonl", image_root=imgs, check_images=True,
                      report=report)
    assert [(r.id, r.dataset, r.kind) for r in recs] == [("sqa_6179", "sqa", "direct")]
    recs = import_sft(sft_dir / "aokvqa" / "cot.none.jsonl", image_root=imgs, check_images=True, report=report)
    assert recs == [] and report.reasons == {"missing_image": 1}


def test_sft_round_trip(sft_dir, tmp_path):
    root = "data/share4o/images"
    recs = import_sft(sft_dir, image_root=root)
    files = export_sft(recs, tmp_path / "out", image_root=root)
    assert files["math/direct.none.jsonl"] == 1
    assert files["aokvqa/cot.none.jsonl"] == 1 and files["general/general.none.jsonl"] == 2
    row = json.loads((tmp_path / "out" / "sqa" / "direct.none.jsonl").read_text())
    assert row == {"id": "sqa_6179", "image": "sqa/6179.png", "conversations": conv(LYNX_HUMAN, "B. Lynx pardinus")}
    again = import_sft(tmp_path / "out", image_root=root)
    key = lambda r: (r.dataset, r.kind, r.id)  # noqa: E731
    assert sorted(again, key=key) == sorted(recs, key=key)


def test_export_sft_needs_dataset_and_kind(tmp_path):
    rec = SFTRecord(id="x", conversations=[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                    dataset="chartqa", kind=None)
    with pytest.raises(ValueError, match="record x: kind"):
        export_sft([rec], tmp_path)
    with pytest.raises(ValueError, match="dataset"):
        export_sft([rec.model_copy(update={"kind": "cot", "dataset": "../evil"})], tmp_path)


CHOSEN = "The bar for 2019 reaches 12.\n\n### Answer: 12"
REJECTED = "The bar for 2018 reaches 14.\n\n### Answer: 14"


def test_import_pairs_and_round_trip(tmp_path):
    d = tmp_path / "dpo_preview"
    q = "<image>\nWhat is the value in 2019?\nGenerate a reason first and then output a short answer."
    write_lines(d / "chartqa.pairwise.train.jsonl", [
        {"id": "chartqa_7_0", "image": "chartqa/7.png", "question": q, "chosen": CHOSEN, "rejected": REJECTED,
         "answer": "12"},
        {"image": "chartqa/8.png", "question": "What now? <image>", "chosen": CHOSEN, "rejected": REJECTED},
        {"id": "chartqa_9_0", "image": "chartqa/9.png", "question": q, "chosen": CHOSEN, "rejected": CHOSEN},
        {"id": "chartqa_10_0", "image": "chartqa/10.png", "question": q, "chosen": "no marker", "rejected": "x"},
        {"id": "chartqa_11_0", "question": q, "chosen": CHOSEN, "rejected": REJECTED, "answer": "12"},
    ])
    write_lines(d / "math.pairwise.dev.jsonl", [
        {"id": "geo_1_0", "image": "geoqa_plus/1.png", "question": "Find x.\nA. 1\nB. 2", "chosen": "... ### Answer: B",
         "rejected": "... ### Answer: A", "answer": "B"},
    ])
    report = LoadReport()
    pairs = {p.id: p for p in import_pairs(d, image_root="data/dpo/images", report=report)}
    first = pairs["chartqa_7_0"]
    assert first.prompt == "What is the value in 2019?\nGenerate a reason first and then output a short answer."
    assert (first.dataset, first.answer, first.image, first.meta) == ("chartqa", "12", "data/dpo/images/chartqa/7.png",
                                                                       {"split": "train"})
    second = pairs["chartqa_train_2"]  # no id: named by file line; answer from the chosen marker
    assert second.prompt == "What now?" and second.answer == "12"
    assert pairs["geo_1_0"].dataset == "gllava" and pairs["geo_1_0"].meta == {"split": "dev"}
    assert report.reasons == {"identical_responses": 1, "missing_answer": 1, "missing_field": 1}
    assert all(m.split(": ", 1)[0].endswith(f"chartqa.pairwise.train.jsonl:{n}")
               for m, n in zip(report.messages, (3, 4, 5)))

    files = export_pairs(pairs.values(), tmp_path / "out", image_root="data/dpo/images")
    assert files == {"chartqa.pairwise.train.jsonl": 2, "math.pairwise.dev.jsonl": 1}
    row = json.loads((tmp_path / "out" / "chartqa.pairwise.train.jsonl").read_text().splitlines()[0])
    assert row == {"id": "chartqa_7_0", "image": "chartqa/7.png", "question": q, "chosen": CHOSEN,
                   "rejected": REJECTED, "answer": "12"}
    again = import_pairs(tmp_path / "out", image_root="data/dpo/images")
    assert sorted(again, key=lambda p: p.id) == sorted(pairs.values(), key=lambda p: p.id)


def test_pairs_from_hub_parquet_take_dataset_from_id(tmp_path):
    rows = [{"id": "aokvqa_q1_0", "image": "aokvqa/q1.jpg", "question": "<image>\nWhere?", "chosen": CHOSEN,
             "rejected": REJECTED, "answer": "12"},
            {"id": "zzz", "image": "x.jpg", "question": "<image>\nWhere?", "chosen": CHOSEN,
             "rejected": REJECTED, "answer": "12"}]
    path = tmp_path / "data" / "validation-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), path)
    report = LoadReport()
    pairs = import_pairs(tmp_path / "data", report=report)
    assert [(p.id, p.dataset, p.meta["split"]) for p in pairs] == [("aokvqa_q1_0", "aokvqa", "validation")]
    assert report.reasons == {"missing_dataset": 1}
    assert isinstance(pairs[0], PairRecord)
