"""The paper profile end to end on a CPU, as a new user runs it: the README's "Paper scale" recipe.

A copy of the repository gets what a GPU user downloads, in the same layouts:
- models/open-llava-next-llama3-8b: a tiny LLaVA-NeXT (anyres pinpoints, CLIP feature layer -2, image
  newline, Llama text model) written in the ORIGINAL LLaVA format (LlavaLlamaForCausalLM, mm_* keys,
  sharded safetensors), which `vlmcot convert-llava` turns into the HF model the pipeline loads;
- data/hub/<repo>: hub-schema parquet copies of 4 training sets and 5 benchmarks (Image() columns as
  struct{bytes, path}, README configs/data_files as on the hub), as `huggingface-cli download` writes,
  and data/hub/sft_data: the release's general file (sft/pt_data_mix_2k.jsonl) with its images;
- a chat-completions server on 127.0.0.1 standing in for GPT-4o (the teacher), at the URL
  configs/paper-cpu-smoke.yaml names; for `vllm serve` the sample/evaluate stages start (server.launch)
  the stand-in of tests/teacher/server.py per model, as they start vLLM on a GPU machine.
Then the recipe's commands run in order as subprocesses (`vlmcot convert-llava`, `dvc add`, `vlmcot
profile` x2, `vlmcot plan`, `dvc repro`), and every stage up to `report` must have written its outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEACHER_PORT = 18431  # configs/paper-cpu-smoke.yaml
MODELS = ["models/sft/format", "models/sft/direct", "models/sft/cot", "models/sft/both", "models/dpo",
          "models/control/cont_sft", "models/control/rft", "models/grpo", "models/dpo_rounds/r2"]


def _copy_repo(dst: Path) -> None:
    """The repository as a user's clone has it: tracked + new (not ignored) files, a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=dst, check=True)


def _original_llava(dst: Path) -> None:
    """Open-LLaVA-NeXT's checkpoint layout, tiny (the converter's test writes the same layout)."""
    from tests.models.test_convert_llava import _reference, _tokenizer, _write_original

    tok = _tokenizer()
    _write_original(_reference(len(tok), image_token=tok.pad_token_id), tok, dst)


