"""The model-spec syntax used by the CLI and configs.

    embedded                      the embedded SmolLM2-135M-Instruct (offline)
    embedded+ADAPTER              the embedded model with a LoRA adapter folder
    hf:PATH_OR_ID                 a transformers model: local folder or Hub id
    hf:PATH_OR_ID+ADAPTER         ... with a peft adapter (local folder or Hub id)
    openai:MODEL@BASE_URL         any OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, OpenAI)

Options follow a `?`, `&`-separated: `hf:Qwen/Qwen2.5-7B-Instruct?device=cuda&dtype=bfloat16`,
`openai:gpt-4o-mini@https://api.openai.com/v1?api_key_env=OPENAI_API_KEY&concurrency=8`.
hf options: device, dtype (auto: decided by the hardware, see dtype.py), batch_size, max_context,
trust_remote_code (off unless you say so), prefix_cache (on: a prompt prefix shared by a whole
batch is computed once, and each dialogue's keys/values are reused by its next call),
kv_reuse_mb (512: memory for the latter; 0 turns it off).
openai options: api_key_env, concurrency, timeout_s, max_retries, context_tokens.

`parse_spec` checks a spec without loading anything, so a typo fails before a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtsa.errors import MtsaError
from mtsa.models.base import ChatModel
from mtsa.models.dtype import check_dtype_name

HF_OPTIONS = {"device": str, "dtype": str, "batch_size": int, "max_context": int, "trust_remote_code": bool,
              "prefix_cache": bool, "kv_reuse_mb": int}
OPENAI_OPTIONS = {"api_key_env": str, "concurrency": int, "timeout_s": float, "max_retries": int,
                  "context_tokens": int}
SYNTAX = "expected embedded[+ADAPTER], hf:PATH_OR_ID[+ADAPTER] or openai:MODEL@BASE_URL"


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "hf" or "openai"
    model: str  # path / Hub id, or the served model name
    adapter: str | None = None
    base_url: str | None = None
    options: dict = field(default_factory=dict)
    text: str = ""


def parse_spec(text: str) -> ModelSpec:
    """Parse and validate a model spec; raise MtsaError naming what is wrong."""
    body, _, query = text.strip().partition("?")
    if body == "embedded" or body.startswith("embedded+"):
        kind, rest = "embedded", body[len("embedded"):]
    elif body.startswith(("hf:", "openai:")):
        kind, _, rest = body.partition(":")
    else:
        raise MtsaError(f"unknown model spec '{text}': {SYNTAX}")
    options = parse_options(text, query, OPENAI_OPTIONS if kind == "openai" else HF_OPTIONS)
    if kind == "openai":
        model, _, base_url = rest.partition("@")
        if not model or not base_url.startswith(("http://", "https://")):
            raise MtsaError(f"bad model spec '{text}': expected openai:MODEL@http(s)://HOST[:PORT]/v1")
        return ModelSpec("openai", model, base_url=base_url, options=options, text=text)
    if kind == "embedded":
        adapter = rest[1:] if rest.startswith("+") else None
        if rest and not adapter:
            raise MtsaError(f"bad model spec '{text}': {SYNTAX}")
        if adapter:
            local_adapter(adapter)
        return ModelSpec("embedded", "embedded", adapter=adapter, options=options, text=text)
    model, _, adapter = rest.partition("+")
    if not model:
        raise MtsaError(f"bad model spec '{text}': hf: needs a local folder or a Hub id")
    if adapter:
        local_adapter(adapter)
    return ModelSpec("hf", model, adapter=adapter or None, options=options, text=text)


def parse_options(text: str, query: str, allowed: dict) -> dict:
    options: dict = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in allowed:
            raise MtsaError(f"unknown option '{key}' in model spec '{text}'; known: {', '.join(allowed)}")
        try:
            options[key] = value.lower() in ("1", "true", "yes") if allowed[key] is bool else allowed[key](value)
        except ValueError:
            raise MtsaError(f"option '{key}' in model spec '{text}' must be {allowed[key].__name__}") from None
    if "dtype" in options:
        check_dtype_name(options["dtype"], f"model spec '{text}'")
    for key in ("batch_size", "concurrency", "max_context", "context_tokens"):
        if key in options and options[key] < 1:
            raise MtsaError(f"option '{key}' in model spec '{text}' must be >= 1")
    if options.get("kv_reuse_mb", 0) < 0:
        raise MtsaError(f"option 'kv_reuse_mb' in model spec '{text}' must be >= 0")
    return options


def local_adapter(adapter: str) -> Path | None:
    """The folder of a local adapter, None for a Hub id ("owner/name"); a local path that is
    not an adapter folder is a user error, caught before any model is loaded."""
    path = Path(adapter).expanduser()
    if not (adapter.startswith((".", "/", "~")) or path.exists() or adapter.count("/") != 1):
        return None
    if not (path / "adapter_config.json").is_file():
        raise MtsaError(f"adapter '{adapter}' not found (expected a folder with adapter_config.json)")
    return path


def load_model(spec: str | ModelSpec) -> ChatModel:
    """Build the model a spec names. OpenAI-compatible servers are checked for reachability."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "openai":
        from mtsa.models.openai import OpenAIChatModel

        model = OpenAIChatModel(spec.model, spec.base_url, **spec.options)
        model.check_reachable()
        return model
    from mtsa.models.hf import HFChatModel

    if spec.kind == "embedded":
        from mtsa.models.embedded import chat_model_dir

        return HFChatModel(str(chat_model_dir()), spec.adapter, name=spec.text, **spec.options)
    return HFChatModel(spec.model, spec.adapter, name=spec.text, **spec.options)
