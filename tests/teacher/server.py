"""A local HTTP server that speaks the chat-completions protocol, standing in for a teacher service.

Tests and bench/bench_distill.py run the real distill stage against it on 127.0.0.1: no network.
It injects latency and faults, and counts requests per request body (the server-side view of a cache
key) and per question, so a test can prove that a resumed run never re-sends an answered request.

    with FakeChatServer(latency_s=0.05, faults=["429", "500", "reset"]) as srv:
        srv.base_url  # -> "http://127.0.0.1:PORT/v1"

Faults are consumed one per request in arrival order (each faulted request is retried by the client,
so the total is deterministic however requests interleave):
  "429"      HTTP 429 with Retry-After (``retry_after`` seconds; "retry-after-ms" too)
  "500", "502", "503"  server errors
  "timeout"  hold the request longer than any client timeout in the tests (``hang_s``)
  "reset"    close the TCP connection with RST, no response
  "garbage"  HTTP 200 with a body that is not JSON
  "empty_choices"  HTTP 200, a completion with ``choices: []``
  "null_content"   HTTP 200, a choice whose message has neither content nor refusal
``usage=False`` omits the ``usage`` object from every reply (some proxies and servers do).
Replies come from ``reply_fn(question_text) -> dict`` (see :func:`default_reply`): the text and, if
wanted, ``finish_reason`` / ``refusal``. The default echoes the question and answers "42", unless the
question contains a marker word (REFUSE, SORRY, EMPTY, NOMARK, TRUNCATE, ANSWER=<x>); otherwise it
answers with the annotated answer the teacher prompt carries ("42" when there is none).

A student model behind `vllm serve` is served the same way with ``choice_fn(body, k) -> dict``: it
builds choice ``k`` of ``n`` from the whole request body (sampling settings, seed, image data URLs;
raising ValueError makes an HTTP 400, as vLLM answers a prompt longer than its context),
and ``logprobs: true`` in a request adds one logprob entry per whitespace word of each choice, as
vLLM returns one per generated token (tests/test_server_backend.py).

Run standalone (the bench does, in its own process so the GIL is not shared with the client):
    python tests/teacher/server.py --latency 0.2      # prints "PORT <n>" then serves until killed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


def default_reply(question: str) -> dict:
    """Deterministic teacher behaviour keyed by marker words in the question (see module doc)."""
    if "REFUSE" in question:
        return {"text": None, "refusal": "I'm sorry, but I can't help with that."}
    if "SORRY" in question:
        return {"text": "I'm sorry, but I can't assist with that request."}
    if "EMPTY" in question:
        return {"text": ""}
    if "NOMARK" in question:
        return {"text": "The bars are tall, so the answer is probably 42."}
    if "TRUNCATE" in question:
        return {"text": "The chart shows a long story that goes on and", "finish_reason": "length"}
    # The teacher prompt carries the annotated answer; a good teacher agrees with it.
    m = re.search(r"ANSWER=(\S+)", question) or re.search(r"annotated short answer is: *(.+)", question)
    answer = m.group(1).strip() if m else "42"
    digest = hashlib.sha256(question.encode()).hexdigest()[:8]
    return {"text": f"Looking at the image ({digest}): {question.strip()[:80]}\n\n### Answer: {answer}"}


def student_choice(body: dict, k: int) -> dict:
    """Choice k of a sampled student answer: a function of the prompt, seed and k only. A question that
    lists options ("A. ...") gets one of their letters, so samples are sometimes right and sometimes
    wrong (DPO pairs exist), as from a weak SFT model; any other question gets a digit."""
    text = _user_text(body)
    digest = hashlib.sha256(f"{text}|{body.get('seed')}|{k}".encode()).hexdigest()
    letters = re.findall(r"^\(?([A-H])[.:)]", text, flags=re.M)
    n = int(digest[6:8], 16)
    answer = letters[n % len(letters)] if letters else n % 10
    return {"text": f"The bars read {digest[:6]}.\n\n### Answer: {answer}"}


def _user_text(body: dict) -> str:
    """All text parts of the user messages (the question lives there)."""
    parts = []
    for msg in body.get("messages", []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "\n".join(parts)


def _n_tokens(text: str | None) -> int:
    return len((text or "").split())


class FakeChatServer:
    """Threaded chat-completions server on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(
        self,
        latency_s: float = 0.0,
        faults: list[str] | None = None,
        reply_fn: Callable[[str], dict] = default_reply,
        retry_after: float = 0.5,
        hang_s: float = 3.0,
        require_key: str | None = None,
        port: int = 0,
        choice_fn: Callable[[dict, int], dict] | None = None,
        served_models: list[str] | None = None,
        usage: bool = True,
    ):
        self.usage = usage
        self.latency_s = latency_s
        self.faults = list(faults or [])
        self.reply_fn = reply_fn
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.require_key = require_key  # when set, other bearer tokens get 401
        self.choice_fn = choice_fn  # when set, replies carry n choices built from the body (a student server)
        self.served_models = served_models or []  # what GET /v1/models lists
        self.bodies: list[dict] = []  # parsed bodies of the requests choice_fn answered
        self.lock = threading.Lock()
        self.by_body: Counter[str] = Counter()  # every request that arrived, per body hash
        self.by_question: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()  # per question, 200 replies actually sent
        self.log: list[tuple[float, str, str]] = []  # (arrival time, question, outcome)
        self.auth_headers: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server held at once (proves the client's bound)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class(), bind_and_activate=False)
        # A deep accept backlog: the default of 5 made 64 simultaneous connects stall on SYN retries.
        self._server.request_queue_size = 256
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def total(self) -> int:
        return sum(self.by_body.values())

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def _handler_class(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
            # Headers and body go out in two writes: with Nagle on, the client's delayed ACK added
            # ~40 ms to every request (measured: 82% of the latency bound at concurrency 1).
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _error(self, status: int, message: str, code: str | None = None, headers=None) -> None:
                body = {"error": {"message": message, "type": "server_error", "code": code}}
                self._send(status, json.dumps(body).encode(), headers)

            def do_GET(self):
                if not self.path.rstrip("/").endswith("/models"):
                    self._error(404, f"no route {self.path}")
                    return
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "vllm"} for m in srv.served_models]
                self._send(200, json.dumps({"object": "list", "data": data}).encode())

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.time()
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._error(400, "request body is not JSON")
                    return
                question = _user_text(body)
                with srv.lock:
                    srv.in_flight += 1
                    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                try:
                    self._handle(raw, body, question, arrived)
                finally:
                    with srv.lock:
                        srv.in_flight -= 1

            def _handle(self, raw: bytes, body: dict, question: str, arrived: float) -> None:
                with srv.lock:
                    srv.by_body[hashlib.sha256(raw).hexdigest()] += 1
                    srv.by_question[question] += 1
                    srv.auth_headers.append(self.headers.get("Authorization", ""))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._error(404, f"no route {self.path}")
                    return
                auth = self.headers.get("Authorization", "")
                if srv.require_key is not None and auth != f"Bearer {srv.require_key}":
                    # As OpenAI does: the message echoes a masked key (the client must not persist it).
                    given = auth.removeprefix("Bearer ")
                    masked = f"{given[:6]}***{given[-4:]}" if len(given) > 10 else given
                    self._error(401, f"Incorrect API key provided: {masked}.", "invalid_api_key")
                    return
                if srv.latency_s:
                    time.sleep(srv.latency_s)
                fault = srv._next_fault()
                with srv.lock:
                    srv.log.append((arrived, question, fault or "ok"))
                if fault == "429":
                    hdrs = {"Retry-After": f"{srv.retry_after:g}", "retry-after-ms": str(int(srv.retry_after * 1000))}
                    self._error(429, "Rate limit reached, retry later.", "rate_limit_exceeded", hdrs)
                elif fault in ("500", "502", "503"):
                    self._error(int(fault), "The server had an error while processing your request.")
                elif fault == "timeout":
                    time.sleep(srv.hang_s)
                    self._error(504, "too late")
                elif fault == "reset":
                    # SO_LINGER 0: close() sends RST, the client sees a connection reset.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                elif fault == "garbage":
                    self._send(200, b"<html>bad gateway</html>")
                elif fault in ("empty_choices", "null_content"):
                    choices = [] if fault == "empty_choices" else [
                        {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}
                    ]
                    payload = {"id": "x", "object": "chat.completion", "created": 0,
                               "model": body.get("model", "fake"), "choices": choices}
                    self._send(200, json.dumps(payload).encode())
                else:
                    self._reply(body, question)

            def _reply(self, body: dict, question: str) -> None:
                if srv.choice_fn is not None:
                    self._reply_choices(body, question)
                    return
                r = srv.reply_fn(question)
                text = r.get("text")
                message = {"role": "assistant", "content": text, "refusal": r.get("refusal")}
                # whitespace words of the whole prompt + a fixed image cost (gpt-4o bills a low-detail image as 85)
                prompt_tokens = sum(_n_tokens(json.dumps(m.get("content"))) for m in body.get("messages", [])) + 85
                payload = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "message": message, "finish_reason": r.get("finish_reason", "stop")}],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": _n_tokens(text or r.get("refusal")),
                        "total_tokens": prompt_tokens + _n_tokens(text or r.get("refusal")),
                    },
                }
                if not srv.usage:
                    del payload["usage"]
                with srv.lock:
                    srv.answered[question] += 1
                self._send(200, json.dumps(payload).encode())

            def _reply_choices(self, body: dict, question: str) -> None:
                choices = []
                for k in range(int(body.get("n") or 1)):
                    try:
                        r = srv.choice_fn(body, k)
                    except ValueError as e:  # the student refuses the request as vLLM does a bad one
                        self._error(400, str(e), "invalid_request_error")
                        return
                    c = {"index": k, "message": {"role": "assistant", "content": r["text"]},
                         "finish_reason": r.get("finish_reason", "stop")}
                    if body.get("logprobs"):
                        c["logprobs"] = {"content": [{"token": w, "logprob": -1.0, "bytes": None, "top_logprobs": []}
                                                     for w in r["text"].split()]}
                    choices.append(c)
                completion = sum(_n_tokens(c["message"]["content"]) for c in choices)
                payload = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                           "model": body.get("model", "fake"), "choices": choices,
                           "usage": {"prompt_tokens": 1, "completion_tokens": completion, "total_tokens": 1 + completion}}
                with srv.lock:
                    srv.answered[question] += 1
                    srv.bodies.append(body)
                self._send(200, json.dumps(payload).encode())

        return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--student", metavar="MODEL", help="answer as `vllm serve MODEL` would (bench/gpu_smoke.py)")
    args = ap.parse_args(argv)
    student = {"choice_fn": student_choice, "served_models": [args.student]} if args.student else {}
    srv = FakeChatServer(latency_s=args.latency, port=args.port, **student).start()
    print(f"PORT {srv.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
