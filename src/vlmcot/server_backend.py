"""Generation over HTTP from vLLM OpenAI-compatible servers (``vllm serve MODEL``): ``backend: server``.

vLLM pins its own torch and transformers, which cannot share this project's environment (docs/gpu.md);
a server in its own environment (``make vllm-env``) sidesteps the clash: the stages stay in the
project's ``python`` and talk to it over chat completions. Same ``GenerationBackend`` interface as
:class:`~vlmcot.generation.HFBackend`. Each request is one chat completion: the image as a base64
data URL, the prompt text after it (the order of :func:`~vlmcot.generation.user_message`), ``n`` =
num_return_sequences, temperature / top_p / max_tokens, and a seed derived from (generation seed,
request id) only. Requests are spread round-robin over ``urls`` and run concurrently; outputs come
back in request order; a request the server rejects (HTTP 400) is logged and gives empty texts (it
counts as an extraction failure), unless every request of a call is rejected. Because a request's draws depend on nothing but its own content and seed,
the output does not depend on how many servers share the work, or in what order they answer.
Generated-token counts come from the per-token ``logprobs`` the request asks for.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from vlmcot.config import StrictModel
from vlmcot.generation import GenerationConfig, GenOutput, GenRequest
from vlmcot.vllm_backend import sampling_kwargs

log = logging.getLogger(__name__)
# the HTTP client logs every request at INFO: 100k lines for one paper-scale sample stage
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class ServerConfig(StrictModel):
    # base URLs of the servers (each `vllm serve MODEL --port P` serves http://HOST:P/v1); questions are
    # spread over all of them, so N servers (one per GPU or node) sample N shards concurrently
    urls: list[str] = Field(["http://127.0.0.1:8000/v1"], min_length=1)
    # model name the servers serve (None: the stage's model path, what `vllm serve <path>` registers)
    served_model: str | None = None
    # requests in flight per server (vLLM batches them itself)
    max_concurrency: int = Field(16, ge=1)
    # seconds one request may take (n long samples of an 8B model can take minutes)
    timeout_s: float = Field(600.0, gt=0)
    # retries of a failed request (connection errors, 429, 5xx), with backoff
    max_retries: int = Field(5, ge=0)
    # environment variable holding the servers' API key (`vllm serve --api-key`); unset: no key
    api_key_env: str = "VLLM_API_KEY"
    # shell command starting one server per url on this machine (null: the servers are already up);
    # {model} (the stage's model), {port} (the url's) and {index} (0..N-1: CUDA_VISIBLE_DEVICES={index})
    # are filled in. The stage waits until each serves the model and stops them when it ends, so one
    # `dvc repro` runs every sample/evaluate item against its own model's servers
    launch: str | None = None
    # seconds a launched server may take to load its model and list it at GET /v1/models
    launch_timeout_s: float = Field(1800.0, gt=0)

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"server url {u!r} must start with http:// or https://")
        return v

    @model_validator(mode="after")
    def _launchable(self):
        if self.launch is not None:
            for u in self.urls:
                p = urlparse(u)
                if p.hostname not in ("127.0.0.1", "localhost") or p.port is None:
                    raise ValueError(f"server.launch starts servers on this machine: url {u!r} must be "
                                     "http://127.0.0.1:PORT/v1 (or localhost) with an explicit port")
        return self


def request_seed(seed: int, request_id: str) -> int:
    """A 31-bit seed private to one request: independent of its batch, server and position."""
    digest = hashlib.sha256(f"{seed}\x00{request_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def image_data_url(path: Path) -> str:
    """The image file as a data URL: the file's own bytes when PIL knows its format, else PNG."""
    from PIL import Image

    raw = path.read_bytes()
    with Image.open(io.BytesIO(raw)) as im:
        fmt = (im.format or "").lower()
        if fmt not in ("png", "jpeg", "webp", "gif"):
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
            raw, fmt = buf.getvalue(), "png"
    return f"data:image/{fmt};base64,{base64.b64encode(raw).decode('ascii')}"


