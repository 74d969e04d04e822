"""Chat backend for any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, ...).

A red-teaming run sends thousands of short, independent requests, so the whole batch goes
out concurrently over one `httpx.AsyncClient`, bounded by a semaphore so that a local server
is not flooded. Transient failures (connection errors, timeouts, 429, 5xx) are retried with
exponential backoff; anything the user must fix (bad URL, wrong key, unknown model) becomes
a one-line `MtsaError`. The API key is read once from an environment variable and never
appears in `repr`, `name`, logs or error messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx

from mtsa.errors import MtsaError
from mtsa.models.base import Conversation, Reply, SamplingParams
from mtsa.models.context import truncate_oldest

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
"""Statuses worth retrying: overload and rate limits pass; a 4xx like 400/401/404 does not."""
MAX_BACKOFF_S = 30.0
"""Longest wait between two attempts, whatever the backoff or the server's Retry-After says."""
CHECK_TIMEOUT_S = 5.0
"""`check_reachable` must fail fast: it runs before a long job starts."""
MESSAGE_OVERHEAD_TOKENS = 4
"""Chat templates add a few tokens per message (role markers, separators)."""
SNIPPET_CHARS = 200


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token): we cannot see the server's tokenizer."""
    return (len(text) + 3) // 4


def estimate_prompt_tokens(conversation: Conversation) -> int:
    """Rough token count of a whole conversation as the server will see it."""
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in conversation)


