"""Multiple-choice adapters: each source's own encoding of the correct option becomes a letter."""

from pathlib import Path

from datasets import Features, Image, Sequence, Value
from PIL import Image as PILImage

S = Value("string")

AOK_FEATS = Features({
    "image": Image(), "question_id": S, "question": S, "choices": Sequence(S),
    "correct_choice_idx": Value("int8"), "direct_answers": Sequence(S),
    "difficult_direct_answer": Value("bool"), "rationales": Sequence(S),
})


def _aok_repo(hub):
    row = {"image": hub.img(hub.jpeg()), "question_id": "22MexNkBPpdZGX6sxbxVBH",
           "question": "In which country is this bus located?", "choices": ["uk", "cuba", "usa", "mexico"],
           "correct_choice_idx": 0, "direct_answers": ["uk"] * 6 + ["england"] * 4,
           "difficult_direct_answer": False, "rationales": ["Red double deckers are British."]}
    hidden = {**row, "question_id": "t1", "correct_choice_idx": None, "direct_answers": []}
    return hub.repo("A-OKVQA", {"default": {"validation": [row], "test": [hidden]}}, AOK_FEATS)


def test_aokvqa_mc_and_direct_modes(hub):
    repo = _aok_repo(hub)
    (mc,), _ = hub.load(name="aokvqa", local_path=str(repo))
    assert mc.id == "aokvqa_validation_22MexNkBPpdZGX6sxbxVBH"
    assert (mc.answer, mc.choices, mc.qtype, mc.metric) == ("A", ["uk", "cuba", "usa", "mexico"],
                                                             "multiple_choice", "mc_accuracy")
    assert mc.meta["direct_answers"][:1] == ["uk"]
    (d,), _ = hub.load(name="aokvqa", local_path=str(repo), options={"mode": "direct"})
    assert (d.answer, d.metric, d.choices, len(d.answers)) == ("uk", "vqa_accuracy", None, 10)
    test, rep = hub.load(name="aokvqa", local_path=str(repo), split="test")
    assert test == [] and rep.reasons == {"missing_answer": 1}


def test_ai2d_answer_is_an_index_in_a_string(hub):
    feats = Features({"question": S, "options": Sequence(S), "answer": S, "image": Image()})
    rows = [{"question": "Which stage is the larva?", "options": ["A", "B", "C", "D"], "answer": "2",
             "image": hub.img(hub.png())},
            {"question": "Bad index", "options": ["x", "y"], "answer": "5", "image": hub.img(hub.png())}]
    repo = hub.repo("ai2d", {"default": {"test": rows}}, feats)
    recs, rep = hub.load(name="ai2d", local_path=str(repo))
    assert [(r.id, r.answer) for r in recs] == [("ai2d_test_0", "C")]
    assert rep.reasons == {"bad_answer": 1} and "row 1" in rep.messages[0]


def test_scienceqa_image_subset_and_hint_in_meta(hub):
    feats = Features({
        "image": Image(), "question": S, "choices": Sequence(S), "answer": Value("int8"), "hint": S,
        "task": S, "grade": S, "subject": S, "topic": S, "category": S, "skill": S, "lecture": S,
        "solution": S,
    })
    common = {"task": "closed choice", "grade": "grade2", "subject": "natural science", "topic": "biology",
              "category": "", "skill": "", "lecture": "", "solution": ""}
    rows = [{**common, "image": hub.img(hub.png()), "question": "Which animal's feet are adapted?",
             "choices": ["lynx", "dog"], "answer": 0, "hint": "Lynxes live in snowy places."},
            {**common, "image": None, "question": "Text only?", "choices": ["a", "b"], "answer": 1, "hint": ""}]
    repo = hub.repo("derek-thomas-ScienceQA", {"default": {"train": rows}}, feats)
    recs, rep = hub.load(name="scienceqa", local_path=str(repo), config="default", split="train")
    assert [r.id for r in recs] == ["sqa_train_0"] and recs[0].dataset == "sqa"
    assert recs[0].answer == "A" and recs[0].meta["hint"] == "Lynxes live in snowy places."
    assert recs[0].meta["subject"] == "natural science"
    assert (rep.filtered, rep.bad) == (1, 0)
    _, rep = hub.load(name="scienceqa", local_path=str(repo), config="default", split="train",
                      options={"image_only": False})
    assert rep.reasons == {"missing_image": 1}


