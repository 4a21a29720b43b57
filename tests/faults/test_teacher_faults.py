"""Fault injection at the teacher endpoint (issue #14, probes 3-5): what is cached, what is retried,
the budget without `usage`, and bounded replies and waits. Local server only; every wait is capped."""

import asyncio
import logging
import os

import pytest

from tests.teacher.helpers import fast_openai, make_records, write_params, write_records
from tests.teacher.server import FakeChatServer
from vlmcot.io import read_json, read_jsonl
from vlmcot.stage import main
from vlmcot.teacher.cache import CACHE_FILE, ReplyCache
from vlmcot.teacher.openai_backend import (
    OpenAIConfig,
    OpenAITeacher,
    TransportFailure,
    image_tokens,
)
from vlmcot.teacher.runner import Budget, run_teacher

ENV = "VLMCOT_TEST_KEY"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(ENV, "sk-test-faults-0123456789")


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _teacher(srv, root, **over):
    return OpenAITeacher(OpenAIConfig(**fast_openai(srv.base_url, **over)), image_root=root)


def _send(teacher, prep, timeout_s=20.0):
    async def go():
        try:
            return await asyncio.wait_for(teacher.asend(prep), timeout_s)  # a stall fails, never hangs CI
        finally:
            await teacher.aclose()

    return asyncio.run(go())


# -- probe 3: only final outcomes are cached -----------------------------------------------------


@pytest.mark.parametrize("fault", ["empty_choices", "null_content", "garbage", "500"])
def test_empty_choices_and_malformed_bodies_are_retried_like_5xx(tmp_path, fault):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(faults=[fault, fault]) as srv:
        t = _teacher(srv, tmp_path)
        entry = _send(t, t.prepare(rec))
    assert entry["ok"] and srv.total == 3
    reason = "http_500" if fault == "500" else "bad_response"
    assert t.counters[f"retry.{reason}"] == 2


def test_a_body_that_stays_malformed_is_not_cached_and_a_rerun_asks_again(tmp_path):
    recs = make_records(tmp_path, 2)
    with FakeChatServer(faults=["empty_choices"] * 4) as srv:  # max_retries 3: one record gets 4 in a row
        cache = ReplyCache(tmp_path / "c")
        res = run_teacher(recs, _teacher(srv, tmp_path), cache=cache, concurrency=1, progress=False)
        cache.close()
        assert res.stats.transport_failures == 1 and len(ReplyCache(tmp_path / "c")) == 1
        failed = [r for r in res.replies.values() if not r.ok]
        assert [r.reason for r in failed] == ["bad_response"]
        cache = ReplyCache(tmp_path / "c")
        again = run_teacher(recs, _teacher(srv, tmp_path), cache=cache, concurrency=1, progress=False)
        cache.close()
    assert all(r.ok for r in again.replies.values()) and again.stats.new_replies == 1 and srv.total == 6


def test_final_outcomes_are_cached_once(tmp_path):
    qs = {0: "REFUSE it", 1: "NOMARK", 2: "EMPTY"}  # a refusal, a reply without marker, an empty reply
    recs = make_records(tmp_path, 4, questions=qs)
    with FakeChatServer() as srv:
        for _ in range(2):
            with ReplyCache(tmp_path / "c") as cache:
                res = run_teacher(recs, _teacher(srv, tmp_path), cache=cache, progress=False)
    assert srv.total == 4  # the second run sent nothing
    assert sorted(r.reason or "ok" for r in res.replies.values()) == ["empty", "no_answer_marker", "ok", "refusal"]


# -- probe 4: the budget when the endpoint omits usage ---------------------------------------------


def test_image_token_formula_is_gpt4o_tiles():
    assert image_tokens("gpt-4o-2024-05-13", 64, 64, "high") == 85 + 170  # one 512-px tile
    assert image_tokens("gpt-4o", 1024, 1024, "high") == 85 + 170 * 4  # 768 x 768: 2 x 2 tiles
    assert image_tokens("gpt-4o", 2048, 4096, "auto") == 85 + 170 * 6  # 1024 x 2048 -> 768 x 1536: 2 x 3
    assert image_tokens("gpt-4o", 5000, 5000, "low") == 85
    assert image_tokens("gpt-4o-mini", 64, 64, "high") == 2833 + 5667


