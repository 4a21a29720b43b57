import json

from vlmcot.teacher.cache import CACHE_FILE, ReplyCache, request_key


def _e(key, ok=True, text="t\n\n### Answer: 1"):
    return {
        "key": key,
        "ok": ok,
        "text": text,
        "reason": None if ok else "refusal",
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "meta": {},
    }


def test_request_key_is_canonical_and_sensitive():
    a = request_key({"model": "m", "user": "q", "temperature": 0.0})
    assert a == request_key({"temperature": 0.0, "user": "q", "model": "m"})  # order-free
    assert a != request_key({"model": "m", "user": "q", "temperature": 0.5})
    assert a != request_key({"model": "m2", "user": "q", "temperature": 0.0})
    assert len(a) == 64


def test_roundtrip_and_last_entry_wins(tmp_path):
    with ReplyCache(tmp_path / "c") as c:
        assert len(c) == 0 and c.get("a") is None
        c.append(_e("a", ok=False))
        c.append_many([_e("b"), _e("a")])
    c2 = ReplyCache(tmp_path / "c")
    assert len(c2) == 2 and "a" in c2
    assert c2.get("a")["ok"] is True  # the re-requested reply replaced the failure
    assert c2.skipped_lines == 0


def test_torn_last_line_is_ignored_and_cut_before_next_append(tmp_path):
    d = tmp_path / "c"
    with ReplyCache(d) as c:
        c.append_many([_e("a"), _e("b")])
    path = d / CACHE_FILE
    good = path.read_bytes()
    with path.open("ab") as f:  # what kill -9 in the middle of a write leaves
        f.write(b'{"key":"c","ok":tr')
    c = ReplyCache(d)
    assert set(c.entries) == {"a", "b"} and c.skipped_lines == 1
    c.append(_e("d"))
    c.close()
    data = path.read_bytes()
    assert data.startswith(good) and b'"c"' not in data
    lines = [json.loads(x) for x in data.decode().splitlines()]
    assert [x["key"] for x in lines] == ["a", "b", "d"]
    assert set(ReplyCache(d).entries) == {"a", "b", "d"}


def test_corrupt_middle_line_is_skipped_not_fatal(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / CACHE_FILE).write_text(json.dumps(_e("a")) + "\nnot json\n" + '{"no_key": 1}\n' + json.dumps(_e("b")) + "\n")
    c = ReplyCache(d)
    assert set(c.entries) == {"a", "b"} and c.skipped_lines == 2
