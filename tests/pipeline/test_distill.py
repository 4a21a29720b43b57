"""The real distill stage (vlmcot.stage.main -> pipeline.distill.run) against a local chat server."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.teacher.helpers import (
    REPO,
    fast_openai,
    make_records,
    write_params,
    write_records,
)
from tests.teacher.server import FakeChatServer
from vlmcot.io import read_json, read_jsonl
from vlmcot.stage import main
from vlmcot.teacher.cache import CACHE_FILE, ReplyCache
from vlmcot.teacher.openai_backend import OpenAIConfig, OpenAITeacher

ENV = "VLMCOT_TEST_KEY"
OUT = "data/distill/replies.jsonl"
METRICS = "metrics/distill.json"


@pytest.fixture
def key(monkeypatch):
    k = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(ENV, k)
    return k


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace laid out like the repo: cwd, data/prepared/train.jsonl, repo-relative images."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _records(ws: Path, n: int, questions=None, extra_rows=None):
    recs = make_records(ws, n, questions=questions)
    write_records(ws / "data/prepared/train.jsonl", recs, extra_rows)
    return recs


def _stage(ws: Path, **params) -> int:
    return main("distill", str(write_params(ws / "params.yaml", **params)))


def test_success_one_row_per_record_and_metrics(ws, key, capsys):
    recs = _records(ws, 12, extra_rows=[{"id": "bad-1", "image": "x.png", "question": "q", "dataset": "d"}])
    (ws / recs[3].image).unlink()
    with FakeChatServer() as srv:
        assert _stage(ws, openai=fast_openai(srv.base_url)) == 0
    rows = read_jsonl(OUT)
    assert [r["id"] for r in rows] == sorted([r.id for r in recs] + ["bad-1"])
    assert set(rows[0]) == {"id", "ok", "text", "reason", "prompt_tokens", "completion_tokens", "meta"}
    by_id = {r["id"]: r for r in rows}
    assert by_id["bad-1"]["reason"] == "invalid_record" and by_id[recs[3].id]["reason"] == "image_missing"
    good = [by_id[r.id] for r in recs if r is not recs[3]]
    assert all(
        r["ok"] and r["text"].endswith(f"### Answer: {rec.answer}")
        for r, rec in zip(good, [x for x in recs if x is not recs[3]])
    )
    m = read_json(METRICS)
    assert (m["records"], m["ok"], m["failed"]) == (13, 11, 2)
    assert m["failed.image_missing"] == 1 and m["failed.invalid_record"] == 1 and m["failed.refusal"] == 0
    assert m["requests"] == 11 and m["new_replies"] == 11 and m["cache_hits"] == 0 and srv.total == 11
    assert m["tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) > 0
    # gpt-4o-2024-05-13 list price: $5 / $15 per 1M tokens
    assert m["cost_usd_est"] == pytest.approx((m["prompt_tokens"] * 5 + m["completion_tokens"] * 15) / 1e6, abs=1e-6)
    assert len(ReplyCache("data/distill_cache")) == 11


def test_every_fault_kind_is_retried_and_malformed_replies_are_counted(ws, key):
    faults = ["429", "500", "502", "503", "timeout", "reset", "garbage"]
    qs = {1: "REFUSE it", 2: "EMPTY", 3: "NOMARK", 4: "TRUNCATE", 5: "SORRY"}
    _records(ws, 16, questions=qs)
    with FakeChatServer(faults=faults, retry_after=0.05, hang_s=1.0) as srv:
        cfg = fast_openai(srv.base_url, request_timeout_s=0.3, max_retries=4)
        assert _stage(ws, openai=cfg, max_failure_rate=0.5) == 0
    m = read_json(METRICS)
    assert srv.total == 16 + len(faults) and m["requests"] == srv.total and m["retries"] == len(faults)
    for reason in ("http_429", "http_500", "http_502", "http_503", "timeout", "connection", "bad_response"):
        assert m[f"retries.{reason}"] == 1, reason
    assert (m["failed.refusal"], m["failed.empty"], m["failed.no_answer_marker"], m["failed.truncated"]) == (2, 1, 1, 1)
    assert m["ok"] == 11 and m["failed"] == 5
    rows = {r["id"]: r for r in read_jsonl(OUT)}
    assert rows["r0003"]["reason"] == "no_answer_marker" and rows["r0003"]["text"].startswith("The bars")


def test_failure_rate_above_threshold_fails_with_a_summary(ws, key, capsys):
    _records(ws, 10, questions={i: "NOMARK" for i in range(4)})
    with FakeChatServer() as srv:
        assert _stage(ws, openai=fast_openai(srv.base_url), max_failure_rate=0.2) == 1
    err = capsys.readouterr().err
    assert "4 of 10 records failed" in err and "no_answer_marker: 4" in err and "max_failure_rate" in err
    assert len(read_jsonl(OUT)) == 10  # written for inspection; the non-zero exit keeps DVC from recording it


def test_persistent_server_errors_are_failures_not_a_crash(ws, key, capsys):
    _records(ws, 4)
    with FakeChatServer(faults=["500"] * 100) as srv:
        assert _stage(ws, openai=fast_openai(srv.base_url, max_retries=1)) == 1
    assert srv.total == 8
    rows = read_jsonl(OUT)
    assert all(r["reason"] == "http_500" and r["meta"]["attempts"] == 2 for r in rows)
    assert len(ReplyCache("data/distill_cache")) == 0  # not cached: the next run tries again
    assert "http_500: 4" in capsys.readouterr().err


def test_budget_stops_cleanly_and_a_rerun_finishes_without_resending(ws, key, capsys):
    recs = _records(ws, 20)
    with FakeChatServer() as srv:
        cfg = fast_openai(srv.base_url, max_concurrency=1, budget_tokens=600)
        assert _stage(ws, openai=cfg) == 1
        err = capsys.readouterr().err
        assert "budget exhausted (budget_tokens=600)" in err and "rerun" in err and "not written" in err
        assert not Path(OUT).exists()
        m = read_json(METRICS)
        done = m["new_replies"]
        assert m["budget_exhausted"] == 1 and 0 < done < 20 and m["not_sent"] == 20 - done and m["run_tokens"] <= 600
        assert len(ReplyCache("data/distill_cache")) == done
        cfg["budget_tokens"] = None
        assert _stage(ws, openai=cfg) == 0
    m = read_json(METRICS)
    assert m["cache_hits"] == done and m["new_replies"] == 20 - done and m["ok"] == 20
    assert srv.total == 20 and max(srv.by_question.values()) == 1
    assert len(read_jsonl(OUT)) == len(recs)


def test_bad_key_stops_the_stage_and_says_why(ws, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "sk-wrong-0123456789abcdef")
    _records(ws, 6)
    with FakeChatServer(require_key="sk-right-0000000000000000") as srv:
        assert _stage(ws, openai=fast_openai(srv.base_url, max_concurrency=2)) == 1
    err = capsys.readouterr().err
    assert "refused the run" in err and "401" in err and "sk-wro" not in err
    assert srv.total <= 2 and not Path(OUT).exists()


def test_missing_key_variable_is_named(ws, monkeypatch, capsys):
    monkeypatch.delenv(ENV, raising=False)
    _records(ws, 2)
    assert _stage(ws, openai=fast_openai("http://127.0.0.1:9/v1")) == 1
    assert f"environment variable {ENV} is not set" in capsys.readouterr().err


def test_key_is_never_persisted(ws, key, capsys, caplog, _mlflow_store):
    caplog.set_level("DEBUG")
    _records(ws, 6, questions={2: "NOMARK"})
    with FakeChatServer(faults=["429", "500"], retry_after=0.05, require_key=key) as srv:
        assert _stage(ws, openai=fast_openai(srv.base_url)) == 0
    assert srv.auth_headers and all(h == f"Bearer {key}" for h in srv.auth_headers)  # it was used ...
    monkeypatch_key = f"sk-bad-{uuid.uuid4().hex}"  # ... and a rejected key is not echoed either
    os.environ[ENV] = monkeypatch_key
    with FakeChatServer(require_key=key) as srv:
        assert _stage(ws, openai=fast_openai(srv.base_url), cache_dir="data/cache2") == 1
    assert srv.total >= 1
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    secrets = [key, key[:10], monkeypatch_key, monkeypatch_key[:10]]
    assert not any(s in text for s in secrets)
    for root in (ws, Path(_mlflow_store)):  # outputs, metrics, cache, params; the MLflow store
        for p in root.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert not any(s.encode() in data for s in secrets), p


def test_scripted_backend_goes_through_the_same_stage(ws):
    from vlmcot.world import WorldConfig, generate

    off = {"n_train": 0, "n_eval": 0}
    world = WorldConfig(chart={"n_train": 8, "n_eval": 0}, doc=off, geo=off, sci=off, sign=off)
    recs = generate(world, "data/prepared", progress=False)
    write_records(ws / "data/prepared/train.jsonl", recs)
    assert _stage(ws, backend="scripted", scripted={"error_rate": 0.0}) == 0
    rows = read_jsonl(OUT)
    assert [r["id"] for r in rows] == sorted(r.id for r in recs) and all(r["ok"] for r in rows)
    m = read_json(METRICS)
    assert m["requests"] == 8 and m["cost_usd_est"] == 0 and m["tokens"] > 0
    assert Path("data/distill_cache").is_dir() and len(ReplyCache("data/distill_cache")) == 0  # free: no cache


def test_params_errors_name_the_key_and_hide_a_pasted_secret(ws, capsys):
    _records(ws, 1)
    assert _stage(ws, openai={"api_key_env": "sk-proj-PASTED0123456789", "modle": "x"}) == 2
    err = capsys.readouterr().err
    assert "distill.openai.api_key_env" in err and "distill.openai.modle: unknown key" in err
    assert "PASTED" not in err


def test_kill_9_mid_run_then_resume_is_identical_and_resends_nothing_answered(ws, key, tmp_path_factory):
    n, conc = 120, 4
    recs = _records(ws, n)
    with FakeChatServer(latency_s=0.08) as srv:
        cfg = fast_openai(srv.base_url, max_concurrency=conc)
        params = write_params(ws / "params.yaml", openai=cfg)
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "stages/distill.py"), "--params", str(params)],
            cwd=ws,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        cache_file = ws / "data/distill_cache" / CACHE_FILE
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if cache_file.exists() and cache_file.read_bytes().count(b"\n") >= 15:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the stage finished (or died) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        log = proc.communicate()[0].decode()
        assert proc.returncode == -signal.SIGKILL and key not in log
        with cache_file.open("ab") as f:  # what a write torn by kill -9 looks like
            f.write(b'{"completion_tokens":12,"key":"')
        answered = set(ReplyCache(cache_file.parent).entries)
        assert 15 <= len(answered) < n and not Path(OUT).exists()

        assert main("distill", str(params)) == 0  # resume
    m = read_json(METRICS)
    assert m["cache_hits"] == len(answered) and m["new_replies"] == n - len(answered) and m["cache_skipped_lines"] == 1
    # what reached the server: each answered request exactly once; only those in flight at the kill twice
    teacher = OpenAITeacher(OpenAIConfig(**cfg), image_root=ws)
    question = {p.key: p.user_text for p in map(teacher.prepare, recs)}
    assert all(srv.by_question[question[k]] == 1 for k in answered)
    assert set(srv.by_question) == set(question.values())
    assert 0 <= srv.total - n <= conc and max(srv.by_question.values()) <= 2
    resumed = (ws / OUT).read_bytes()

    # the same records, uninterrupted, in a fresh workspace: byte-identical output
    ref = tmp_path_factory.mktemp("uninterrupted")
    os.chdir(ref)
    _records(ref, n)
    with FakeChatServer() as srv2:
        assert _stage(ref, openai=fast_openai(srv2.base_url, max_concurrency=8)) == 0
    assert (ref / OUT).read_bytes() == resumed
    assert json.loads(resumed.splitlines()[0])["ok"] is True
