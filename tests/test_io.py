import pytest

from vlmcot.io import iter_jsonl, read_json, read_jsonl, write_json, write_jsonl


def test_jsonl_sorted_and_stable(tmp_path):
    p = tmp_path / "a.jsonl"
    write_jsonl(p, [{"id": "b", "x": "é"}, {"id": "a", "y": 1}], sort_key="id")
    first = p.read_bytes()
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b"]
    write_jsonl(p, [{"y": 1, "id": "a"}, {"x": "é", "id": "b"}], sort_key="id")
    assert p.read_bytes() == first  # key order and row order do not leak into bytes
    assert "é" in p.read_text(encoding="utf-8")


def test_bad_line_names_file_and_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"id": "a"}\n{broken\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: not valid JSON"):
        read_jsonl(p)


def test_non_utf8_is_an_error_naming_the_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"id": "ok"}\n{"id": "\xff"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: not valid UTF-8"):
        read_jsonl(p)


def test_on_error_skips_and_reports_each_bad_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n[1]\n{bad\n\n{"id": "b"}\n')
    errors = []
    rows = [r for _, r in iter_jsonl(p, on_error=errors.append)]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in errors] == ["2", "3", "4"]


def test_atomic_write_leaves_no_temp(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": 2})
    assert read_json(tmp_path / "m.json") == {"a": 2, "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
