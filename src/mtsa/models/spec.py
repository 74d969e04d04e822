"""The model-spec syntax used by the CLI and configs. Pure parsing: nothing here loads a model.

    embedded                      the embedded SmolLM2-135M-Instruct (offline)
    embedded+ADAPTER              the embedded model with a LoRA adapter folder
    hf:PATH_OR_ID                 a transformers model: local folder or Hub id
    hf:PATH_OR_ID+ADAPTER         ... with a peft adapter (local folder or Hub id)
    openai:MODEL@BASE_URL         any OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, OpenAI)

Options follow a `?`, `&`-separated: `hf:Qwen/Qwen2.5-7B-Instruct?device=cuda&dtype=bfloat16`,
`openai:gpt-4o-mini@https://api.openai.com/v1?api_key_env=OPENAI_API_KEY&concurrency=8`.
Which options a backend takes is read from its constructor's keyword-only arguments
(`options_of`), so the list cannot drift from what the backend accepts; `registry.py` checks
them. hf options: device, dtype (auto: decided by the hardware, see dtype.py), batch_size,
max_context, trust_remote_code (off unless you say so), prefix_cache (on: a prompt prefix
shared by a whole batch is computed once, and each dialogue's keys/values are reused by its
next call), kv_reuse_mb (memory for the latter; 0 turns it off), packed_linear (on: the
linear layers' weights packed for the CPU's matrix kernels, `packed_linear.py`). openai options: api_key_env,
concurrency, timeout_s, max_retries, context_tokens, retry_backoff_s.
"""

from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass, field

from mtsa.config import base_type, type_words
from mtsa.errors import MtsaError
from mtsa.models.adapters import local_adapter
from mtsa.models.dtype import check_dtype_name

SYNTAX = "expected embedded[+ADAPTER], hf:PATH_OR_ID[+ADAPTER] or openai:MODEL@BASE_URL"
POSITIVE = ("batch_size", "concurrency", "max_context", "context_tokens")
NON_NEGATIVE = ("kv_reuse_mb", "max_retries", "timeout_s", "retry_backoff_s")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec. `options` are as written (strings) until `registry.check_model` types them."""

    kind: str  # "embedded", "hf" or "openai"
    model: str  # path / Hub id, or the served model name
    adapter: str | None = None
    base_url: str | None = None
    options: dict = field(default_factory=dict)
    text: str = ""


def parse_spec(text: str) -> ModelSpec:
    """Parse a spec's syntax; raise MtsaError naming what is wrong."""
    body, _, query = text.strip().partition("?")
    if body == "embedded" or body.startswith("embedded+"):
        kind, rest = "embedded", body[len("embedded"):]
    elif body.startswith(("hf:", "openai:")):
        kind, _, rest = body.partition(":")
    else:
        raise MtsaError(f"unknown model spec '{text}': {SYNTAX}")
    options = split_query(query)
    if kind == "openai":
        model, _, base_url = rest.partition("@")
        if not model or not base_url.startswith(("http://", "https://")):
            raise MtsaError(f"bad model spec '{text}': expected openai:MODEL@http(s)://HOST[:PORT]/v1")
        return ModelSpec("openai", model, base_url=base_url, options=options, text=text)
    if kind == "embedded":
        adapter = rest[1:] if rest.startswith("+") else None
        if rest and not adapter:
            raise MtsaError(f"bad model spec '{text}': {SYNTAX}")
        model = "embedded"
    else:
        model, _, adapter = rest.partition("+")
        if not model:
            raise MtsaError(f"bad model spec '{text}': hf: needs a local folder or a Hub id")
    if adapter:
        local_adapter(adapter)
    return ModelSpec(kind, model, adapter=adapter or None, options=options, text=text)


def split_query(query: str) -> dict[str, str]:
    """`a=1&b=x` -> {"a": "1", "b": "x"}, values as written."""
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        options[key] = value
    return options


def options_of(cls: type) -> dict[str, type]:
    """The options a backend or judge takes: its constructor's keyword-only arguments, with their
    types (`name` excluded: it is set from the spec text)."""
    hints = typing.get_type_hints(cls.__init__)
    return {p.name: base_type(hints[p.name]) for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "name"}


def _boolean(value: str) -> bool:
    """A true/false option; a misspelling is an error, not a silent false (`trust_remote_code=ture`)."""
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def typed_options(where: str, options: dict[str, str], allowed: dict[str, type]) -> dict:
    """Options converted to the types `allowed` names; an unknown key or a bad value is one line
    naming `where` (e.g. "model spec 'hf:x?batch=2'")."""
    typed: dict = {}
    for key, value in options.items():
        if key not in allowed:
            raise MtsaError(f"unknown option '{key}' in {where}; known: {', '.join(allowed)}")
        kind = allowed[key]
        if not isinstance(value, str):  # typed already (a spec checked twice)
            typed[key] = value
            continue
        try:
            typed[key] = _boolean(value) if kind is bool else kind(value)
            if kind is float and not math.isfinite(typed[key]):
                raise ValueError
        except ValueError:
            raise MtsaError(f"option '{key}' in {where} must be {type_words(kind)}") from None
    if "dtype" in typed:
        check_dtype_name(typed["dtype"], where)
    for key in POSITIVE:
        if key in typed and typed[key] < 1:
            raise MtsaError(f"option '{key}' in {where} must be >= 1")
    for key in NON_NEGATIVE:
        if key in typed and typed[key] < 0:
            raise MtsaError(f"option '{key}' in {where} must be >= 0")
    return typed
