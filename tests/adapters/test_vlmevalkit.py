"""VLMEvalKit TSVs: base64 images, index reuse, option columns, stringified answer lists."""

import base64
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image as PILImage

from vlmcot.adapters import SourceConfig
from vlmcot.adapters.vlmevalkit import infer_label


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tsv(path: Path, rows: list[dict]) -> str:
    # As VLMEvalKit writes them: tab-separated, empty cells for unused options.
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return str(path)


def test_mcq_tsv_reuse_gaps_and_no_image(hub):
    img = b64(hub.png())
    rows = [
        {"index": 0, "image": img, "question": "Which animal?", "hint": "A zoo photo.", "A": "cat",
         "B": "dog", "C": None, "D": None, "answer": "B", "category": "coarse", "l2-category": "animals",
         "split": "dev"},
        {"index": 1, "image": "0", "question": "Which color?", "hint": None, "A": "red", "B": "blue",
         "C": "green", "D": None, "answer": "C", "category": "fine", "l2-category": "color", "split": "dev"},
        {"index": 2, "image": None, "question": "No image", "hint": None, "A": "x", "B": "y", "C": None,
         "D": None, "answer": "A", "category": "", "l2-category": "", "split": "dev"},
        {"index": 3, "image": "99", "question": "Dangling reference", "hint": None, "A": "x", "B": "y",
         "C": None, "D": None, "answer": "A", "category": "", "l2-category": "", "split": "dev"},
        {"index": 4, "image": img, "question": "Gap in options", "hint": None, "A": "x", "B": None,
         "C": "z", "D": None, "answer": "A", "category": "", "l2-category": "", "split": "dev"},
    ]
    path = _tsv(hub.root / "AI2D_TEST.tsv", rows)
    recs, rep = hub.load(name="vlmevalkit_tsv", local_path=path)
    a, b = recs
    assert (a.id, a.dataset, a.choices, a.answer, a.metric) == ("ai2d_0", "ai2d", ["cat", "dog"], "B", "mc_accuracy")
    assert a.meta == {"category": "coarse", "l2_category": "animals", "hint": "A zoo photo.", "index": "0"}
    assert b.image == a.image and b.choices == ["red", "blue", "green"] and b.answer == "C"
    assert b.split == "dev"
    assert rep.filtered == 1 and rep.reasons == {"bad_image": 1, "bad_choices": 1}


def test_vqa_tsv_answer_lists_literal_eval_only(hub, tmp_path):
    marker = tmp_path / "pwned"
    rows = [
        {"index": 10, "image": b64(hub.jpeg()), "question": "What is the date?", "answer": "['1/8/93', '01/08/93']"},
        {"index": 11, "image": b64(hub.jpeg()), "question": "Total?", "answer": "42"},
        # VLMEvalKit eval()s this column; we must never execute it.
        {"index": 12, "image": b64(hub.jpeg()), "question": "x",
         "answer": f"[__import__('pathlib').Path('{marker}').touch()]"},
    ]
    recs, rep = hub.load(name="vlmevalkit_tsv", local_path=_tsv(hub.root / "DocVQA_VAL.tsv", rows))
    assert [(r.id, r.answers, r.metric) for r in recs] == [
        ("docvqa_10", ["1/8/93", "01/08/93"], "anls"), ("docvqa_11", ["42"], "anls")]
    assert recs[0].answer == "1/8/93" and recs[1].qtype == "numeric"
    assert rep.reasons == {"parse_error": 1} and not marker.exists()


def test_ocrbench_hmer_and_split_filter_and_multi_image(hub):
    rows = [
        {"index": 0, "image": b64(hub.png()), "question": "Write the expression", "answer": "['x^2']",
         "category": "Handwritten Mathematical Expression Recognition"},
        {"index": 1, "image": b64(hub.png()), "question": "Read it", "answer": "['STOP']",
         "category": "Regular Text Recognition"},
    ]
    recs, _ = hub.load(name="vlmevalkit_tsv", local_path=_tsv(hub.root / "OCRBench.tsv", rows))
    assert [r.metric for r in recs] == ["ocrbench_hmer", "ocrbench"]

    two = str([b64(hub.png(size=(4, 4))), b64(hub.png(size=(5, 6)))])
    mmmu = [
        {"index": 0, "image": two, "question": "Q1", "A": "a", "B": "b", "answer": "A", "split": "dev"},
        {"index": 1, "image": b64(hub.png()), "question": "Q2", "A": "a", "B": "b", "answer": "B",
         "split": "validation"},
    ]
    path = _tsv(hub.root / "MMMU_DEV_VAL.tsv", mmmu)
    recs, rep = hub.load(name="vlmevalkit_tsv", local_path=path)
    assert [r.split for r in recs] == ["dev", "validation"]
    with PILImage.open(recs[0].image) as im:
        assert im.size == (4 + 8 + 5, 6)
    val, rep = hub.load(name="vlmevalkit_tsv", local_path=path, split="validation", dataset="mmmu_val")
    assert [r.id for r in val] == ["mmmu_val_1"] and rep.filtered == 1


def test_tsv_needs_local_path_and_labels_from_file_name():
    assert infer_label("x/ChartQA_TEST.tsv") == ("chartqa", "relaxed_accuracy")
    assert infer_label("MyBench.tsv") == ("mybench", "exact_match")
    from vlmcot.adapters import SourceError, load

    with pytest.raises(SourceError, match="local_path"):
        list(load(SourceConfig(name="vlmevalkit_tsv"), "img"))
