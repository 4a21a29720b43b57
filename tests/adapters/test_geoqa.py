"""G-LLaVA Geo170K: conversations parsed into question/choices/letter, images found in images.zip."""

import json
import zipfile

import pytest
from datasets import Features, Value

from vlmcot.adapters.geoqa import parse_answer, parse_question

S = Value("string")
HUMAN = ("<image>\nFirst perform reasoning, then finally select the question from the choices in the "
         "following format: Answer: xxx.\nQuestion:As shown in the figure, in triangle ABC, it is known "
         "that angle A = 80.0, angle B = 60.0, DE parallel  BC, then the size of angle CED is ()\n"
         "Choices:\nA:40°\nB:60°\nC:120°\nD:140°")
GPT = ("Since angle A = 80° and angle B = 60°, angle C = 40°. Since DE is parallel to BC, angle CED = "
       "180° - 40° = 140°. Hence, the answer is option D.\nAnswer:D")


def test_parse_question_and_answer():
    q, choices = parse_question(HUMAN)
    assert q.startswith("As shown in the figure") and q.endswith("angle CED is ()")
    assert choices == ["40°", "60°", "120°", "140°"]
    assert parse_answer(GPT, 4) == "D"
    assert parse_answer("so the answer is option B.", 4) == "B"
    assert parse_answer("The length is 5.\nAnswer: 5", 0) == "5"
    with pytest.raises(ValueError):
        parse_answer("no marker", 4)


def _conv(human, gpt):
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


def _zip(hub, path, names):
    with zipfile.ZipFile(path, "w") as z:
        for i, name in enumerate(names):
            z.writestr(name, hub.png((i * 40, 10, 10)))


def test_geo170k_hub_layout_with_images_zip(hub):
    feats = Features({"image": S, "conversations": [{"from": S, "value": S}]})
    rows = [{"image": "geoqa_plus/8.png", "conversations": _conv(HUMAN, GPT)},
            {"image": "geoqa_plus/missing.png", "conversations": _conv(HUMAN, GPT)},
            {"image": "geo3k/2.png", "conversations": _conv("<image>\nDescribe the figure.", "A triangle.")}]
    repo = hub.repo("Geo170K", {"default": {"qa_tuning": rows}}, feats)
    _zip(hub, repo / "images.zip", ["images/geoqa_plus/8.png", "images/geo3k/2.png"])  # packed under images/
    recs, rep = hub.load(name="gllava", local_path=str(repo))
    assert len(recs) == 1
    r = recs[0]
    assert (r.id, r.dataset, r.answer, r.qtype, r.metric) == ("gllava_qa_tuning_0", "gllava", "D",
                                                              "multiple_choice", "mc_accuracy")
    assert r.choices == ["40°", "60°", "120°", "140°"] and r.meta["solution"] == GPT
    assert r.meta["source_image"] == "geoqa_plus/8.png"
    assert rep.reasons == {"bad_image": 1, "missing_answer": 1}
    assert any("missing.png" in m for m in rep.messages)


def test_gllava_playground_json_with_images_folder(hub):
    data = hub.root / "playground" / "data"
    (data / "images" / "geoqa_plus").mkdir(parents=True)
    (data / "images" / "geoqa_plus" / "8.png").write_bytes(hub.png())
    (data / "qa_tuning.json").write_text(json.dumps([{"image": "geoqa_plus/8.png", "conversations": _conv(HUMAN, GPT)}]))
    recs, rep = hub.load(name="gllava", local_path=str(data / "qa_tuning.json"))
    assert [r.answer for r in recs] == ["D"] and rep.bad == 0
