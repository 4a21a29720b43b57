"""The paper profile's two training sources with no loadable hub split as shipped:

- InfoVQA train: lmms-lab/DocVQA keeps InfographicVQA/train-*.parquet but its README's `configs:`
  no longer lists the split; SourceConfig.data_files reads the files anyway (fixture: a repo whose
  README omits train, with the train parquet present, in lmms-lab's InfoVQA schema).
- AI2D train: AllenAI's release read from a local folder (ai2d_official; fixture: its questions/*.json
  + images/ + ai2d_test_ids.csv layout).
"""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, Features, Image, Sequence, Value

from vlmcot.adapters import SourceError

S = Value("string")
INFO = Features({"questionId": S, "question": S, "answers": Sequence(S), "answer_type": Sequence(S),
                 "image": Image(), "image_url": S, "operation/reasoning": Sequence(S), "ocr": S, "data_split": S})


def _info_rows(hub, split, n):
    return [{"questionId": f"{split}{i}", "question": f"What is the total {i}?", "answers": [str(10 + i), f"{10 + i}.0"],
             "answer_type": ["single span"], "image": hub.img(hub.png(color=(i * 20, 10, 10))), "image_url": "u",
             "operation/reasoning": [], "ocr": "", "data_split": split} for i in range(n)]


def test_infovqa_train_via_data_files_when_readme_omits_it(hub):
    repo = hub.repo("DocVQA", {"InfographicVQA": {"validation": _info_rows(hub, "val", 2)}}, INFO)
    train = repo / "InfographicVQA" / "train-00000-of-00001.parquet"
    cols = {k: [r[k] for r in _info_rows(hub, "train", 3)] for k in INFO}
    Dataset.from_dict(cols, features=INFO).to_parquet(str(train))
    assert "train" not in (repo / "README.md").read_text()
    # as shipped: the split is not in the README, so it cannot load
    with pytest.raises(SourceError, match="infovqa"):
        hub.load(name="infovqa", local_path=str(repo), split="train")
    recs, rep = hub.load(name="infovqa", local_path=str(repo), split="train",
                         data_files={"train": "InfographicVQA/train-*.parquet"})
    assert [r.id for r in recs] == ["infovqa_train_train0", "infovqa_train_train1", "infovqa_train_train2"]
    assert recs[0].answers == ["10", "10.0"] and recs[0].metric == "anls" and rep.bad == 0
    with pytest.raises(SourceError, match="no entry for split 'train'"):
        hub.load(name="infovqa", local_path=str(repo), split="train", data_files={"validation": "x"})


def _ai2d(root, hub, with_level=True):
    base = root / "ai2d" if with_level else root
    (base / "images").mkdir(parents=True)
    (base / "questions").mkdir()
    qs = {
        0: {"What eats grass?": {"abcLabel": False, "answerTexts": ["lion", "cow", "{}", "hawk"], "correctAnswer": 1,
                                 "questionId": "0.png-0"},
            "What is A in the diagram?": {"abcLabel": True, "answerTexts": ["sun", "moon"], "correctAnswer": 0,
                                          "questionId": "0.png-1"}},
        1: {"Which stage comes first?": {"abcLabel": False, "answerTexts": ["egg", "larva", "egg", "adult"],
                                         "correctAnswer": 2, "questionId": "1.png-0"}},
        2: {"Broken one?": {"abcLabel": False, "answerTexts": ["a", "b"], "correctAnswer": 7, "questionId": "2.png-0"}},
        10: {"Test question?": {"abcLabel": False, "answerTexts": ["x", "y"], "correctAnswer": 0,
                                "questionId": "10.png-0"}},
    }
    for n, q in qs.items():
        (base / "images" / f"{n}.png").write_bytes(hub.png(color=(n * 20, 50, 50)))
        (base / "questions" / f"{n}.png.json").write_text(json.dumps({"imageName": f"{n}.png", "questions": q}))
    (root / "ai2d_test_ids.csv").write_text("10\n")
    return root


def test_ai2d_official_train_and_test_splits(hub, tmp_path):
    root = _ai2d(tmp_path / "raw", hub)
    recs, rep = hub.load(name="ai2d_official", local_path=str(root))
    by = {r.id: r for r in recs}
    assert sorted(by) == ["ai2d_train_0.png-0", "ai2d_train_1.png-0"]
    cow = by["ai2d_train_0.png-0"]
    assert cow.choices == ["lion", "cow", "hawk"] and cow.answer == "B" and cow.dataset == "ai2d"
    assert cow.metric == "mc_accuracy" and cow.qtype == "multiple_choice"
    egg = by["ai2d_train_1.png-0"]
    assert egg.choices == ["egg", "larva", "adult"] and egg.answer == "A"  # the repeated "egg" is dropped
    assert (rep.filtered, rep.bad) == (1, 1)  # the abcLabel question; the out-of-range answer
    test, _ = hub.load(name="ai2d_official", local_path=str(root), split="test")
    assert [r.id for r in test] == ["ai2d_test_10.png-0"]
    keep, _ = hub.load(name="ai2d_official", local_path=str(root), options={"abc_label": "keep"})
    assert "ai2d_train_0.png-1" in {r.id for r in keep}


def test_ai2d_official_without_the_release_says_what_to_download(hub, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="ai2d-all.zip"):
        hub.load(name="ai2d_official", local_path=str(tmp_path / "empty"))
    root = _ai2d(tmp_path / "flat", hub, with_level=False)
    (root / "ai2d_test_ids.csv").unlink()
    with pytest.raises(SourceError, match="ai2d_test_ids.csv not found"):
        hub.load(name="ai2d_official", local_path=str(root))
