"""MathVision and MathVista: decoded_image columns, per-row MC / free-form, MathVista's text answers."""

from datasets import Features, Image, Sequence, Value

S = Value("string")
# MathVista's hub schema (AI4Math/MathVista); the paper-profile e2e test builds its copy with it too
VISTA_FEATS = Features({
    "pid": S, "question": S, "image": S, "decoded_image": Image(), "choices": Sequence(S), "unit": S,
    "precision": Value("float64"), "answer": S, "question_type": S, "answer_type": S,
    "metadata": {"category": S, "context": S, "grade": S, "img_height": Value("int64"), "img_width": Value("int64"),
                 "language": S, "skills": Sequence(S), "source": S, "split": S, "task": S},
    "query": S,
})


def test_mathvision_mc_letters_and_free_form(hub):
    feats = Features({"id": S, "question": S, "options": Sequence(S), "image": S, "decoded_image": Image(),
                      "answer": S, "solution": S, "level": Value("int64"), "subject": S})
    rows = [
        {"id": "1", "question": "Which figure is shaded?\n<image1>", "options": ["A", "B", "C", "D", "E"],
         "image": "images/1.jpg", "decoded_image": hub.img(hub.jpeg()), "answer": "C", "solution": None,
         "level": 3, "subject": "metric geometry - area"},
        {"id": "2", "question": "How many cubes?<image1>", "options": [], "image": "images/2.jpg",
         "decoded_image": hub.img(hub.png()), "answer": "14", "solution": "Count them.", "level": 1,
         "subject": "counting"},
        {"id": "3", "question": "Broken", "options": ["A", "B"], "image": "images/3.jpg",
         "decoded_image": hub.img(hub.png()), "answer": "E", "solution": None, "level": 1, "subject": "x"},
    ]
    repo = hub.repo("MathVision", {"default": {"test": rows, "testmini": rows[:1]}}, feats)
    recs, rep = hub.load(name="mathvision", local_path=str(repo))
    mc, free = recs
    assert mc.question == "Which figure is shaded?\n[image 1]"
    assert (mc.answer, mc.qtype, mc.metric, len(mc.choices)) == ("C", "multiple_choice", "mc_accuracy", 5)
    assert (free.answer, free.qtype, free.metric) == ("14", "numeric", "exact_match")
    assert free.meta == {"level": 1, "subject": "counting", "solution": "Count them."}
    assert rep.reasons == {"bad_answer": 1}
    mini, _ = hub.load(name="mathvision", local_path=str(repo), split="testmini")
    assert [r.id for r in mini] == ["mathvision_testmini_1"]


def test_mathvista_choice_text_becomes_letter_and_scoring_meta_kept(hub):
    feats = VISTA_FEATS
    md = {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school",
          "img_height": 8, "img_width": 12, "language": "english", "skills": ["geometry reasoning"],
          "source": "Geometry3K", "split": "testmini", "task": "geometry problem solving"}
    rows = [
        {"pid": "1", "question": "Find x.", "image": "images/1.jpg", "decoded_image": hub.img(hub.png()),
         "choices": ["3", "4", "5", "6"], "unit": None, "precision": None, "answer": "5",
         "question_type": "multi_choice", "answer_type": "text", "metadata": md,
         "query": "Hint: Please answer the question and provide the correct option letter..."},
        {"pid": "2", "question": "What is the slope?", "image": "images/2.jpg",
         "decoded_image": hub.img(hub.png()), "choices": None, "unit": None, "precision": 1.0,
         "answer": "0.5", "question_type": "free_form", "answer_type": "float", "metadata": md,
         "query": "Hint: ... a floating-point number with one decimal place"},
        {"pid": "3", "question": "Pick", "image": "images/3.jpg", "decoded_image": hub.img(hub.png()),
         "choices": ["a", "b"], "unit": None, "precision": None, "answer": "c",
         "question_type": "multi_choice", "answer_type": "text", "metadata": md, "query": "q"},
    ]
    repo = hub.repo("MathVista", {"default": {"testmini": rows}}, feats)
    recs, rep = hub.load(name="mathvista", local_path=str(repo))
    mc, free = recs
    assert (mc.id, mc.answer, mc.qtype, mc.metric) == ("mathvista_testmini_1", "C", "multiple_choice", "mathvista")
    assert mc.meta["answer_text"] == "5" and mc.meta["task"] == "geometry problem solving"
    assert (free.answer, free.qtype, free.meta["precision"], free.meta["answer_type"]) == ("0.5", "numeric", 1.0, "float")
    assert free.meta["query"].startswith("Hint:")
    assert rep.reasons == {"bad_answer": 1}