class OpenAIChatModel:
    """A model served behind `POST {base_url}/chat/completions`.

    Args:
        model: the model name the server expects (the `model` field of each request).
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (a trailing slash is fine).
        api_key_env: environment variable holding the API key, read once here. If it is
            unset or empty no `Authorization` header is sent, which suits local servers.
        concurrency: most requests in flight at once.
        timeout_s: per-request timeout (connect, read, write) in seconds.
        max_retries: extra attempts after a connection error, timeout, 429 or 5xx.
        context_tokens: the model's context window; if given, the oldest turns of a long
            conversation are dropped so that prompt + `max_new_tokens` fit (estimated at
            4 characters per token, since the server's tokenizer is unknown here).
        retry_backoff_s: first backoff delay; it doubles per retry (with jitter), capped
            at `MAX_BACKOFF_S`. A server's Retry-After header takes precedence.
    """

    # Servers disagree on a final assistant message (vLLM needs `continue_final_message`,
    # OpenAI starts a new message), so this backend does not promise to continue one.
    can_prefill = False

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        context_tokens: int | None = None,
        retry_backoff_s: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise MtsaError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise MtsaError(f"max_retries must be at least 0, got {max_retries}")
        # Checked here: httpx would report it per request, and the retries would hide it.
        check_url(base_url, "the server URL")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.context_tokens = context_tokens
        self.retry_backoff_s = retry_backoff_s
        self.name = f"openai:{model}@{self.base_url}"
        self._api_key = read_api_key(api_key_env)

    def __repr__(self) -> str:
        # Spelled out so that no future attribute (the key above all) slips into logs.
        return (
            f"OpenAIChatModel(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"
        )

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Reply]:
        """Return one reply per conversation, in order; requests run concurrently.

        Callable from plain sync code and from inside a running event loop (e.g. a
        notebook): `asyncio.run` cannot nest, so there the batch runs on a worker thread.
        """
        if not conversations:
            return []
        batch = [self._fit(list(c), params) for c in conversations]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate_batch(batch, params))
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._generate_batch(batch, params)).result()

    def check_reachable(self) -> None:
        """Fail fast, before a long job, if the server is down or rejects the key.

        Some servers lack `/models`, so HTTP errors other than 401/403 are ignored.
        """
        url = f"{self.base_url}/models"
        try:
            response = httpx.get(url, headers=self._headers(), timeout=CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise MtsaError(f"cannot reach the OpenAI-compatible server at {self.base_url}: "
                            f"{self._describe(exc)}") from None
        if response.status_code in (401, 403):
            raise MtsaError(self._auth_message(response.status_code))

    def _fit(self, conversation: Conversation, params: SamplingParams) -> Conversation:
        """Trim the conversation to the context window, if one was given."""
        if self.context_tokens is None:
            return conversation
        budget = self.context_tokens - params.max_new_tokens
        return truncate_oldest(conversation, lambda c: estimate_prompt_tokens(c) <= budget, self.name)

    async def _generate_batch(self, batch: list[Conversation], params: SamplingParams) -> list[Reply]:
        """Send every conversation, at most `concurrency` at a time; cancel the rest on failure."""
        semaphore = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(headers=self._headers(), timeout=self.timeout_s, limits=limits) as client:

            async def one(conversation: Conversation, row: SamplingParams) -> Reply:
                async with semaphore:
                    return await self._complete(client, conversation, row)

            tasks = [asyncio.ensure_future(one(c, params.rows([i]))) for i, c in enumerate(batch)]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _complete(self, client: httpx.AsyncClient, conversation: Conversation, params: SamplingParams) -> Reply:
        """One chat completion (`params` of a one-row batch), retried on transient failures."""
        seed = params.seed_for(0)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": conversation,
            "temperature": params.temperature_for(0),
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = list(params.stop)
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                response = await client.post(url, json=body)
            except httpx.TransportError as exc:  # connection errors and timeouts
                failure = self._describe(exc)
            else:
                if response.is_success:
                    return self._parse(response, conversation)
                status, snippet = response.status_code, self._snippet(response)
                failure = f"HTTP {status}: {snippet}"
                if status in (401, 403):
                    raise MtsaError(f"{self._auth_message(status)}: {snippet}")
                if status not in RETRYABLE_STATUS:
                    raise MtsaError(f"the OpenAI-compatible server at {self.base_url} answered {failure}")
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt == self.max_retries:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            log.info("%s: %s; retry %d/%d in %.1f s", self.name, failure, attempt + 1, self.max_retries, delay)
            await asyncio.sleep(delay)
        attempts = f"{self.max_retries + 1} attempts" if self.max_retries else "1 attempt"
        raise MtsaError(f"the OpenAI-compatible server at {self.base_url} failed after {attempts}: {failure}")

    def _parse(self, response: httpx.Response, conversation: Conversation) -> Reply:
        """Read the reply text and token usage (estimated when the server omits usage)."""
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
            if not isinstance(text, str):
                raise TypeError("the message content is not text")
        except (ValueError, KeyError, IndexError, TypeError):
            raise MtsaError(
                f"unexpected response from the OpenAI-compatible server at {self.base_url}: {self._snippet(response)}"
            ) from None
        # JSON may carry a lone surrogate ("\ud800"), which no UTF-8 file can hold: written as is,
        # it would stop the run at its next append.
        text = text.encode("utf-8", "replace").decode("utf-8")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Reply(  # token counts a server leaves out, or sends as something else, are estimated
            text=text,
            prompt_tokens=prompt_tokens if is_count(prompt_tokens) else estimate_prompt_tokens(conversation),
            completion_tokens=completion_tokens if is_count(completion_tokens) else estimate_tokens(text),
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential delay with jitter, so that parallel requests do not retry in lockstep."""
        return min(MAX_BACKOFF_S, self.retry_backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

    def _headers(self) -> dict[str, str]:
        return auth_headers(self._api_key)

    def _auth_message(self, status: int) -> str:
        if self._api_key:
            return f"the server at {self.base_url} rejected the API key from ${self.api_key_env} (HTTP {status})"
        return f"the server at {self.base_url} requires an API key (HTTP {status}); set ${self.api_key_env}"

    def _snippet(self, response: httpx.Response) -> str:
        """The server's error message, shortened to one line, the key masked (some servers echo it)."""
        try:
            error = response.json().get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = None
        return self._one_line(str(message) if message else response.text or "(empty body)")

    def _describe(self, exc: Exception) -> str:
        """A one-line reason for a transport error (some httpx timeouts have an empty message)."""
        return self._one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _one_line(self, text: str) -> str:
        return server_message(text, self._api_key)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The bearer-token header, or none for a server that needs no key (a local one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def server_message(text: str, api_key: str | None) -> str:
    """A server's message, shortened to one line, the API key masked (some servers echo it)."""
    text = mask_key(" ".join(text.split()), api_key)
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 3] + "..."


def check_url(url: str, what: str) -> None:
    """A one-line error now for a URL no request could be sent to."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise MtsaError(f"{what} {url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise MtsaError(f"{what} must start with http:// or https:// and name a host, got {url!r}")


def read_api_key(env: str) -> str | None:
    """The API key in `$env`, without the spaces or newline a paste leaves around it (a header
    holding a newline is refused by httpx with the key in its message). A key that is not
    printable ASCII cannot be sent in a header at all: said here, without the key."""
    key = (os.environ.get(env) or "").strip()
    if key and not (key.isascii() and key.isprintable()):
        raise MtsaError(f"the API key in ${env} holds characters an HTTP header cannot carry (a pasted quote?)")
    return key or None


def mask_key(text: str, key: str | None) -> str:
    """`text` with the API key masked, also in the JSON-escaped forms a server may echo it in."""
    if key:
        for form in sorted({key, json.dumps(key)[1:-1], json.dumps(key)[1:-1].replace("/", "\\/")}, key=len,
                           reverse=True):
            text = text.replace(form, "***")
    return text


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):  # "nan" parses as a float, and sleeping NaN seconds never ends
        return None
    return min(max(seconds, 0.0), MAX_BACKOFF_S)
