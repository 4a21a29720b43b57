"""Fault injection: two real `distill` processes on one teacher cache, after a kill left a torn line.

Before the cache lock, each run cut the file back to the length it had read (erasing the other's
newer lines: 0, 10 and 29 paid replies lost in three trials) and both paid for every request.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.teacher.helpers import REPO, fast_openai, make_records, write_params, write_records
from tests.teacher.server import FakeChatServer, default_reply
from vlmcot.io import read_json, read_jsonl
from vlmcot.stage import main
from vlmcot.teacher.cache import CACHE_FILE, ReplyCache

ENV = "VLMCOT_TEST_KEY"
CACHE = "data/distill_cache"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "sk-test-concurrency-0123456789")
    return tmp_path


def _reader(proc, lines: list[str]) -> threading.Thread:
    t = threading.Thread(target=lambda: lines.extend(x.decode(errors="replace") for x in proc.stdout), daemon=True)
    t.start()
    return t


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_two_distills_at_once_on_a_torn_cache_lose_nothing_and_pay_once(ws):
    n, pre = 60, 20
    recs = make_records(ws, n)
    write_records(ws / "data/prepared/train.jsonl", recs)
    write_records(ws / "data/prepared/first.jsonl", recs[:pre])
    gate = threading.Event()  # holds every reply of the concurrent phase until both runs are up

    def gated(question: str) -> dict:
        gate.wait(30)
        return default_reply(question)

    with FakeChatServer(reply_fn=gated) as srv:
        cfg = fast_openai(srv.base_url, max_concurrency=4, request_timeout_s=30)
        # 1. an earlier run answered `pre` records, then a kill -9 tore the last line
        gate.set()
        first = write_params(ws / "first.yaml", openai=cfg, input="data/prepared/first.jsonl",
                             output="data/first.jsonl", metrics="metrics/first.json")
        assert main("distill", str(first)) == 0
        cache_file = ws / CACHE / CACHE_FILE
        before = cache_file.read_bytes()
        with cache_file.open("ab") as f:
            f.write(b'{"completion_tokens":12,"key":"')
        gate.clear()
        assert srv.total == pre

        # 2. two runs over all records at once
        procs, logs = [], []
        for name in ("a", "b"):
            p = write_params(ws / f"{name}.yaml", openai=cfg, output=f"data/{name}.jsonl",
                             metrics=f"metrics/{name}.json")
            proc = subprocess.Popen([sys.executable, str(REPO / "stages/distill.py"), "--params", str(p)],
                                    cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
            lines: list[str] = []
            _reader(proc, lines)
            procs.append(proc)
            logs.append(lines)
            if name == "a":  # A is sending (its replies held at the gate) before B starts
                _wait(lambda: srv.in_flight > 0, 60, "the first run's requests")
        _wait(lambda: any("another run (pid" in x for x in logs[1]), 60, "the second run to meet the lock")
        gate.set()
        for proc in procs:
            proc.wait(timeout=120)
        assert [p.returncode for p in procs] == [0, 0], "".join(logs[0] + logs[1])[-3000:]

    # 0 paid twice: every question reached the server exactly once over the three runs
    assert srv.total == n and set(srv.by_question.values()) == {1}
    ma, mb = read_json("metrics/a.json"), read_json("metrics/b.json")
    assert ma["new_replies"] + mb["new_replies"] == n - pre
    assert {ma["cache_hits"], mb["cache_hits"]} == {pre, n}
    # 0 lost: the first run's lines intact, the torn fragment gone, one line per request
    data = cache_file.read_bytes()
    assert data.startswith(before) and b'"key":"\n' not in data and data.endswith(b"\n")
    keys = [json.loads(x)["key"] for x in data.splitlines()]
    assert len(keys) == len(set(keys)) == n
    assert len(ReplyCache(ws / CACHE, lock=False)) == n
    assert (ws / "data/a.jsonl").read_bytes() == (ws / "data/b.jsonl").read_bytes()
    assert all(r["ok"] for r in read_jsonl("data/a.jsonl"))


def test_a_read_only_view_does_not_block_and_cannot_append(tmp_path):
    with ReplyCache(tmp_path / "c") as c:
        c.append({"key": "a", "ok": True})
        view = ReplyCache(tmp_path / "c", lock=False)  # while the writer holds the lock
        assert set(view.entries) == {"a"}
        with pytest.raises(RuntimeError, match="read-only"):
            view.append({"key": "b"})


def test_the_lock_is_exclusive_across_processes_and_released_by_kill_9(tmp_path):
    code = ("import sys, time; from vlmcot.teacher.cache import ReplyCache; c = ReplyCache(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c")], stdout=subprocess.PIPE,
                            env={**os.environ})
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(TimeoutError, match="locked by pid"):
            ReplyCache(tmp_path / "c", lock_timeout_s=0.2)
    finally:
        proc.kill()
        proc.wait()
    ReplyCache(tmp_path / "c", lock_timeout_s=5).close()  # the kernel dropped the dead holder's lock


@pytest.mark.parametrize("conc", [4, 32])
def test_kill_9_resends_at_most_the_requests_in_flight(ws, conc):
    """After kill -9 the rerun re-sends only what was in flight (bounded by max_concurrency)."""
    n = 120
    recs = make_records(ws, n)
    write_records(ws / "data/prepared/train.jsonl", recs)
    # the whole run takes ~2.4 s at any concurrency, so the kill lands mid-run with `conc` in flight
    with FakeChatServer(latency_s=0.02 * conc) as srv:
        params = write_params(ws / "params.yaml", openai=fast_openai(srv.base_url, max_concurrency=conc,
                                                                      request_timeout_s=5))
        proc = subprocess.Popen([sys.executable, str(REPO / "stages/distill.py"), "--params", str(params)],
                                cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        cache_file = ws / CACHE / CACHE_FILE
        _wait(lambda: proc.poll() is not None or (cache_file.exists() and cache_file.read_bytes().count(b"\n") >= 30),
              60, "30 cached replies")
        assert proc.poll() is None, "the stage finished before it could be killed"
        proc.kill()  # SIGKILL
        proc.wait()
        answered = len(ReplyCache(ws / CACHE, lock=False))
        assert main("distill", str(params)) == 0
    resent = srv.total - n
    assert 0 <= resent <= conc and max(srv.by_question.values()) <= 2
    assert read_json("metrics/distill.json")["cache_hits"] == answered
    print(f"\nkill -9 at concurrency {conc} after {answered}/{n} replies: {resent} requests re-sent")