def test_mmstar_options_parsed_out_of_the_question(hub):
    feats = Features({"index": Value("int64"), "question": S, "image": Image(), "answer": S, "category": S,
                      "l2_category": S,
                      "meta_info": {"source": S, "split": S, "image_path": S}})
    q = ("Which option describe the object relationship in the image correctly?\nOptions: "
         "A: The suitcase is on the book., B: The suitcase is beneath the cat., "
         "C: The suitcase is beneath the bed., D: The suitcase is beneath the book.")
    meta = {"source": "MMBench", "split": "val", "image_path": "images/0.jpg"}
    rows = [{"index": 0, "question": q, "image": hub.img(hub.jpeg()), "answer": "A",
             "category": "coarse perception", "l2_category": "image scene and topic", "meta_info": meta},
            {"index": 1, "question": "No options here", "image": hub.img(hub.jpeg()), "answer": "B",
             "category": "x", "l2_category": "y", "meta_info": meta}]
    repo = hub.repo("MMStar", {"val": {"val": rows}}, feats)
    recs, rep = hub.load(name="mmstar", local_path=str(repo))  # its only config is "val"
    assert len(recs) == 1 and recs[0].id == "mmstar_val_0"
    assert recs[0].question == "Which option describe the object relationship in the image correctly?"
    assert recs[0].choices == ["The suitcase is on the book.", "The suitcase is beneath the cat.",
                               "The suitcase is beneath the bed.", "The suitcase is beneath the book."]
    assert recs[0].answer == "A" and recs[0].meta["category"] == "coarse perception"
    assert rep.reasons == {"parse_error": 1}


MMMU_FEATS = Features({
    "id": S, "question": S, "options": S, "explanation": S,
    **{f"image_{k}": Image() for k in range(1, 8)},
    "img_type": S, "answer": S, "topic_difficulty": S, "question_type": S, "subfield": S,
})


def _mmmu_row(hub, **kw):
    row = {"explanation": "", "img_type": "['Diagrams']", "topic_difficulty": "Easy", "subfield": "Optics",
           **{f"image_{k}": None for k in range(1, 8)}}
    row.update(kw)
    return row


def test_mmmu_literal_options_multi_image_concat_and_open_questions(hub):
    rows = [
        _mmmu_row(hub, id="validation_Physics_1", question="Compare <image 1> and <image 2>.",
                  options="['first', 'second', 'same']", answer="B", question_type="multiple-choice",
                  image_1=hub.img(hub.png(size=(10, 6))), image_2=hub.img(hub.png((0, 200, 0), size=(7, 9)))),
        _mmmu_row(hub, id="validation_Physics_2", question="Value of x in <image 1>?", options="[]",
                  answer="['3.5', '7/2']", question_type="open", image_1=hub.img(hub.png())),
        _mmmu_row(hub, id="validation_Physics_3", question="No image?", options="['a', 'b']", answer="A",
                  question_type="multiple-choice"),
    ]
    repo = hub.repo("MMMU", {"default": {"validation": rows}}, MMMU_FEATS)
    recs, rep = hub.load(name="mmmu", local_path=str(repo))
    mc, open_ = recs
    assert mc.id == "mmmu_validation_validation_Physics_1"
    assert mc.question == "Compare [image 1] and [image 2]."  # no '<image ...>' tags reach prompts
    assert (mc.choices, mc.answer, mc.metric) == (["first", "second", "same"], "B", "mc_accuracy")
    assert mc.meta["n_images"] == 2
    with PILImage.open(mc.image) as im:  # side by side with an 8 px gap, tops aligned
        assert im.size == (10 + 8 + 7, 9)
    assert (open_.qtype, open_.answers, open_.metric) == ("numeric", ["3.5", "7/2"], "exact_match")
    assert rep.reasons == {"missing_image": 1}
    recs, rep = hub.load(name="mmmu", local_path=str(repo), options={"multi_image": "skip", "keep_open": False})
    assert recs == [] and rep.filtered == 2
    (first, _), _ = hub.load(name="mmmu", local_path=str(repo), options={"multi_image": "first"})
    assert Path(first.image).read_bytes() == hub.png(size=(10, 6))
