"""backend: server - the sample and evaluate stages against real chat-completions servers on 127.0.0.1
(tests/teacher/server.py answering as `vllm serve` would): images travel as data URLs, sampling settings
and per-request seeds reach the server, and N servers write byte for byte what one server writes."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
import yaml

from tests.helpers import mixed_records
from tests.teacher.server import FakeChatServer
from vlmcot.generation import GenerationConfig, GenRequest
from vlmcot.io import read_json
from vlmcot.server_backend import ServerBackend, ServerConfig, request_body

MODEL = "models/sft/both"


def student(body: dict, k: int) -> dict:
    """A sampling 'model': choice k is a function of the image bytes, prompt, seed and settings only."""
    parts = body["messages"][0]["content"]
    image = next((p["image_url"]["url"] for p in parts if p["type"] == "image_url"), "")
    text = next(p["text"] for p in parts if p["type"] == "text")
    if "BADREQ" in text:
        raise ValueError("This model's maximum context length is 2048 tokens.")
    key = f"{image}|{text}|{body['seed']}|{body['temperature']}|{body.get('top_p')}|{body['max_tokens']}|{k}"
    h = hashlib.sha256(key.encode()).hexdigest()
    answer = ["8", "7", "B", "A"][int(h[:2], 16) % 4]
    return {"text": f" The picture {hashlib.sha256(image.encode()).hexdigest()[:6]} says {h[2:8]}.\n\n### Answer: {answer} "}


@pytest.fixture
def world(tmp_path: Path) -> Path:
    mixed_records(tmp_path, 10, 16, "records.jsonl")
    return tmp_path


def servers(n: int, **kw) -> list[FakeChatServer]:
    return [FakeChatServer(choice_fn=student, served_models=[MODEL], **kw).start() for _ in range(n)]


def params(root: Path, out: str, urls: list[str]) -> Path:
    server = {"urls": urls, "max_concurrency": 3, "max_retries": 2, "timeout_s": 20}
    p = {
        "sample": {"model": MODEL, "out_dir": str(root / out / "sample"), "metrics_dir": str(root / out / "m"),
                   "root": str(root), "items": {"train": {"records": str(root / "records.jsonl")}},
                   "num_samples": 3, "max_new_tokens": 20, "chunk_size": 4, "seed": 5, "backend": "server",
                   "server": server},
        "evaluate": {"records": str(root / "records.jsonl"), "models": {"both": MODEL},
                     "predictions_dir": str(root / out / "eval"), "metrics_dir": str(root / out / "m"),
                     "summary_dir": str(root / out / "paper"), "root": str(root), "backend": "server", "server": server},
    }
    path = root / f"params_{out}.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def test_request_carries_image_settings_and_a_position_free_seed(world):
    req = GenRequest("num_0", "img/0.png", "What is the sum?")
    gen = GenerationConfig(do_sample=True, temperature=1.2, top_p=0.9, num_return_sequences=4, max_new_tokens=33, seed=7)
    body = request_body(req, gen, world, MODEL)
    img, txt = body["messages"][0]["content"]
    assert img["image_url"]["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(img["image_url"]["url"].split(",", 1)[1]) == (world / "img/0.png").read_bytes()
    assert txt == {"type": "text", "text": "What is the sum?"}
    assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"], body["logprobs"]) == (4, 1.2, 0.9, 33, True)
    other = request_body(GenRequest("num_2", "img/0.png", "What is the sum?"), gen, world, MODEL)
    assert body["seed"] != other["seed"]  # per request id, not per batch slot
    assert request_body(req, gen, world, MODEL)["seed"] == body["seed"]
    greedy = request_body(req, GenerationConfig(), world, MODEL)
    assert greedy["temperature"] == 0.0 and greedy["n"] == 1


def test_backend_returns_request_order_and_token_counts(world):
    srv = servers(2)
    try:
        be = ServerBackend(MODEL, ServerConfig(urls=[s.base_url for s in srv], max_concurrency=2), root=world)
        reqs = [GenRequest(f"q{i}", f"img/{i}.png", f"question {i}") for i in range(6)]
        outs = be.generate(reqs, GenerationConfig(do_sample=True, num_return_sequences=2, seed=1))
        assert [o.id for o in outs] == [r.id for r in reqs]
        assert all(len(o.texts) == 2 and o.texts[0] == o.texts[0].strip() for o in outs)
        assert all(n == len(t.split()) for o in outs for n, t in zip(o.num_tokens, o.texts))
        assert all(s.total == 3 for s in srv)  # round-robin over the two servers
    finally:
        for s in srv:
            s.stop()


def test_a_rejected_request_gives_empty_texts_but_all_rejected_fails(world, caplog):
    srv = servers(1)
    try:
        be = ServerBackend(MODEL, ServerConfig(urls=[srv[0].base_url], max_retries=0), root=world)
        gen = GenerationConfig(do_sample=True, num_return_sequences=2)
        reqs = [GenRequest("ok", "img/0.png", "fine"), GenRequest("long", "img/1.png", "BADREQ huge")]
        outs = be.generate(reqs, gen)
        assert outs[0].texts[0] and outs[1].texts == ["", ""] and outs[1].num_tokens == [0, 0]
        assert "request 'long' rejected" in caplog.text and "maximum context length" in caplog.text
        with pytest.raises(RuntimeError, match="rejected all 1 requests"):
            be.generate(reqs[1:], gen)
    finally:
        srv[0].stop()


def test_sample_and_evaluate_over_two_servers_match_one_server_byte_for_byte(world):
    from vlmcot.stage import main

    one, two = servers(1), servers(2, faults=["503", "reset"])  # retried faults change nothing either
    try:
        for name, srv in (("one", one), ("two", two)):
            p = str(params(world, name, [s.base_url for s in srv]))
            assert main("sample", p, item="train") == 0
            assert main("evaluate", p, item="both") == 0
        assert all(s.answered for s in two)
    finally:
        for s in one + two:
            s.stop()
    a = (world / "one/sample/train/candidates.jsonl").read_bytes()
    assert a == (world / "two/sample/train/candidates.jsonl").read_bytes()
    assert len(a.splitlines()) == 10 * 3
    assert (world / "one/eval/both.jsonl").read_bytes() == (world / "two/eval/both.jsonl").read_bytes()
    assert read_json(world / "one/m/both.json") == read_json(world / "two/m/both.json")
    m1, m2 = read_json(world / "one/m/sample_train.json"), read_json(world / "two/m/sample_train.json")
    m1.pop("all.samples_per_s"), m2.pop("all.samples_per_s")
    assert m1 == m2


def test_a_missing_or_wrong_server_fails_the_stage_clearly(world, capsys):
    from vlmcot.stage import main

    wrong = FakeChatServer(choice_fn=student, served_models=["some/other-model"]).start()
    try:
        assert main("sample", str(params(world, "wrong", [wrong.base_url])), item="train") == 1
        assert "not 'models/sft/both'" in capsys.readouterr().err and wrong.total == 0
    finally:
        wrong.stop()
    port = wrong.port  # closed now: nothing listens there
    assert main("evaluate", str(params(world, "down", [f"http://127.0.0.1:{port}/v1"])), item="both") == 1
    assert "no vLLM server at" in capsys.readouterr().err


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_launch_starts_one_server_per_url_serving_the_stage_model_and_stops_them(world):
    """server.launch: the stage itself starts `vllm serve {model} --port {port}` (here the stand-in of
    tests/teacher/server.py), so every sample/evaluate item of one `dvc repro` gets its own model's servers."""
    import subprocess
    import sys

    from vlmcot.stage import main

    urls = [f"http://127.0.0.1:{p}/v1" for p in _free_ports(2)]
    p = params(world, "launched", urls)
    cfg = yaml.safe_load(p.read_text())
    server = Path(__file__).parent / "teacher/server.py"
    cfg["sample"]["server"]["launch"] = f"{sys.executable} {server} --student {{model}} --port {{port}} # gpu {{index}}"
    p.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-c", f"from vlmcot.stage import main; raise SystemExit(main('sample', {str(p)!r}, item='train'))"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("starting server") == 2 and "gpu 1" in out.stderr
    assert len((world / "launched/sample/train/candidates.jsonl").read_text().splitlines()) == 10 * 3
    import urllib.request

    for u in urls:  # the stage's exit stopped them
        with pytest.raises(OSError):
            urllib.request.urlopen(u + "/models", timeout=2)


def test_launch_failure_names_the_log_and_remote_urls_are_refused(world, capsys):
    from vlmcot.stage import main

    p = params(world, "badlaunch", [f"http://127.0.0.1:{_free_ports(1)[0]}/v1"])
    cfg = yaml.safe_load(p.read_text())
    cfg["evaluate"]["server"]["launch"] = "echo no GPU here; exit 3"
    p.write_text(yaml.safe_dump(cfg))
    assert main("evaluate", str(p), item="both") == 1
    err = capsys.readouterr().err
    assert "exited (3) before serving 'models/sft/both'" in err and "no GPU here" in err
    with pytest.raises(ValueError, match="must be http://127.0.0.1:PORT/v1"):
        ServerConfig(urls=["http://gpu-node:8000/v1"], launch="vllm serve {model} --port {port}")
