import pytest

from tests.teacher.helpers import fast_openai, make_records
from tests.teacher.server import FakeChatServer
from vlmcot.teacher.protocol import TeacherReply
from vlmcot.teacher.cache import ReplyCache
from vlmcot.teacher.openai_backend import FatalTeacherError, OpenAIConfig, OpenAITeacher
from vlmcot.teacher.runner import Budget, run_teacher


@pytest.fixture(autouse=True)
def env_key(monkeypatch):
    monkeypatch.setenv("VLMCOT_TEST_KEY", "sk-test-runner-0123456789")


def _teacher(srv, root, **over):
    return OpenAITeacher(OpenAIConfig(**fast_openai(srv.base_url, **over)), image_root=root)


def _run(srv, root, recs, cache_dir=None, concurrency=4, **kw):
    cache = ReplyCache(cache_dir) if cache_dir else None
    try:
        return run_teacher(recs, _teacher(srv, root), cache=cache, concurrency=concurrency, progress=False, **kw)
    finally:
        if cache:
            cache.close()


def test_bounded_in_flight_and_every_record_answered(tmp_path):
    recs = make_records(tmp_path, 24)
    with FakeChatServer(latency_s=0.03) as srv:
        res = _run(srv, tmp_path, recs, concurrency=3)
    assert 1 <= srv.max_in_flight <= 3
    assert set(res.replies) == {r.id for r in recs} and all(r.ok for r in res.replies.values())
    assert res.stats.new_replies == 24 and res.stats.counters["attempts"] == 24 and srv.total == 24


def test_cache_answers_a_rerun_without_requests(tmp_path):
    recs = make_records(tmp_path, 10)
    with FakeChatServer() as srv:
        first = _run(srv, tmp_path, recs, tmp_path / "cache")
        second = _run(srv, tmp_path, recs, tmp_path / "cache")
    assert srv.total == 10
    assert second.stats.cache_hits == 10 and second.stats.new_replies == 0
    assert second.replies == first.replies


def test_identical_requests_are_sent_once(tmp_path):
    recs = make_records(tmp_path, 3)
    twin = recs[0].model_copy(update={"id": "twin"})
    with FakeChatServer() as srv:
        res = _run(srv, tmp_path, [*recs, twin], tmp_path / "cache")
    assert srv.total == 3
    assert res.replies["twin"].text == res.replies[recs[0].id].text


def test_record_errors_do_not_stop_the_run(tmp_path):
    recs = make_records(tmp_path, 3)
    (tmp_path / recs[1].image).unlink()
    with FakeChatServer() as srv:
        res = _run(srv, tmp_path, recs)
    assert srv.total == 2
    assert res.replies[recs[1].id].reason == "image_missing" and res.stats.record_errors == 1


def test_transport_failures_are_not_cached_and_rerun(tmp_path):
    recs = make_records(tmp_path, 3)
    with FakeChatServer(faults=["503"]) as srv:
        t = _teacher(srv, tmp_path, max_retries=0)
        with ReplyCache(tmp_path / "cache") as cache:
            res = run_teacher(recs, t, cache=cache, concurrency=1, progress=False)
        failed = [r for r in res.replies.values() if not r.ok]
        assert len(failed) == 1 and failed[0].reason == "http_503" and failed[0].meta["attempts"] == 1
        again = _run(srv, tmp_path, recs, tmp_path / "cache")
    assert again.stats.cache_hits == 2 and again.stats.new_replies == 1 and srv.total == 4
    assert all(r.ok for r in again.replies.values())


def test_malformed_replies_are_cached_unless_retry_failed(tmp_path):
    recs = make_records(tmp_path, 2, questions={1: "NOMARK"})
    with FakeChatServer() as srv:
        _run(srv, tmp_path, recs, tmp_path / "cache")
        res = _run(srv, tmp_path, recs, tmp_path / "cache")
        assert srv.total == 2 and res.replies[recs[1].id].reason == "no_answer_marker"
        _run(srv, tmp_path, recs, tmp_path / "cache", retry_failed=True)
    assert srv.total == 3  # only the malformed one was re-sent


def test_token_budget_stops_cleanly_and_a_rerun_continues(tmp_path):
    recs = make_records(tmp_path, 12)  # ~230 tokens per request at the fake server; the local estimate of the
    # first request (before any usage is known) is ~445 (text at 4 chars/token + 255 for a high-detail tile)
    with FakeChatServer() as srv:
        res = _run(srv, tmp_path, recs, tmp_path / "cache", concurrency=1, budget=Budget(max_tokens=1000))
        s = res.stats
        assert s.budget_exhausted and 0 < s.new_replies < 12 and s.not_sent == 12 - s.new_replies
        assert s.run_tokens <= 1000  # concurrency 1: the cap is never passed
        assert len(ReplyCache(tmp_path / "cache")) == s.new_replies  # everything done is kept
        sent_before = srv.total
        done = _run(srv, tmp_path, recs, tmp_path / "cache")
    assert not done.stats.budget_exhausted and len(done.replies) == 12
    assert done.stats.cache_hits == s.new_replies and srv.total == sent_before + (12 - s.new_replies)
    assert max(srv.by_question.values()) == 1


def test_usd_budget_uses_the_price_table(tmp_path):
    recs = make_records(tmp_path, 10)
    with FakeChatServer() as srv:
        t = _teacher(srv, tmp_path, prices={"gpt-4o": {"input_per_1m": 1000.0, "output_per_1m": 1000.0}})
        res = run_teacher(recs, t, concurrency=1, progress=False, budget=Budget(max_usd=0.5))
    s = res.stats
    assert s.budget_exhausted and s.run_cost_usd <= 0.5 and s.run_cost_usd == pytest.approx(s.run_tokens * 1e-3)


def test_fatal_error_stops_the_run(tmp_path):
    recs = make_records(tmp_path, 8)
    with FakeChatServer(require_key="sk-the-right-key-000000") as srv, pytest.raises(FatalTeacherError, match="401"):
        _run(srv, tmp_path, recs, concurrency=2)
    assert srv.total <= 2  # no new request after the first refusal


class _SyncTeacher:
    """Stand-in for a synchronous Teacher (the scripted one): whitespace token counts, no cache."""

    name = "sync"

    def __init__(self):
        self.calls = []

    def generate(self, records):
        self.calls.append(len(records))
        return [
            TeacherReply(id=r.id, text=f"x y\n\n### Answer: {r.answer}", ok=True, prompt_tokens=5, completion_tokens=4)
            for r in records
        ]


def test_sync_teacher_goes_through_the_same_runner_in_chunks(tmp_path):
    recs = make_records(tmp_path, 10)
    t = _SyncTeacher()
    res = run_teacher(recs, t, progress=False, chunk_size=4)
    assert t.calls == [4, 4, 2] and len(res.replies) == 10 and res.stats.run_tokens == 90
    t2 = _SyncTeacher()
    res2 = run_teacher(recs, t2, progress=False, chunk_size=4, budget=Budget(max_tokens=36))
    assert res2.stats.budget_exhausted and t2.calls == [4] and res2.stats.not_sent == 6
