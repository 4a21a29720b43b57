"""A teacher over any OpenAI-compatible chat-completions endpoint: GPT-4o, a vLLM server, a proxy.

One request per record: the paper's teacher prompt for the record's dataset (``vlmcot.prompts``),
given the question and the annotated short answer, with the image inlined as a base64 data URL.
The official ``openai`` client (AsyncOpenAI) sends it; its own retries are off because this module
retries itself, to respect Retry-After across all workers, count attempts, and tell transient faults
(429, 5xx, timeouts, resets: retried with exponential backoff + jitter) from fatal ones (bad key,
no quota, unknown model: stop the run) and from malformed replies (no ``### Answer:``, empty,
refusal, truncated: a completed request, cached and recorded as a failure with its reason).

The API key is read from the environment variable named by ``api_key_env`` when the client is
built, and lives only inside the client object: configs, cache entries, replies, metrics and log
lines never hold it (error text is passed through :func:`redact` before it is stored or printed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator

from vlmcot.answers import extract_answer
from vlmcot.config import ConfigError, StrictModel
from vlmcot.images import ImagePolicy, ImageRejected, inspect_image, read_image
from vlmcot.prompts import teacher_messages
from vlmcot.records import VQARecord
from vlmcot.teacher.protocol import FatalTeacherError, RecordError, TeacherReply, TransportFailure, redact
from vlmcot.teacher.cache import request_key

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Refusal openings GPT-4o uses when it declines (it rarely sets message.refusal for images).
_REFUSAL = re.compile(
    r"^\s*(i['’]m sorry|i am sorry|sorry,|i can(?:no|['’])t (?:help|assist|provide|identify|determine)|"
    r"i cannot (?:help|assist|provide|identify|determine)|i['’]m unable|i am unable|i won['’]t)",
    re.IGNORECASE,
)

# Local token estimate, for endpoints that omit `usage` (the budget must still hold): OpenAI's rule
# of thumb of ~4 characters per token for English text, plus the model's image formula below.
CHARS_PER_TOKEN = 4.0
# Image prompt tokens per model family (longest prefix wins): base + per_tile x 512-px tiles at detail
# high (OpenAI's vision pricing: fit in 2048x2048, shortest side down to 768, count 512-px tiles);
# detail low is the base alone. "auto" is counted as high: an upper bound for the budget.
IMAGE_TOKENS: dict[str, tuple[int, int]] = {"": (85, 170), "gpt-4o-mini": (2833, 5667)}


def image_tokens(model: str, width: int, height: int, detail: str) -> int:
    """Prompt tokens one image costs on ``model`` (see IMAGE_TOKENS)."""
    base, per_tile = IMAGE_TOKENS[max((k for k in IMAGE_TOKENS if model.startswith(k)), key=len)]
    if detail == "low":
        return base
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        f = 2048 / max(w, h)
        w, h = w * f, h * f
    if min(w, h) > 768:
        f = 768 / min(w, h)
        w, h = w * f, h * f
    return base + per_tile * math.ceil(w / 512) * math.ceil(h / 512)


def estimate_text_tokens(text: str | None) -> int:
    return math.ceil(len(text or "") / CHARS_PER_TOKEN)


class Price(StrictModel):
    """List price of one model, USD per million tokens (check the provider's pricing page)."""

    input_per_1m: float = Field(ge=0)  # prompt tokens (images are billed as prompt tokens)
    output_per_1m: float = Field(ge=0)  # completion tokens


# OpenAI list prices (USD / 1M tokens) when this table was written; a vLLM server you run costs 0.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-2024-05-13": Price(input_per_1m=5.0, output_per_1m=15.0),
    "gpt-4o-2024-08-06": Price(input_per_1m=2.5, output_per_1m=10.0),
    "gpt-4o-2024-11-20": Price(input_per_1m=2.5, output_per_1m=10.0),
    "gpt-4o": Price(input_per_1m=2.5, output_per_1m=10.0),
    "gpt-4o-mini": Price(input_per_1m=0.15, output_per_1m=0.6),
}


class OpenAIConfig(StrictModel):
    """The ``distill.openai`` params section."""

    # model name sent to the endpoint (paper: gpt-4o-2024-05-13; a vLLM server: its --served-model-name)
    model: str = Field("gpt-4o-2024-05-13", min_length=1)
    # endpoint root, e.g. http://localhost:8000/v1 for vLLM; null: the client's default (OpenAI, or $OPENAI_BASE_URL)
    base_url: str | None = None
    # NAME of the environment variable holding the key (never the key itself)
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # requests in flight at once (throughput ~ max_concurrency / latency, until the rate limit)
    max_concurrency: int = Field(16, ge=1, le=1024)
    # seconds before one request is abandoned (and retried)
    request_timeout_s: float = Field(120.0, gt=0)
    # retries per request after the first attempt (429, 5xx, timeouts, connection resets, garbled bodies)
    max_retries: int = Field(6, ge=0)
    # backoff before retry k (k = 0, 1, ...): min(backoff_max_s, backoff_base_s * 2**k), minus jitter
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    # fraction of each backoff drawn at random (0: fixed delays; 1: "full jitter") so workers desynchronise
    jitter: float = Field(0.5, ge=0, le=1)
    # sampling temperature of the teacher [inferred: the paper does not say]
    temperature: float = Field(0.0, ge=0, le=2)
    # completion cap per request (paper's CoT answers peak near 100 tokens)
    max_tokens: int = Field(512, ge=1)
    # provider-side sampling seed (null: none sent); part of the cache key
    seed: int | None = None
    # image detail for GPT-4o ("low": 85 tokens per image; "high"/"auto": tiles, more tokens)
    image_detail: Literal["auto", "low", "high"] = "auto"
    # HTTP transport under the openai client: "aiohttp" (needs openai[aiohttp]; ~30% less CPU per
    # request than httpx here, which matters at high concurrency) or "httpx" (the client's default)
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    # a reply longer than this (characters) is recorded as failed (reply_too_long) and its text not stored
    max_reply_chars: int = Field(20_000, ge=1)
    # the longest Retry-After honoured, in seconds; a server asking more is retried after this long
    max_retry_after_s: float = Field(120.0, ge=0)
    # budget for ONE run of the stage (cached replies are free): stop sending when either is reached; null: no cap
    budget_tokens: int | None = Field(None, ge=0)
    budget_usd: float | None = Field(None, ge=0)
    # USD per 1M tokens by model name; the longest key that prefixes `model` applies
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _hide_non_names(cls, v: Any) -> Any:
        # A pasted key would otherwise be echoed in the validation error ("got 'sk-...'").
        if isinstance(v, str) and _ENV_NAME.fullmatch(v):
            return v
        return "<not a variable name; value hidden in case it is a secret>"

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, v: str | None) -> str | None:
        if v is not None:
            u = urlparse(v)
            if u.scheme not in ("http", "https") or not u.netloc:
                raise ValueError("must be an http(s) URL like http://localhost:8000/v1")
            if "@" in u.netloc:
                raise ValueError("must not embed credentials; put the key in the environment variable api_key_env")
        return v

    def price(self) -> Price | None:
        """The price entry for ``model``: exact name, else the longest prefix in the table."""
        if self.model in self.prices:
            return self.prices[self.model]
        hits = [k for k in self.prices if self.model.startswith(k)]
        return self.prices[max(hits, key=len)] if hits else None


class _Malformed(Exception):
    """A 200 reply that is not a final outcome (no choices, no message): retried like a 5xx."""


@dataclass
class Prepared:
    """One record turned into a request: its cache key, and what the messages are built from.

    The base64 data URL is built only when the request is sent (:meth:`messages`), so a resumed run
    that answers most records from the cache never encodes their images, and memory holds images
    only for the requests in flight.
    """

    key: str
    system: str
    user_text: str
    image: bytes
    mime: str
    detail: str
    width: int = 0
    height: int = 0

    def messages(self) -> list[dict]:
        url = f"data:{self.mime};base64,{base64.b64encode(self.image).decode('ascii')}"
        return [
            {"role": "system", "content": self.system},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url, "detail": self.detail}},
                    {"type": "text", "text": self.user_text},
                ],
            },
        ]


