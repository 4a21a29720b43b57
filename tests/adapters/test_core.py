"""The load loop: config validation, hub aliases, limits, bad rows skipped and counted."""

import datasets
import pytest
from datasets import Dataset, Features, Image, Value

from vlmcot.adapters import ADAPTERS, LoadReport, SourceConfig, SourceError, hub_aliases, load
from vlmcot.adapters.core import Adapter
from vlmcot.config import ConfigError, parse_section

S = Value("string")
FEATS = Features({"type": S, "question": S, "answer": S, "image": Image()})


def _rows(hub, n, bad_image_at=()):
    return [{"type": "human_test", "question": f"q{i}?", "answer": str(i),
             "image": hub.img(b"not an image" if i in bad_image_at else hub.png((i, 0, 0)))}
            for i in range(n)]


def test_source_config_errors_name_the_key():
    def err(d):
        with pytest.raises(ConfigError) as e:
            parse_section(SourceConfig, d, "prepare.sources.0")
        return str(e.value)

    assert "unknown adapter 'chartqaa'" in err({"name": "chartqaa"})
    assert "options.mode" in err({"name": "aokvqa", "options": {"mode": "both"}})
    assert "options.colour: unknown option" in err({"name": "aokvqa", "options": {"colour": 1}})
    assert "fields.query" in err({"name": "chartqa", "fields": {"query": "q"}})
    assert "prepare.sources.0.limit" in err({"name": "chartqa", "limit": 0})
    assert "prepare.sources.0.spilt" in err({"name": "chartqa", "spilt": "test"})
    ok = parse_section(SourceConfig, {"name": "chartqa", "fields": {"question": "query"}}, "x")
    assert ok.fields == {"question": "query"}


def test_hub_aliases_and_accepted_ids():
    assert hub_aliases("lmms-lab/ChartQA") == ("lmms-lab/ChartQA", "lmms-lab-encoder/ChartQA")
    assert hub_aliases("lmms-lab-encoder/ChartQA") == ("lmms-lab-encoder/ChartQA", "lmms-lab/ChartQA")
    assert hub_aliases("HuggingFaceM4/ChartQA") == ("HuggingFaceM4/ChartQA",)
    assert "lmms-lab-encoder/DocVQA" in ADAPTERS["docvqa"].accepted_hub_ids()


def test_moved_lmms_lab_repo_falls_back_to_the_other_owner(hub, monkeypatch):
    calls = []
    ds = Dataset.from_dict({k: [r[k] for r in _rows(hub, 2)] for k in FEATS}, features=FEATS)

    def fake_load(path, name=None, split=None, streaming=False, cache_dir=None, revision=None):
        calls.append((path, name, split, revision))
        if path == "lmms-lab/ChartQA":
            raise datasets.exceptions.DatasetNotFoundError("Dataset 'lmms-lab/ChartQA' doesn't exist")
        return ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    recs, _ = hub.load(name="chartqa", revision="abc123")
    assert calls == [("lmms-lab/ChartQA", None, "test", "abc123"),
                     ("lmms-lab-encoder/ChartQA", None, "test", "abc123")]
    assert len(recs) == 2

    def gone(path, *a, **kw):
        calls.append(path)
        raise datasets.exceptions.DatasetNotFoundError(f"{path} gone")

    calls.clear()
    monkeypatch.setattr(datasets, "load_dataset", gone)
    with pytest.raises(SourceError, match="not found"):
        hub.load(name="chartqa", hub_id="lmms-lab-encoder/ChartQA")
    assert calls == ["lmms-lab-encoder/ChartQA", "lmms-lab/ChartQA"]


def test_limit_counts_good_records_and_bad_rows_never_stop_the_load(hub):
    repo = hub.repo("ChartQA", {"default": {"test": _rows(hub, 6, bad_image_at={1, 2})}}, FEATS)
    recs, rep = hub.load(name="chartqa", local_path=str(repo), limit=3)
    assert [r.answer for r in recs] == ["0", "3", "4"]
    assert (rep.rows, rep.records, rep.bad, rep.reasons["bad_image"]) == (5, 3, 2, 2)
    assert "row 1 (id chartqa_test_1)" in rep.messages[0] and "cannot be decoded" in rep.messages[0]
    assert rep.bad_fraction == pytest.approx(0.4)
    with pytest.raises(SourceError, match="2 of 5 rows bad"):
        rep.check(max_bad_fraction=0.1)
    rep.check(max_bad_fraction=0.5)
    m = rep.as_metrics("prepare.chartqa")
    assert m["prepare.chartqa.records"] == 3 and m["prepare.chartqa.bad.bad_image"] == 2


def test_unexpected_errors_and_duplicate_ids_are_counted(hub, monkeypatch):
    class Flaky(Adapter):
        name = "flaky"
        description = "test"
        dataset = "flaky"
        key_role = "id"
        fields = {"id": "id", "question": "question", "answer": "answer", "image": "image"}

        def convert(self, row):
            if row.values["question"] == "boom":
                raise RuntimeError("kaboom")
            return {"question": row.values["question"], "answer": row.values["answer"], "qtype": "short"}

    monkeypatch.setitem(ADAPTERS, "flaky", Flaky)
    feats = Features({"id": S, "question": S, "answer": S, "image": Image()})
    img = hub.img(hub.png())
    rows = [{"id": "a", "question": "ok?", "answer": "yes", "image": img},
            {"id": "b", "question": "boom", "answer": "x", "image": img},
            {"id": "a", "question": "again?", "answer": "no", "image": img},
            {"id": "c", "question": "empty answer?", "answer": " ", "image": img}]
    repo = hub.repo("flaky", {"default": {"test": rows}}, feats)
    report = LoadReport()
    recs = list(load(SourceConfig(name="flaky", local_path=str(repo), cache_dir=str(hub.cache_dir)),
                     hub.image_dir, report))
    assert [r.id for r in recs] == ["flaky_test_a"]
    assert report.reasons == {"error": 1, "duplicate_id": 1, "invalid_record": 1}
    assert any("RuntimeError: kaboom" in m for m in report.messages)
    assert any("missing answer" in m for m in report.messages)


def test_default_config_follows_the_hub_id(hub, monkeypatch):
    seen = []

    def fake_load(path, name=None, **kw):
        seen.append((path, name))
        raise ValueError("stop here")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    for kw in ({}, {"hub_id": "derek-thomas/ScienceQA"}, {"hub_id": "derek-thomas/ScienceQA", "config": "x"}):
        with pytest.raises(SourceError, match="stop here"):
            hub.load(name="scienceqa", **kw)
    assert seen == [("lmms-lab/ScienceQA", "ScienceQA-IMG"), ("derek-thomas/ScienceQA", None),
                    ("derek-thomas/ScienceQA", "x")]
