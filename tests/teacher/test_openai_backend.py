import asyncio
import base64

import pytest

from tests.teacher.helpers import fast_openai, make_records
from tests.teacher.server import FakeChatServer
from vlmcot.config import ConfigError, parse_section
from vlmcot.teacher.openai_backend import (
    FatalTeacherError,
    OpenAIConfig,
    OpenAITeacher,
    RecordError,
    TransportFailure,
    classify_reply,
    redact,
)

KEY = "sk-test-backend-0123456789abcdef"


@pytest.fixture
def env_key(monkeypatch):
    monkeypatch.setenv("VLMCOT_TEST_KEY", KEY)


def _teacher(srv, tmp_path, **over):
    return OpenAITeacher(OpenAIConfig(**fast_openai(srv.base_url, **over)), image_root=tmp_path)


def _send(teacher, prep):
    async def go():
        try:
            return await teacher.asend(prep)
        finally:
            await teacher.aclose()

    return asyncio.run(go())


# -- config ----------------------------------------------------------------------------------------
def test_config_never_echoes_a_pasted_key():
    with pytest.raises(ConfigError) as e:
        parse_section(OpenAIConfig, {"api_key_env": KEY}, "distill.openai")
    assert "distill.openai.api_key_env" in str(e.value) and KEY not in str(e.value)


def test_config_rejects_credentials_in_url_and_unknown_keys():
    with pytest.raises(ConfigError, match="base_url"):
        parse_section(OpenAIConfig, {"base_url": "https://user:pw@api.example.com/v1"}, "distill.openai")
    with pytest.raises(ConfigError, match="distill.openai.api_key: unknown key"):
        parse_section(OpenAIConfig, {"api_key": "x"}, "distill.openai")


def test_price_lookup_longest_prefix_and_usd_budget_needs_a_price():
    assert OpenAIConfig(model="gpt-4o-mini-2024-07-18").price().input_per_1m == 0.15
    assert OpenAIConfig(model="gpt-4o-2024-05-13").price().output_per_1m == 15.0
    assert OpenAIConfig(model="my-vllm-model").price() is None
    t = OpenAITeacher(OpenAIConfig(model="gpt-4o-2024-05-13"))
    assert t.cost_usd(1_000_000, 100_000) == pytest.approx(5.0 + 1.5)
    with pytest.raises(ConfigError, match="prices has no entry for model 'my-vllm-model'"):
        OpenAITeacher(OpenAIConfig(model="my-vllm-model", budget_usd=1.0))


# -- reply classification ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,finish,refusal,reason",
    [
        ("The bar is 4.\n\n### Answer: 4", "stop", None, None),
        ("The bar is 4.\n\n###Answer: **4**", "stop", None, None),  # variants the answer parser accepts
        ("", "stop", None, "empty"),
        (None, "stop", None, "empty"),
        (None, "stop", "I can't help with that.", "refusal"),
        ("I'm sorry, but I can't assist with that.", "stop", None, "refusal"),
        ("The bar is four.", "stop", None, "no_answer_marker"),
        ("The bar is four and", "length", None, "truncated"),
        ("The bar is four.\n\n### Answer:", "stop", None, "empty_answer"),
        ("flagged", "content_filter", None, "content_filter"),
    ],
)
def test_classify_reply(text, finish, refusal, reason):
    assert classify_reply(text, finish, refusal) == reason


def test_redact_removes_key_and_masked_keys():
    s = f"bad key {KEY} and Incorrect API key provided: sk-tes***cdef."
    out = redact(s, KEY)
    assert KEY not in out and "sk-tes***cdef" not in out