def _hub_fixtures(hub_dir: Path) -> None:
    """Hub-schema copies (8 train / 4 eval rows per source) of the sources the overlay names."""
    from datasets import ClassLabel, Features, Image, Sequence, Value

    from tests.adapters.conftest import Hub
    from tests.adapters.test_mathvqa import VISTA_FEATS
    from tests.adapters.test_mcq import AOK_FEATS, MMMU_FEATS
    from tests.adapters.test_vqa import DOC_FEATS

    hub = Hub(hub_dir)
    S = Value("string")

    def img(i: int, size=(40, 24)) -> dict:
        return hub.img(hub.png(((37 * i) % 256, (91 * i) % 256, 120), size=size))

    aok = [{"image": img(i), "question_id": f"q{i}", "question": f"What is object {i}?",
            "choices": ["bus", "car", "tram", "bike"], "correct_choice_idx": i % 4,
            "direct_answers": [["bus", "car", "tram", "bike"][i % 4]] * 10, "difficult_direct_answer": False,
            "rationales": ["It is."]} for i in range(8)]
    hub.repo("A-OKVQA", {"default": {"train": aok, "validation": aok[:4]}}, AOK_FEATS)
    m4 = Features({"image": Image(), "query": S, "label": Sequence(S),
                   "human_or_machine": ClassLabel(names=["human", "machine"])})
    hub.repo("HuggingFaceM4-ChartQA", {"default": {"train": [
        {"image": img(i, (48, 32)), "query": f"What is bar {i}?", "label": [str(i + 2)], "human_or_machine": i % 2}
        for i in range(8)]}}, m4)
    lmms = Features({"type": S, "question": S, "answer": S, "image": Image()})
    hub.repo("ChartQA", {"default": {"test": [
        {"type": "human_test", "question": f"Peak of line {i}?", "answer": str(10 + i), "image": img(i)}
        for i in range(4)]}}, lmms)
    mv = Features({"id": S, "question": S, "options": Sequence(S), "image": S, "decoded_image": Image(),
                   "answer": S, "solution": S, "level": Value("int64"), "subject": S})
    hub.repo("MathVision", {"default": {"test": [
        {"id": str(i), "question": f"Which figure is shaded {i}?\n<image1>", "options": ["A", "B", "C", "D", "E"],
         "image": f"images/{i}.jpg", "decoded_image": img(i), "answer": "ABCDE"[i % 5], "solution": None,
         "level": 1, "subject": "metric geometry - area"} for i in range(8)]}}, mv)
    geo = Features({"image": S, "conversations": [{"from": S, "value": S}]})
    rows = []
    for i in range(8):
        human = ("<image>\nFirst perform reasoning, then finally select the question from the choices in the "
                 f"following format: Answer: xxx.\nQuestion:As shown in the figure, angle A = {40 + i}.0, then "
                 "angle B is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°")
        gpt = f"Angle B follows from angle A. Hence, the answer is option {'ABCD'[i % 4]}.\nAnswer:{'ABCD'[i % 4]}"
        rows.append({"image": f"geoqa_plus/{i}.png", "conversations": [{"from": "human", "value": human},
                                                                      {"from": "gpt", "value": gpt}]})
    repo = hub.repo("Geo170K", {"default": {"qa_tuning": rows}}, geo)
    import zipfile

    with zipfile.ZipFile(repo / "images.zip", "w") as z:
        for i in range(8):
            z.writestr(f"images/geoqa_plus/{i}.png", hub.png((i * 30, 10, 10), size=(32, 32)))
    hub.repo("DocVQA", {"DocVQA": {"validation": [
        {"questionId": f"d{i}", "question": f"What is the date {i}?", "question_types": ["handwritten"],
         "image": img(i, (24, 40)), "docId": i, "ucsf_document_id": f"u{i}", "ucsf_document_page_no": "1",
         "answers": [f"1{i} May"], "data_split": "val"} for i in range(4)]}}, DOC_FEATS)
    md = {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school",
          "img_height": 24, "img_width": 40, "language": "english", "skills": ["geometry reasoning"],
          "source": "Geometry3K", "split": "testmini", "task": "geometry problem solving"}
    hub.repo("MathVista", {"default": {"testmini": [
        {"pid": str(i), "question": f"Find x {i}.", "image": f"images/{i}.jpg", "decoded_image": img(i),
         "choices": ["3", "4", "5", "6"], "unit": None, "precision": None, "answer": "5",
         "question_type": "multi_choice", "answer_type": "text", "metadata": md, "query": "Hint: pick a letter"}
        for i in range(4)]}}, VISTA_FEATS)
    mmmu = [{"id": f"validation_Physics_{i}", "question": f"What does <image 1> show {i}?",
             "options": "['light', 'sound', 'heat']", "explanation": "", "image_1": img(i),
             **{f"image_{k}": None for k in range(2, 8)}, "img_type": "['Diagrams']", "answer": "ABC"[i % 3],
             "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "Optics"}
            for i in range(4)]
    hub.repo("MMMU", {"default": {"validation": mmmu}}, MMMU_FEATS)
    shutil.rmtree(hub_dir / "hf-cache", ignore_errors=True)
    # the release's general file (mix.general_source) and its unpacked images (mix.general_image_root)
    from PIL import Image as PILImage

    (hub_dir / "sft_data/images/general").mkdir(parents=True)
    (hub_dir / "sft_data/sft").mkdir(parents=True)
    rows = []
    for i in range(6):
        PILImage.new("RGB", (40, 24), (20 * i, 90, 120)).save(hub_dir / f"sft_data/images/general/{i}.png")
        rows.append({"id": f"pt_{i}", "image": f"general/{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image briefly."},
            {"from": "gpt", "value": f"A flat colour {i}."}]})
    (hub_dir / "sft_data/sft/pt_data_mix_2k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(cmd: str, cwd: Path, env: dict, timeout: float) -> tuple[str, float]:
    t = time.monotonic()
    p = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"`{cmd}` failed ({p.returncode}):\n{out[-6000:]}"
    return out, time.monotonic() - t


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None, reason="dvc not installed")
def test_paper_profile_runs_end_to_end_on_cpu(tmp_path):
    from tests.teacher.server import FakeChatServer

    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    _original_llava(repo / "models/open-llava-next-llama3-8b")  # huggingface-cli download Lin-Chen/...
    _hub_fixtures(repo / "data/hub")  # huggingface-cli download <dataset> --local-dir data/hub/<name>
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "OPENAI_API_KEY": "sk-test",
           "MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db", "PYTHONPATH": str(repo / "src")}
    recipe = [  # README "Paper scale", in order; the overlay line is the CPU smoke's only addition
        "vlmcot convert-llava models/open-llava-next-llama3-8b models/llava-next-8b --dtype bfloat16",
        "dvc add models/llava-next-8b",
        "vlmcot profile configs/paper.yaml",
        "vlmcot profile configs/paper-cpu-smoke.yaml",
        "vlmcot plan",
        "dvc repro",
    ]  # then `git checkout params.yaml`, below
    teacher = FakeChatServer(port=TEACHER_PORT).start()
    times = {}
    try:
        outs = {}
        for cmd in recipe:
            outs[cmd], times[cmd] = _run(cmd, repo, env, timeout=1500)
    finally:
        teacher.stop()
    print("wall times:", {k: round(v, 1) for k, v in times.items()})
    plan = outs["vlmcot plan"]
    assert "each started by the stage: python tests/teacher/server.py" in plan
    assert "MISSING" not in plan and "needs:" not in plan
    assert teacher.total > 0
    repro = outs["dvc repro"]
    for stage in ("evaluate@format", "evaluate@rft", "evaluate@grpo", "evaluate@dpo_r2", "sample@train", "sample@eval",
                  "dpo_round@r2"):  # its own model's server
        assert f"Running stage '{stage}'" in repro
    # 9 evaluate items + 2 sample items + the DPO round's sampling from models/dpo
    assert repro.count("starting server 0") == 12
    for out in ["data/prepared/train.jsonl", "data/distill/replies.jsonl", "data/filter/cot.jsonl",
                "data/mix/both.jsonl", *[f"{m}/config.json" for m in MODELS], "data/pairs/pairs.jsonl",
                "metrics/table2.md", "metrics/rerank.json", "data/credit/credit.png", "reports/report.md"]:
        assert (repo / out).exists(), out
    status = subprocess.run(["dvc", "status"], cwd=repo, env=env, capture_output=True, text=True)
    assert "changed" not in status.stdout, status.stdout  # every stage ran and is up to date
    _run("git checkout params.yaml", repo, env, timeout=60)  # the recipe's last line
    assert (repo / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()
