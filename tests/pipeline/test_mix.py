import collections
from pathlib import Path

import pytest
from PIL import Image

from vlmcot.io import read_json, read_jsonl, write_jsonl
from vlmcot.pipeline import mix


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # the stage runs in the repo root and decodes every image its rows name (relative paths)
    monkeypatch.chdir(tmp_path)


def _png(path, shade=0):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade % 256, 0, 0)).save(path)
    return str(path)


def _cot(i, ds, mc=False):
    r = dict(id=f"{ds}-{i:03d}", image=_png(f"img/{ds}/{i}.png", i), question=f"Question {i}?",
             answer="B" if mc else str(i), dataset=ds, qtype="multiple_choice" if mc else "numeric",
             split="train", metric="mc_accuracy" if mc else "relaxed_accuracy",
             cot=f"Reasoning {i}.\n\n### Answer: {'B' if mc else i}", teacher_answer="B" if mc else str(i),
             meta={"description": f"A picture number {i}."})
    if mc:
        r["choices"] = ["red", "blue", "green", "gold"]
    return r


def _setup(tmp_path, **kw):
    rows = [_cot(i, "chart") for i in range(30)] + [_cot(i, "sci", mc=True) for i in range(20)]
    write_jsonl(tmp_path / "cot.jsonl", rows)
    write_jsonl(tmp_path / "train.jsonl", [{k: v for k, v in r.items() if k not in ("cot", "teacher_answer")}
                                           for r in rows])
    return mix.Config(cot=str(tmp_path / "cot.jsonl"), records=str(tmp_path / "train.jsonl"),
                      out_dir=str(tmp_path / "mix"), metrics=str(tmp_path / "mix.json"), **kw)


def test_four_mixes_have_the_papers_composition(tmp_path, tracker):
    cfg = _setup(tmp_path, format_per_dataset=4, format_cot_fraction=0.5, general_size=5)
    mix.run(cfg, tracker)
    sets = {n: read_jsonl(tmp_path / "mix" / f"{n}.jsonl") for n in ["format", "direct", "cot", "both", "general"]}
    kinds = {n: collections.Counter(r["kind"] for r in rows) for n, rows in sets.items()}
    assert kinds["format"] == {"cot": 4, "direct": 4, "general": 5}   # 2 datasets x 4, half CoT
    assert kinds["direct"] == {"direct": 4 + 42, "cot": 4, "general": 5}
    assert kinds["cot"] == {"cot": 4 + 42, "direct": 4, "general": 5}
    assert kinds["both"] == {"direct": 46, "cot": 46, "general": 5}
    ids = [r["id"] for r in sets["both"]]
    assert len(ids) == len(set(ids))
    m = read_json(cfg.metrics)
    assert m["both.rows"] == 97


def test_conversation_format_is_llava(tmp_path, tracker):
    cfg = _setup(tmp_path, format_per_dataset=0, include_general=False)
    mix.run(cfg, tracker)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "mix" / "both.jsonl")}
    cot = rows["sci-003-cot"]
    human, gpt = cot["conversations"]
    assert human["from"] == "human" and human["value"].startswith("<image>\n")
    assert "A. red" in human["value"] and "Generate a reason first and then output a letter answer" in human["value"]
    assert gpt == {"from": "gpt", "value": "Reasoning 3.\n\n### Answer: B"}
    direct = rows["chart-007-direct"]
    assert direct["conversations"][1]["value"] == "7"
    assert "Answer the question with a short answer" in direct["conversations"][0]["value"]
    assert set(cot) == {"id", "image", "conversations", "dataset", "kind"}


def test_seeded_and_deterministic(tmp_path, tracker):
    cfg = _setup(tmp_path, format_per_dataset=3, general_size=4)
    mix.run(cfg, tracker)
    a = (tmp_path / "mix" / "both.jsonl").read_bytes()
    mix.run(cfg, tracker)
    assert (tmp_path / "mix" / "both.jsonl").read_bytes() == a
    cfg2 = _setup(tmp_path, format_per_dataset=3, general_size=4, seed=1)
    mix.run(cfg2, tracker)
    assert (tmp_path / "mix" / "both.jsonl").read_bytes() != a


