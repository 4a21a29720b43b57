"""Open-ended VQA adapters on local copies written in each hub repo's schema."""

from pathlib import Path

import pytest
from datasets import ClassLabel, Features, Image, Sequence, Value

S = Value("string")


def test_chartqa_eval_lmms_lab_schema(hub):
    feats = Features({"type": S, "question": S, "answer": S, "image": Image()})
    chart = hub.img(hub.png())
    rows = [
        {"type": "human_test", "question": "What is the peak value?", "answer": "42.5", "image": chart},
        {"type": "augmented_test", "question": "Which year is highest?", "answer": "2019", "image": chart},
        {"type": "human_test", "question": "Which color is Asia?", "answer": "Red", "image": hub.img(hub.jpeg())},
    ]
    repo = hub.repo("ChartQA", {"default": {"test": rows}}, feats)
    recs, rep = hub.load(name="chartqa", local_path=str(repo))
    assert [r.id for r in recs] == ["chartqa_test_0", "chartqa_test_1", "chartqa_test_2"]
    assert [r.answer for r in recs] == ["42.5", "2019", "Red"]
    assert [r.qtype for r in recs] == ["numeric", "numeric", "short"]
    assert {r.metric for r in recs} == {"relaxed_accuracy"}
    assert recs[0].meta == {"type": "human_test"} and recs[0].split == "test"
    # one chart shared by two questions is written once, under images/chartqa/, named by content
    assert recs[0].image == recs[1].image != recs[2].image
    assert Path(recs[0].image).parent == hub.image_dir / "chartqa"
    assert recs[0].image.endswith(".png") and recs[2].image.endswith(".jpg")
    assert Path(recs[0].image).read_bytes() == hub.png()  # bytes kept, not re-encoded
    assert (rep.rows, rep.records, rep.bad) == (3, 3, 0)


def test_chartqa_train_m4_schema_label_list_and_classlabel(hub):
    feats = Features({"image": Image(), "query": S, "label": Sequence(S),
                      "human_or_machine": ClassLabel(names=["human", "machine"])})
    rows = [{"image": hub.img(hub.png()), "query": "How many bars?", "label": ["5"], "human_or_machine": 1},
            {"image": hub.img(hub.png()), "query": "Name the top one", "label": [], "human_or_machine": 0}]
    repo = hub.repo("HFM4ChartQA", {"default": {"train": rows, "val": rows[:1]}}, feats)
    recs, rep = hub.load(name="chartqa_train", local_path=str(repo))
    assert len(recs) == 1 and recs[0].question == "How many bars?"
    assert recs[0].answer == "5" and recs[0].answers == ["5"] and recs[0].dataset == "chartqa"
    assert recs[0].meta == {"source": "machine"}
    assert rep.bad == 1 and rep.reasons["missing_answer"] == 1
    assert "HFM4ChartQA" in rep.messages[0] and "row 1" in rep.messages[0]
    val, _ = hub.load(name="chartqa_train", local_path=str(repo), split="val")
    assert [r.id for r in val] == ["chartqa_val_0"]


DOC_FEATS = Features({
    "questionId": S, "question": S, "question_types": Sequence(S), "image": Image(),
    "docId": Value("int64"), "ucsf_document_id": S, "ucsf_document_page_no": S,
    "answers": Sequence(S), "data_split": S,
})
INFO_FEATS = Features({
    "questionId": S, "question": S, "answers": Sequence(S), "answer_type": Sequence(S),
    "image": Image(), "image_url": S, "operation/reasoning": Sequence(S), "ocr": S, "data_split": S,
})


def _docvqa_repo(hub):
    from datasets import Dataset

    doc = [{"questionId": "49153", "question": "What is the date?", "question_types": ["others"],
            "image": hub.img(hub.png()), "docId": 14465, "ucsf_document_id": "txpp0227",
            "ucsf_document_page_no": "10", "answers": ["1/8/93", "01/08/93"], "data_split": "val"}]
    info = [{"questionId": "98313", "question": "How many hours?", "answers": ["8", "eight"],
             "answer_type": ["single span"], "image": hub.img(hub.jpeg()), "image_url": "x",
             "operation/reasoning": ["counting"], "ocr": "", "data_split": "val"}]
    repo = hub.repo("DocVQA", {"DocVQA": {"validation": doc}}, DOC_FEATS)
    # Second config of the same repo, with its own columns (as lmms-lab/DocVQA).
    path = repo / "InfographicVQA" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    Dataset.from_dict({k: [r[k] for r in info] for k in INFO_FEATS}, features=INFO_FEATS).to_parquet(str(path))
    readme = (repo / "README.md").read_text().replace(
        "---\n# DocVQA",
        "- config_name: InfographicVQA\n  data_files:\n  - split: validation\n"
        "    path: InfographicVQA/validation-*\n---\n# DocVQA")
    (repo / "README.md").write_text(readme)
    return repo