def chat_messages(req: GenRequest, root: Path) -> list[dict]:
    """One user turn: the image (if any) then the prompt text, as the in-process chat template has it."""
    content: list[dict] = []
    if req.image is not None:
        p = Path(req.image)
        content.append({"type": "image_url", "image_url": {"url": image_data_url(p if p.is_absolute() else root / p)}})
    content.append({"type": "text", "text": req.prompt})
    return [{"role": "user", "content": content}]


def request_body(req: GenRequest, cfg: GenerationConfig, root: Path, model: str) -> dict:
    """The chat-completions body for one request (everything but transport)."""
    kw = sampling_kwargs(cfg.model_copy(update={"seed": request_seed(cfg.seed, req.id)}))
    body = {"model": model, "messages": chat_messages(req, root), "n": kw["n"], "max_tokens": kw["max_tokens"],
            "temperature": kw["temperature"], "seed": kw["seed"], "logprobs": True}
    if "top_p" in kw:
        body["top_p"] = kw["top_p"]
    if "top_k" in kw:
        body["top_k"] = kw["top_k"]  # a vLLM extension (-1: off), as the in-process engine gets it
    return body


def parse_reply(req: GenRequest, reply: dict, n: int) -> GenOutput:
    """A chat-completions reply -> GenOutput; a reply that is not what was asked for raises, naming the request."""
    choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
    if len(choices) != n:
        raise RuntimeError(f"request {req.id!r}: server returned {len(choices)} choices, asked for {n}")
    texts, counts = [], []
    for c in choices:
        text = (c.get("message") or {}).get("content")
        if text is None:
            raise RuntimeError(f"request {req.id!r}: choice {c.get('index')} has no content")
        lp = (c.get("logprobs") or {}).get("content")
        if lp is not None:
            counts.append(len(lp))
        elif n == 1 and (reply.get("usage") or {}).get("completion_tokens") is not None:
            counts.append(int(reply["usage"]["completion_tokens"]))
        else:
            raise RuntimeError(f"request {req.id!r}: server returned no logprobs (token counts)")
        texts.append(text.strip())
    return GenOutput(id=req.id, texts=texts, num_tokens=counts)