def test_without_usage_tokens_are_estimated_warned_once_and_the_budget_holds(ws, caplog):
    n = 30
    recs = make_records(ws, n)
    write_records(ws / "data/prepared/train.jsonl", recs)
    with FakeChatServer(usage=False) as srv:
        params = write_params(ws / "params.yaml", openai=fast_openai(srv.base_url, budget_tokens=3000,
                                                                      max_concurrency=2))
        with caplog.at_level(logging.WARNING):
            assert main("distill", str(params)) == 1  # budget exhausted: a clean non-zero exit
    m = read_json("metrics/distill.json")
    assert m["budget_exhausted"] == 1 and 0 < m["new_replies"] < n and srv.total == m["new_replies"]
    assert m["usage_estimated"] == m["new_replies"] and 0 < m["run_tokens"] <= 3000
    warned = [r for r in caplog.records if "no token usage" in r.getMessage()]
    assert len(warned) == 1
    entries = ReplyCache("data/distill_cache", lock=False).entries.values()
    # text at 4 characters per token + 255 for the 8-px image at detail auto (= high, one tile)
    assert all(e["meta"]["usage_estimated"] and e["prompt_tokens"] > 255 for e in entries)
    print(f"\nbudget 3000 tokens without usage: {m['new_replies']} requests sent, {m['run_tokens']} estimated tokens")


# -- probe 5: bounded replies and waits ------------------------------------------------------------


def test_a_5mb_reply_is_recorded_as_too_long_and_not_stored(ws):
    recs = make_records(ws, 3)
    write_records(ws / "data/prepared/train.jsonl", recs)
    big = "x" * 5_000_000 + "\n\n### Answer: 1"
    with FakeChatServer(reply_fn=lambda q: {"text": big}) as srv:
        params = write_params(ws / "params.yaml", openai=fast_openai(srv.base_url), max_failure_rate=1.0)
        assert main("distill", str(params)) == 0
    rows = read_jsonl("data/distill/replies.jsonl")
    assert {r["reason"] for r in rows} == {"reply_too_long"} and all(r["text"] is None for r in rows)
    assert rows[0]["meta"]["reply_chars"] == len(big)
    size = (ws / "data/distill_cache" / CACHE_FILE).stat().st_size
    assert size < 3 * 1000  # was 5 MB per record
    print(f"\n3 replies of 5 MB: cache {size} bytes")


def test_retry_after_of_an_hour_is_capped(tmp_path, caplog):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(faults=["429"], retry_after=3600) as srv:
        t = _teacher(srv, tmp_path, max_retry_after_s=0.2)
        with caplog.at_level(logging.WARNING):
            entry = _send(t, t.prepare(rec), timeout_s=20)  # uncapped, this waits an hour
    assert entry["ok"] and srv.total == 2
    assert any("asked to wait 3600s" in r.getMessage() for r in caplog.records)


def test_retry_after_cap_with_retries_exhausted_is_a_transport_failure(tmp_path):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(faults=["429"] * 10, retry_after=3600) as srv:
        t = _teacher(srv, tmp_path, max_retry_after_s=0.05, max_retries=2)
        with pytest.raises(TransportFailure) as e:
            _send(t, t.prepare(rec))
    assert e.value.reason == "http_429" and srv.total == 3


def test_oversized_device_and_outside_images_are_refused_without_a_request(ws):
    recs = make_records(ws, 6)
    big = ws / recs[0].image
    with big.open("r+b") as f:  # a 50 MB file (sparse): refused from stat, not read
        f.truncate(50_000_000)
    rows = [r.model_dump(mode="json", exclude_none=True) for r in recs]
    rows[1]["image"] = "/dev/zero"  # absolute and a device
    rows[2]["image"] = "../outside.png"
    (ws.parent / "outside.png").write_bytes((ws / recs[2].image).read_bytes())
    os.symlink(ws.parent / "outside.png", ws / "images" / "link.png")
    rows[3]["image"] = "images/link.png"  # a symlink inside the repo pointing out of it
    write_records(ws / "data/prepared/train.jsonl", [], rows)
    with FakeChatServer() as srv:
        params = write_params(ws / "params.yaml", openai=fast_openai(srv.base_url), max_failure_rate=1.0)
        assert main("distill", str(params)) == 0
        by_id = {r["id"]: r for r in read_jsonl("data/distill/replies.jsonl")}
        assert srv.total == 2  # only the two good records were sent
        assert by_id[recs[0].id]["reason"] == "image_too_large"
        assert "images.max_bytes=20000000" in by_id[recs[0].id]["meta"]["error"]
        assert [by_id[recs[i].id]["reason"] for i in (1, 2, 3)] == ["image_outside"] * 3
        # the explicit switch lets outside paths through; a device file is still never read
        params = write_params(ws / "params.yaml", openai=fast_openai(srv.base_url), max_failure_rate=1.0,
                              images={"allow_outside": True})
        assert main("distill", str(params)) == 0
        by_id = {r["id"]: r for r in read_jsonl("data/distill/replies.jsonl")}
        assert by_id[recs[1].id]["reason"] == "image_not_file"
        assert by_id[recs[2].id]["ok"] and by_id[recs[3].id]["ok"]