def test_mix_from_released_sharegpt_files(tmp_path, tracker):
    """The four mixes built from ShareGPT-4o-Reasoning-format files (skip distillation)."""
    from vlmcot.records import SFTRecord
    from vlmcot.sharegpt import export_sft

    rows = []
    for ds in ("chartqa", "aokvqa"):
        for i in range(6):
            for kind, answer in (("direct", "7"), ("cot", "The bar is 7.\n\n### Answer: 7")):
                suffix = ("\nAnswer the question with a short answer." if kind == "direct"
                          else "\nGenerate a reason first and then output a short answer.")
                rows.append(SFTRecord.model_validate({
                    "id": f"{ds}_{i}_{kind}", "image": _png(f"{ds}/{i}.png", i), "dataset": ds, "kind": kind,
                    "conversations": [{"from": "human", "value": f"<image>\nQ{i}?{suffix}"},
                                      {"from": "gpt", "value": answer}]}))
    export_sft(rows, tmp_path / "release" / "sft")
    cfg = mix.Config(source="sharegpt", sharegpt_dir=str(tmp_path / "release" / "sft"),
                     out_dir=str(tmp_path / "mix"), metrics=str(tmp_path / "mix.json"),
                     format_per_dataset=2, include_general=False)
    mix.run(cfg, tracker)
    sets = {n: read_jsonl(tmp_path / "mix" / f"{n}.jsonl") for n in ["format", "direct", "cot", "both"]}
    kinds = {n: collections.Counter(r["kind"] for r in rows) for n, rows in sets.items()}
    assert kinds["format"] == {"cot": 2, "direct": 2}
    assert kinds["direct"] == {"direct": 2 + 10, "cot": 2}
    assert kinds["both"] == {"direct": 12, "cot": 12}
    assert all(r["conversations"][0]["value"].startswith("<image>\n") for r in sets["both"])


def _llava_instruct(tmp_path, n=12):
    """LLaVA-Instruct-150K's layout: one JSON list, COCO file names relative to the image root, multi-turn
    conversations whose first human turn holds <image> (one row here lacks it: LLaVA prepends it)."""
    import json

    from PIL import Image

    (tmp_path / "coco").mkdir()
    rows = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / "coco" / f"{i:012d}.jpg")
        first = "What is in the image?" if i == 3 else "<image>\nWhat is in the image?"
        rows.append({"id": f"{i:012d}", "image": f"{i:012d}.jpg",
                     "conversations": [{"from": "human", "value": first}, {"from": "gpt", "value": f"A photo {i}."},
                                       {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Because."}]})
    rows.append({"id": "missing", "image": "nope.jpg", "conversations": rows[0]["conversations"]})
    (tmp_path / "llava_instruct.json").write_text(json.dumps(rows))
    return tmp_path / "llava_instruct.json"


def test_general_rows_from_a_llava_conversation_file(tmp_path, tracker):
    src = _llava_instruct(tmp_path)
    cfg = _setup(tmp_path, format_per_dataset=2, general_size=5, general_source=str(src),
                 general_image_root=str(tmp_path / "coco"), max_bad_rate=0.1)
    mix.run(cfg, tracker)
    general = read_jsonl(tmp_path / "mix" / "general.jsonl")
    assert len(general) == 5 and all(r["kind"] == "general" and r["dataset"] == "general" for r in general)
    assert all(len(r["conversations"]) == 4 and r["conversations"][0]["value"].startswith("<image>\n")
               for r in general)
    assert all(r["image"] == str(tmp_path / "coco" / f"{r['id']}.jpg") for r in general)
    both = read_jsonl(tmp_path / "mix" / "both.jsonl")
    assert {r["id"] for r in both if r["kind"] == "general"} == {r["id"] for r in general}
    assert not [r for r in both if r["id"].endswith("-general")]  # no synthetic descriptions with a source
    assert read_json(cfg.metrics)["skipped.general"] == 1  # the row whose image is missing
    # the same draw from the same file whatever its order; JSONL holds the same rows
    import json
    rows = json.loads(src.read_text())
    jl = tmp_path / "general.jsonl"
    write_jsonl(jl, rows[::-1])
    mix.run(cfg.model_copy(update={"general_source": str(jl)}), tracker)
    assert read_jsonl(tmp_path / "mix" / "general.jsonl") == general


def test_general_source_missing_is_named_at_plan_and_run_time(tmp_path, tracker):
    import pytest

    from vlmcot.stage import StageError

    cfg = _setup(tmp_path, general_source=str(tmp_path / "pt_data_mix_2k.jsonl"),
                 general_image_root=str(tmp_path / "images"))
    notes = mix.plan_notes(cfg)
    assert len(notes) == 2 and "MISSING general_source" in notes[0] and "Share4oReasoning/sft_data" in notes[0]
    assert "MISSING general_image_root" in notes[1]
    assert mix.plan_notes(cfg.model_copy(update={"include_general": False})) == []
    with pytest.raises(StageError, match="general_source .* not found"):
        mix.run(cfg, tracker)
    (tmp_path / "bad.json").write_text('{"id": 1}')
    with pytest.raises(StageError, match="must hold a list"):
        mix.run(cfg.model_copy(update={"general_source": str(tmp_path / "bad.json")}), tracker)