class ServerBackend:
    """Chat completions against one or more vLLM servers (see the module docstring)."""

    def __init__(self, model: str, cfg: ServerConfig | None = None, root: str | Path = "."):
        from openai import OpenAI

        self.cfg = cfg or ServerConfig()
        self.model = self.cfg.served_model or model
        self.root = Path(root)
        key = os.environ.get(self.cfg.api_key_env) or "EMPTY"  # vLLM without --api-key accepts any key
        self.servers = LaunchedServers(self.cfg, model, key) if self.cfg.launch else None
        self.clients = [OpenAI(base_url=u, api_key=key, timeout=self.cfg.timeout_s, max_retries=self.cfg.max_retries)
                        for u in self.cfg.urls]
        self._check_served()
        self.pools = [ThreadPoolExecutor(self.cfg.max_concurrency, thread_name_prefix=f"vllm-server-{i}")
                      for i in range(len(self.clients))]

    def _check_served(self) -> None:
        """Fail before any work when a server is down or serves another model (one server, one model)."""
        import openai

        for url, client in zip(self.cfg.urls, self.clients):
            try:
                served = [m.id for m in client.models.list()]
            except openai.APIConnectionError as e:
                raise ConnectionError(f"no vLLM server at {url} ({e}); start one: `vllm serve {self.model}` "
                                      "in the vLLM environment (docs/gpu.md)") from None
            if self.model not in served:
                raise ConnectionError(f"the server at {url} serves {served}, not {self.model!r}: restart it as "
                                      f"`vllm serve {self.model}` or set server.served_model (docs/gpu.md)")

    def _one(self, server: int, req: GenRequest, cfg: GenerationConfig) -> GenOutput:
        body = request_body(req, cfg, self.root, self.model)
        extra = {k: body.pop(k) for k in ("top_k",) if k in body}
        reply = self.clients[server].chat.completions.create(**body, extra_body=extra or None)
        return parse_reply(req, reply.model_dump(), cfg.num_return_sequences)

    def _one_or_empty(self, server: int, req: GenRequest, cfg: GenerationConfig) -> tuple[GenOutput, str | None]:
        """A request the server rejects as bad (HTTP 400, e.g. a prompt over max_model_len) gives empty
        texts, so one bad record does not stop a long run; transport errors and 5xx (after retries) raise."""
        import openai

        try:
            return self._one(server, req, cfg), None
        except openai.BadRequestError as e:
            n = cfg.num_return_sequences
            return GenOutput(id=req.id, texts=[""] * n, num_tokens=[0] * n), f"{self.cfg.urls[server]}: {e}"

    def generate(self, requests: list[GenRequest], cfg: GenerationConfig) -> list[GenOutput]:
        futures = [self.pools[i % len(self.pools)].submit(self._one_or_empty, i % len(self.pools), r, cfg)
                   for i, r in enumerate(requests)]
        results = [f.result() for f in futures]  # request order; the first hard failure propagates
        bad = [(r.id, err) for r, (_, err) in zip(requests, results) if err is not None]
        if bad and len(bad) == len(requests):  # not one record's problem: the settings or the server
            raise RuntimeError(f"the server rejected all {len(bad)} requests; first ({bad[0][0]!r}): {bad[0][1]}")
        for rid, err in bad:
            log.warning("request %r rejected, recorded as empty responses: %s", rid, err)
        return [out for out, _ in results]

    def close(self) -> None:
        for p in self.pools:
            p.shutdown(wait=False, cancel_futures=True)
        if self.servers is not None:
            self.servers.stop()


class LaunchedServers:
    """The servers ``server.launch`` starts, one per url: ready (listing the model) when built, stopped
    by :meth:`stop` or when this process exits. Each one's output goes to a log file named on failure."""

    def __init__(self, cfg: ServerConfig, model: str, key: str):
        import atexit
        import subprocess
        import tempfile

        self.procs: list[tuple[subprocess.Popen, Path]] = []
        atexit.register(self.stop)
        served = cfg.served_model or model
        for i, url in enumerate(cfg.urls):
            cmd = cfg.launch.replace("{model}", model).replace("{port}", str(urlparse(url).port))
            cmd = cmd.replace("{index}", str(i))
            logf = Path(tempfile.mkstemp(prefix=f"vlmcot-server-{i}-", suffix=".log")[1])
            log.info("starting server %d: %s (log %s)", i, cmd, logf)
            with open(logf, "wb") as out:  # the child keeps its own handle
                proc = subprocess.Popen(cmd, shell=True, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # its own process group: stop() ends all of it
            self.procs.append((proc, logf))
        for (proc, logf), url in zip(self.procs, cfg.urls):
            self._wait(proc, logf, url, served, key, cfg.launch_timeout_s)

    @staticmethod
    def _wait(proc, logf: Path, url: str, served: str, key: str, timeout_s: float) -> None:
        import json
        import time
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = logf.read_text(errors="replace")[-2000:]
                raise ConnectionError(f"server.launch: the server for {url} exited ({proc.returncode}) before "
                                      f"serving {served!r}; its log ({logf}) ends:\n{tail}")
            try:
                req = urllib.request.Request(url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    if served in [m["id"] for m in json.load(r).get("data", [])]:
                        log.info("server %s serves %s", url, served)
                        return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise ConnectionError(f"server.launch: {url} did not serve {served!r} within {timeout_s:.0f} s "
                                      f"(server.launch_timeout_s); log: {logf}")
            time.sleep(0.5)

    def stop(self) -> None:
        import signal
        import subprocess

        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []
