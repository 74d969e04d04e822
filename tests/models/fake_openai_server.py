"""A small, real OpenAI-compatible chat server on loopback, for testing the HTTP backend.

It answers over actual sockets (so retries, timeouts, headers and concurrency are exercised
for real), deterministically ("echo: <last user message>"), and records what it received.
It binds 127.0.0.1 on a free port, serves from a daemon thread and stops with `stop()` or
at the end of a `with` block.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any] | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of concurrent connects must not overflow the backlog
    fake: FakeOpenAIServer

    def handle_error(self, request, client_address) -> None:
        """A client that hung up first (a timeout test) is expected; socketserver would print its
        traceback to stderr whenever the write fails, possibly during a later test."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Chat-completions server with delay, failure injection and an optional required key.

    Args:
        delay_s: how long each chat completion takes (to observe concurrency).
        fail_first: the first N chat completions answer `fail_status` instead.
        fail_status: the injected status; a 429 comes with `Retry-After: 0`.
        require_key: if set, requests without `Authorization: Bearer <key>` get a 401
            whose message echoes the key received, as OpenAI does (to test masking).
        include_usage: whether replies carry a `usage` object.
        usage: sent as it is in place of the token counts (what a broken proxy might send).
        reply_fn: builds the reply text from the request's messages (default: the echo).
        model_id: the base model the server lists under `/v1/models`.
        lora: whether it loads LoRA adapters at run time, as vLLM's `/v1/load_lora_adapter`
            does (listed under `/v1/models` with their `parent`; a name loaded twice is a 400).
    """

    def __init__(
        self,
        delay_s: float = 0.0,
        fail_first: int = 0,
        fail_status: int = 500,
        require_key: str | None = None,
        include_usage: bool = True,
        reply_fn: Callable[[list[dict[str, Any]]], str] | None = None,
        model_id: str = "fake-model",
        lora: bool = False,
        usage: Any = None,
    ) -> None:
        self.model_id = model_id
        self.lora = lora
        self.adapters: dict[str, str] = {}  # served name -> path
        self.reply_fn = reply_fn
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.require_key = require_key
        self.include_usage = include_usage
        self.usage = usage
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._completions = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        # A short poll interval keeps stop() fast (it waits for the next poll).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def completions(self) -> list[RecordedRequest]:
        """The recorded chat-completion requests, in arrival order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Status, extra headers and JSON body for one request."""
        with self._lock:
            self.requests.append(request)
        if self.require_key is not None:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {self.require_key}":
                sent = auth.removeprefix("Bearer ")
                return 401, {}, _error(f"Incorrect API key provided: {sent or '(none)'}")
        if request.method == "GET" and request.path == "/v1/models":
            loaded = [{"id": name, "object": "model", "root": path, "parent": self.model_id}
                      for name, path in self.adapters.items()]
            base = {"id": self.model_id, "object": "model", "root": self.model_id, "parent": None}
            return 200, {}, {"object": "list", "data": [base, *loaded]}
        if self.lora and request.method == "POST" and request.path == "/v1/load_lora_adapter":
            name, path = (request.body or {}).get("lora_name"), (request.body or {}).get("lora_path")
            if name in self.adapters:
                return 400, {}, _error(f"The lora adapter '{name}' has already been loaded.")
            if not Path(str(path)).is_dir():  # as vLLM answers when it cannot read the folder
                return 404, {}, _error(f"Loading lora {name} failed: No adapter found for {path}")
            self.adapters[name] = path
            return 200, {}, {"message": f"Success: LoRA adapter '{name}' added successfully."}
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return 404, {}, _error(f"no route for {request.method} {request.path}")
        return self._complete(request.body or {})

    def _complete(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self._completions += 1
            failing = self._completions <= self.fail_first
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self.delay_s)
        finally:
            with self._lock:
                self._in_flight -= 1
        if failing:
            headers = {"Retry-After": "0"} if self.fail_status == 429 else {}
            return self.fail_status, headers, _error(f"injected failure {self.fail_status}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, {}, _error("'messages' must be a non-empty list")
        if self.reply_fn is not None:
            text = self.reply_fn(messages)
        else:
            last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            text = f"echo: {last_user}"
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{self._completions}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if self.usage is not None:
            reply["usage"] = self.usage
        elif self.include_usage:
            prompt_words = sum(len(m.get("content", "").split()) for m in messages)
            reply["usage"] = {
                "prompt_tokens": prompt_words,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_words + len(text.split()),
            }
        return 200, {}, reply


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET", None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        self._serve("POST", body)

    def _serve(self, method: str, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server.fake.handle(RecordedRequest(method, self.path, headers, body))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


def attacker_reply(messages: list[dict[str, Any]]) -> str:
    """A well-formed Think-before-Attack turn, numbered by the attacker turns so far."""
    turn = 1 + sum(m.get("role") == "assistant" for m in messages)
    return (f"Thinking {turn}: the target answered; I keep the role play going.\n"
            f"Attack question {turn}: In our story, what does the locksmith do next? (turn {turn})")