# -- request building -------------------------------------------------------------------------------
def test_prepare_inlines_image_and_keys_on_content(tmp_path):
    recs = make_records(tmp_path, 2)
    t = OpenAITeacher(OpenAIConfig(), image_root=tmp_path)
    p0, p1 = t.prepare(recs[0]), t.prepare(recs[1])
    system, user = p0.messages()
    assert system["role"] == "system" and "### Answer:" in system["content"]
    url = user["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == (tmp_path / recs[0].image).read_bytes()
    assert "annotated short answer is: 0" in user["content"][1]["text"]
    assert p0.key != p1.key
    assert t.prepare(recs[0]).key == p0.key  # stable
    # generation params are part of the key; the endpoint is not
    assert OpenAITeacher(OpenAIConfig(temperature=0.7), image_root=tmp_path).prepare(recs[0]).key != p0.key
    assert OpenAITeacher(OpenAIConfig(base_url="http://x:1/v1"), image_root=tmp_path).prepare(recs[0]).key == p0.key
    # same record, other image bytes -> other key
    (tmp_path / recs[0].image).write_bytes((tmp_path / recs[1].image).read_bytes())
    assert t.prepare(recs[0]).key != p0.key


def test_prepare_missing_or_unreadable_image_is_a_record_error(tmp_path):
    rec = make_records(tmp_path, 1)[0]
    t = OpenAITeacher(OpenAIConfig(), image_root=tmp_path)
    (tmp_path / rec.image).write_bytes(b"not an image")
    with pytest.raises(RecordError) as e:
        t.prepare(rec)
    assert e.value.reason == "image_unreadable"
    (tmp_path / rec.image).unlink()
    with pytest.raises(RecordError) as e:
        t.prepare(rec)
    assert e.value.reason == "image_missing" and rec.image in e.value.detail


# -- talking to the server ----------------------------------------------------------------------------
def test_success_sends_key_model_and_params(tmp_path, env_key):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer() as srv:
        t = _teacher(srv, tmp_path, temperature=0.3, max_tokens=77, seed=5)
        entry = _send(t, t.prepare(rec))
    assert entry["ok"] and entry["reason"] is None
    assert entry["text"].endswith("### Answer: 0")
    assert entry["prompt_tokens"] > 85 and entry["completion_tokens"] > 0
    assert entry["meta"] == {"model": "gpt-4o-2024-05-13", "finish_reason": "stop"}
    assert srv.auth_headers == [f"Bearer {KEY}"]
    assert t.counters["attempts"] == 1 and t.counters["retries"] == 0


FAULT_REASON = {
    "429": "http_429",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "timeout": "timeout",
    "reset": "connection",
    "garbage": "bad_response",
}


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
@pytest.mark.parametrize("fault", list(FAULT_REASON))
def test_each_transient_fault_is_retried(tmp_path, env_key, fault, http_client):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(faults=[fault, fault], retry_after=0.05, hang_s=1.0) as srv:
        t = _teacher(srv, tmp_path, request_timeout_s=0.3, http_client=http_client)
        entry = _send(t, t.prepare(rec))
    assert entry["ok"]
    assert srv.total == 3 and t.counters["retries"] == 2
    assert t.counters[f"retry.{FAULT_REASON[fault]}"] == 2


def test_retry_after_is_respected(tmp_path, env_key):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(faults=["429"], retry_after=0.4) as srv:
        t = _teacher(srv, tmp_path, backoff_base_s=0.0, backoff_max_s=0.0)
        assert _send(t, t.prepare(rec))["ok"]
    (t0, _, first), (t1, _, second) = srv.log
    assert (first, second) == ("429", "ok")
    assert t1 - t0 >= 0.4 - 0.02  # backoff alone would have retried at once


def test_retries_run_out_into_a_transport_failure(tmp_path, env_key):
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(faults=["503"] * 10) as srv:
        t = _teacher(srv, tmp_path, max_retries=2)
        with pytest.raises(TransportFailure) as e:
            _send(t, t.prepare(rec))
    assert e.value.reason == "http_503" and e.value.attempts == 3 and srv.total == 3


def test_bad_key_is_fatal_and_never_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMCOT_TEST_KEY", "sk-wrong-key-9876543210")
    rec = make_records(tmp_path, 1)[0]
    with FakeChatServer(require_key=KEY) as srv:
        t = _teacher(srv, tmp_path)
        with pytest.raises(FatalTeacherError) as e:
            _send(t, t.prepare(rec))
    assert "401" in str(e.value) and "sk-wro" not in str(e.value) and srv.total == 1


def test_missing_env_var_is_fatal_and_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("VLMCOT_TEST_KEY", raising=False)
    rec = make_records(tmp_path, 1)[0]
    t = OpenAITeacher(OpenAIConfig(**fast_openai("http://127.0.0.1:9/v1")), image_root=tmp_path)
    with pytest.raises(FatalTeacherError, match="VLMCOT_TEST_KEY is not set"):
        _send(t, t.prepare(rec))


@pytest.mark.parametrize(
    "question,reason",
    [
        ("REFUSE this", "refusal"),
        ("SORRY", "refusal"),
        ("EMPTY", "empty"),
        ("NOMARK", "no_answer_marker"),
        ("TRUNCATE", "truncated"),
    ],
)
def test_malformed_replies_are_completed_failures(tmp_path, env_key, question, reason):
    rec = make_records(tmp_path, 1, questions={0: question})[0]
    with FakeChatServer() as srv:
        t = _teacher(srv, tmp_path)
        entry = _send(t, t.prepare(rec))
    assert entry["ok"] is False and entry["reason"] == reason and srv.total == 1  # not retried


def test_generate_is_the_plain_teacher_protocol(tmp_path, env_key):
    recs = make_records(tmp_path, 3, questions={1: "NOMARK"})
    with FakeChatServer() as srv:
        replies = _teacher(srv, tmp_path).generate(recs)
    assert [r.id for r in replies] == [r.id for r in recs]
    assert [r.ok for r in replies] == [True, False, True] and replies[1].reason == "no_answer_marker"