def sniff_image_mime(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, WebP or GIF bytes (what chat endpoints accept), else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def classify_reply(text: str | None, finish_reason: str | None, refusal: str | None) -> str | None:
    """None when the reply is a usable rationale, else the failure reason recorded for it.

    The marker is found by ``vlmcot.answers.extract_answer`` (the one parser the filter stage and
    the evaluation use too), so a reply counts as usable exactly when an answer can be extracted.
    """
    if refusal:
        return "refusal"
    if finish_reason == "content_filter":
        return "content_filter"
    ex = extract_answer(text)
    if ex.ok:
        return None
    if ex.reason == "empty":
        return "empty"
    if finish_reason == "length":
        return "truncated"  # raise distill.openai.max_tokens
    if ex.reason == "no_marker":
        return "refusal" if _REFUSAL.match(text or "") else "no_answer_marker"
    return "empty_answer"


def _retry_after_s(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date)."""
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(ra).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _transport_reason(exc: BaseException) -> str:
    """ "timeout" or "connection" for a failed request, from the exception's cause chain.

    The client's aiohttp transport reports every aiohttp connection error (a reset, a dropped
    connection) as a connect timeout; the chain still holds the real cause.
    """
    import openai

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 12:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(c, TimeoutError) for c in chain[1:]):
        return "timeout"
    if isinstance(exc, openai.APITimeoutError):
        from_aiohttp = any(type(c).__module__.split(".")[0] == "aiohttp" for c in chain)
        return "connection" if from_aiohttp else "timeout"
    return "connection"


def _error_code(exc: Exception) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err.get("code") or err.get("type")
    return getattr(exc, "code", None)


class OpenAITeacher:
    """Teacher backend over an OpenAI-compatible endpoint (see the module docstring).

    The distill runner uses :meth:`prepare` + :meth:`asend`; :meth:`generate` is the plain
    synchronous Teacher protocol (no cache), for notebooks and small scripts.
    """

    name = "openai"

    def __init__(
        self,
        cfg: OpenAIConfig,
        image_root: str | Path = ".",
        prompt_fn: Callable[[VQARecord], tuple[str, str]] | None = None,
        client: Any = None,
        images: ImagePolicy | None = None,
    ):
        self.cfg = cfg
        self.image_root = Path(image_root)
        self.images = images or ImagePolicy()  # confinement and size limits of every image sent
        self._usage_warned = False
        self.prompt_fn = prompt_fn or teacher_messages  # the one place the paper's teacher prompt lives
        self._client = client
        self._secret: str | None = None
        self.counters: Counter[str] = Counter()  # attempts, retries, retry.<reason>
        self._pause_until = 0.0  # shared by all workers: a 429's Retry-After holds everyone back
        self._price = cfg.price()
        if cfg.budget_usd is not None and self._price is None:
            raise ConfigError(
                f"distill.openai.budget_usd is set but distill.openai.prices has no entry for model "
                f"{cfg.model!r}: add one (USD per 1M input/output tokens) or set budget_usd: null"
            )

    # -- client -------------------------------------------------------------------------------------
    def client(self):
        if self._client is None:
            import openai

            # Quiet the per-request INFO lines of the HTTP stack (one per request would drown the log).
            for name in ("httpx", "httpx2", "openai"):
                logging.getLogger(name).setLevel(logging.WARNING)
            env = self.cfg.api_key_env
            key = os.environ.get(env)
            if not key:
                raise FatalTeacherError(
                    f"environment variable {env} is not set (distill.openai.api_key_env): export {env}=<your key>; "
                    f"for a server without auth (e.g. a local vLLM) any value works, e.g. export {env}=EMPTY"
                )
            self._secret = key
            http = None
            if self.cfg.http_client == "aiohttp":
                try:
                    http = openai.DefaultAioHttpClient(timeout=self.cfg.request_timeout_s)
                except RuntimeError:  # openai installed without its aiohttp extra
                    log.warning("distill.openai.http_client: aiohttp is not installed; using httpx")
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.cfg.base_url,
                timeout=self.cfg.request_timeout_s,
                max_retries=0,
                http_client=http,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            await self._client.close()
        self._client = None

    # -- requests -----------------------------------------------------------------------------------
    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self._price is None:
            return 0.0
        return (prompt_tokens * self._price.input_per_1m + completion_tokens * self._price.output_per_1m) / 1e6

    @property
    def has_price(self) -> bool:
        return self._price is not None

    def prepare(self, record: VQARecord) -> Prepared:
        """Build the request for one record; RecordError when that record cannot be sent.

        Reads (confined, bounded: vlmcot.images) and hashes the image, and reads its size from the
        header for the local token estimate (the runner calls this from a worker thread).
        """
        try:
            data = read_image(record.image, self.image_root, self.images)
            mime = sniff_image_mime(data)
            if mime is None:
                raise RecordError("image_unreadable", f"{record.image}: not a PNG, JPEG, WebP or GIF file")
            info = inspect_image(data, record.image, self.images, decode=False)
        except ImageRejected as e:
            raise RecordError(e.reason, str(e)) from None
        try:
            system, user_text = self.prompt_fn(record)
        except Exception as e:  # noqa: BLE001 - a prompt builder bug on one odd record must not kill the run
            raise RecordError("prompt_error", f"{type(e).__name__}: {e}") from None
        c = self.cfg
        key = request_key(
            {
                "model": c.model,
                "system": system,
                "user": user_text,
                "image_sha256": hashlib.sha256(data).hexdigest(),
                "image_mime": mime,
                "image_detail": c.image_detail,
                "temperature": c.temperature,
                "max_tokens": c.max_tokens,
                "seed": c.seed,
            }
        )
        return Prepared(key=key, system=system, user_text=user_text, image=data, mime=mime, detail=c.image_detail,
                        width=info.width, height=info.height)

    def estimate_prompt_tokens(self, prep: Prepared) -> int:
        """Local estimate: CHARS_PER_TOKEN for the text, the model's image formula for the image."""
        return estimate_text_tokens(prep.system + prep.user_text) + image_tokens(
            self.cfg.model, prep.width, prep.height, prep.detail
        )

    def _backoff(self, k: int) -> float:
        d = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2**k))
        return d * (1 - self.cfg.jitter * random.random())

    async def asend(self, prep: Prepared) -> dict:
        """Send one request with retries. Returns a cache entry for a completed request (usable or
        malformed); raises TransportFailure when retries run out, FatalTeacherError to stop the run."""
        import openai
        from openai.types.chat import ChatCompletion

        client = self.client()
        c = self.cfg
        body: dict[str, Any] = {
            "model": c.model,
            "messages": prep.messages(),
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
        }
        if c.seed is not None:
            body["seed"] = c.seed
        attempt = 0
        while True:
            wait = self._pause_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.counters["attempts"] += 1
            retry_after = None
            try:
                # = client.chat.completions.create(**body), minus the SDK's walk over the request
                # TypedDicts (for aliases plain JSON does not have): measured at 40% of the client's
                # CPU per request. client.post is the SDK's documented way to send a raw body; auth,
                # timeouts, error types and response parsing are the same.
                resp = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                return self._entry(prep, resp)
            except _Malformed as e:
                reason, detail = "bad_response", str(e)
            except openai.APIConnectionError as e:  # APITimeoutError included
                reason, detail = _transport_reason(e), f"{type(e).__name__}: {e.__cause__ or e}"
            except openai.APIStatusError as e:
                code, status = _error_code(e), e.status_code
                detail = redact(str(e.message), self._secret)
                if status in (401, 403) or code in ("insufficient_quota", "invalid_api_key"):
                    raise FatalTeacherError(f"HTTP {status} ({code or 'no code'}): {detail}") from None
                if status == 404:
                    raise FatalTeacherError(f"HTTP 404: {detail} (check distill.openai.model and base_url)") from None
                if status == 429 or status == 408 or status == 409 or status >= 500:
                    reason = f"http_{status}"
                    retry_after = _retry_after_s(e)
                else:  # 400, 413, 422 ...: this request is bad; retrying sends the same bytes
                    raise TransportFailure(f"http_{status}", detail, attempt + 1) from None
            except (ValueError, openai.APIResponseValidationError) as e:
                # a 200 whose body is not a chat completion (a proxy's HTML page, a cut stream)
                reason, detail = "bad_response", f"{type(e).__name__}: {e}"
            if attempt >= c.max_retries:
                raise TransportFailure(reason, redact(detail, self._secret)[:300], attempt + 1)
            delay = self._backoff(attempt)
            if retry_after is not None:
                if retry_after > c.max_retry_after_s:
                    log.warning(
                        "distill: the server asked to wait %.0fs (%s); waiting distill.openai.max_retry_after_s=%gs",
                        retry_after, reason, c.max_retry_after_s,
                    )
                    retry_after = c.max_retry_after_s
                # Respect the server: never retry earlier than it asked, and hold back every worker.
                delay = max(delay, retry_after)
                self._pause_until = max(self._pause_until, time.monotonic() + retry_after)
                if retry_after >= 10:
                    log.info("distill: rate limited (%s); waiting %.0fs as the server asked", reason, retry_after)
            self.counters["retries"] += 1
            self.counters[f"retry.{reason}"] += 1
            attempt += 1
            await asyncio.sleep(delay)

    def _entry(self, prep: Prepared, resp: Any) -> dict:
        """The cache entry for a completed request (deterministic fields only: no timings).

        Only final outcomes become entries: text (usable or not), a refusal, a content-filter stop.
        A body without choices, without a message, or with neither content nor refusal raises
        _Malformed, which is retried like a 5xx and never cached."""
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise _Malformed("200 reply without choices")
        msg = getattr(choices[0], "message", None)
        if msg is None:
            raise _Malformed("200 reply whose first choice has no message")
        text, finish, refusal = msg.content, choices[0].finish_reason, getattr(msg, "refusal", None)
        if text is None and not refusal and finish != "content_filter":
            raise _Malformed(f"200 reply with neither content nor refusal (finish_reason {finish!r})")
        usage = getattr(resp, "usage", None)
        meta = {"model": getattr(resp, "model", None) or self.cfg.model, "finish_reason": finish}
        if usage is None or getattr(usage, "prompt_tokens", None) is None:
            # No usage: the budget still holds, on a local estimate (warned once per run).
            pt = self.estimate_prompt_tokens(prep)
            ct = estimate_text_tokens(text or refusal)
            meta["usage_estimated"] = True
            self.counters["usage_estimated"] += 1
            if not self._usage_warned:
                self._usage_warned = True
                log.warning(
                    "distill: the endpoint returned no token usage; counting tokens locally (%g characters per "
                    "token, plus %s's image formula) so costs and the budget are estimates", CHARS_PER_TOKEN,
                    self.cfg.model,
                )
        else:
            pt = int(getattr(usage, "prompt_tokens", 0) or 0)
            ct = int(getattr(usage, "completion_tokens", 0) or 0)
        reason = classify_reply(text, finish, refusal)
        if text is not None and len(text) > self.cfg.max_reply_chars:
            # Paid for and final, but not stored: a runaway reply must not bloat the cache.
            meta["reply_chars"] = len(text)
            reason, text = "reply_too_long", None
        if refusal:
            meta["refusal"] = refusal[:300]
        return {
            "key": prep.key,
            "ok": reason is None,
            "text": text if text is not None else None,
            "reason": reason,
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "meta": meta,
        }

    # -- synchronous Teacher protocol -------------------------------------------------------------------
    def generate(self, records: list[VQARecord]) -> list[TeacherReply]:
        """One reply per record, same order, no cache (the distill stage uses the cached runner)."""
        from vlmcot.teacher.runner import run_teacher

        result = run_teacher(records, self, cache=None, progress=False)
        return [
            result.replies.get(r.id) or TeacherReply(id=r.id, text=None, ok=False, reason="not_sent") for r in records
        ]