def test_docvqa_and_infovqa_configs_of_one_repo(hub):
    repo = _docvqa_repo(hub)
    doc, _ = hub.load(name="docvqa", local_path=str(repo))
    assert doc[0].id == "docvqa_validation_49153"
    assert doc[0].answer == "1/8/93" and doc[0].answers == ["1/8/93", "01/08/93"]
    assert doc[0].metric == "anls" and doc[0].qtype == "short"
    assert doc[0].meta == {"question_types": ["others"], "doc_id": 14465}
    info, _ = hub.load(name="infovqa", local_path=str(repo))
    assert info[0].id == "infovqa_validation_98313" and info[0].dataset == "infovqa"
    assert info[0].answers == ["8", "eight"] and info[0].metric == "anls"
    assert info[0].meta == {"answer_type": ["single span"], "operation": ["counting"]}


def test_unknown_split_or_missing_column_fails_the_source_naming_it(hub):
    from vlmcot.adapters import SourceError

    repo = _docvqa_repo(hub)
    with pytest.raises(SourceError, match="docvqa.*test"):
        hub.load(name="docvqa", local_path=str(repo), split="test")
    with pytest.raises(SourceError, match="fields.question"):
        hub.load(name="docvqa", local_path=str(repo), fields={"question": "query"})
    with pytest.raises(SourceError, match="does not exist"):
        hub.load(name="docvqa", local_path=str(repo / "nope"))


def test_textvqa_majority_answer_and_hidden_test_labels(hub):
    feats = Features({
        "image_id": S, "question_id": Value("int32"), "question": S, "question_tokens": Sequence(S),
        "image": Image(), "image_width": Value("int32"), "image_height": Value("int32"),
        "flickr_original_url": S, "flickr_300k_url": S, "answers": Sequence(S),
        "image_classes": Sequence(S), "set_name": S, "ocr_tokens": Sequence(S),
    })
    base = {"image_id": "abc", "question_tokens": [], "image": hub.img(hub.png()), "image_width": 12,
            "image_height": 8, "flickr_original_url": "", "flickr_300k_url": "", "image_classes": [],
            "set_name": "val", "ocr_tokens": ["nokia"]}
    ten = ["nokia"] * 4 + ["toshiba"] * 4 + ["nokia phone"] * 2  # tie 4/4: first seen wins
    rows = [{**base, "question_id": 34602, "question": "what brand?", "answers": ten},
            {**base, "question_id": 34603, "question": "what model?", "answers": [""] * 10}]
    repo = hub.repo("textvqa", {"default": {"validation": rows}}, feats)
    recs, rep = hub.load(name="textvqa", local_path=str(repo))
    assert len(recs) == 1 and recs[0].id == "textvqa_validation_34602"
    assert recs[0].answer == "nokia" and recs[0].answers == ten and recs[0].metric == "vqa_accuracy"
    assert rep.reasons == {"missing_answer": 1} and "34603" in rep.messages[0]


def test_ocrbench_metric_per_category(hub):
    feats = Features({"dataset": S, "question": S, "question_type": S, "answer": Sequence(S), "image": Image()})
    rows = [{"dataset": "IIIT5K", "question": "what is written?", "question_type": "Regular Text Recognition",
             "answer": ["Coca", "coca"], "image": hub.img(hub.png())},
            {"dataset": "HME100k", "question": "Please write out the expression.",
             "question_type": "Handwritten Mathematical Expression Recognition",
             "answer": ["x ^ { 2 }"], "image": hub.img(hub.png((1, 2, 3)))}]
    repo = hub.repo("OCRBench", {"default": {"test": rows}}, feats)
    recs, _ = hub.load(name="ocrbench", local_path=str(repo))
    assert [r.metric for r in recs] == ["ocrbench", "ocrbench_hmer"]
    assert recs[0].answers == ["Coca", "coca"]
    assert recs[1].meta == {"question_type": "Handwritten Mathematical Expression Recognition", "source": "HME100k"}


@pytest.mark.slow  # datasets' streaming set-up alone takes seconds
def test_streaming_reads_the_same_records(hub):
    repo = _docvqa_repo(hub)
    eager, _ = hub.load(name="docvqa", local_path=str(repo))
    streamed, _ = hub.load(name="docvqa", local_path=str(repo), streaming=True)
    assert streamed == eager
