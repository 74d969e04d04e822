"""Stage 2 generation through a vLLM server that keeps running while the models are trained.

Each Stage 2 phase samples from the latest checkpoints. Loading a 7B model locally for every
phase is slow, and restarting a server per phase is slower; vLLM instead loads LoRA adapters
at run time (`POST /v1/load_lora_adapter`, on a server started with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`) and serves each one under its own model name. So a
phase's trainable model whose base the server holds becomes an `openai:NAME@URL` spec: its
adapter (the folder the last update wrote, which the server must be able to read at the same
path) is loaded under a name derived from that folder, and requests address it by that name.
A model without an adapter addresses the base model itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from mtsa.errors import MtsaError
from mtsa.models.openai import auth_headers, check_url, read_api_key, server_message
from mtsa.models.spec import ModelSpec

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""What a server holding the embedded model serves (the embedded GGUF is a quantised copy of it)."""
TIMEOUT_S = 120.0  # loading an adapter reads it from disk and may wait for running requests


class GenerationServer:
    """A vLLM OpenAI-compatible server at `url` (e.g. http://127.0.0.1:8000/v1) holding one base
    model. The API key, if the server wants one, is read from `api_key_env` and never logged."""

    def __init__(self, url: str, api_key_env: str = "OPENAI_API_KEY") -> None:
        check_url(url, "--generation-server")
        self.url = url.rstrip("/")
        self._api_key = read_api_key(api_key_env)
        self._base: dict | None = None

    def spec_for(self, spec: ModelSpec) -> str | None:
        """The `openai:` spec that generates as `spec` does through this server (its adapter loaded
        first), or None when the server holds another base model."""
        if not self.serves(spec):
            return None
        name = self.base()["id"]
        if spec.adapter:
            name = adapter_name(spec.adapter)
            self.load_adapter(name, Path(spec.adapter).resolve())
        return f"openai:{name}@{self.url}"

    def serves(self, spec: ModelSpec) -> bool:
        """Whether the server's base model is `spec`'s base (same Hub id or path, or same last
        path component: a server may load from a local copy of a Hub model)."""
        wanted = EMBEDDED_HUB_ID if spec.kind == "embedded" else spec.model
        served = {self.base()["id"], self.base().get("root") or ""}
        return wanted in served or Path(wanted).name in {Path(s).name for s in served if s}

    def base(self) -> dict:
        """The server's base model entry from `GET /models` (LoRA entries there name a `parent`)."""
        if self._base is None:
            response = self._request("GET", "/models")
            try:
                listed = response.json()["data"]
                models = [m for m in listed if not m.get("parent")]
                if not all(isinstance(m["id"], str) for m in models):
                    raise TypeError("a model id is not text")
            except (ValueError, TypeError, KeyError, AttributeError):
                raise MtsaError(f"--generation-server {self.url}/models: not an OpenAI model list: "
                                f"{self._one_line(response.text)}") from None
            if len(models) != 1:
                raise MtsaError(f"--generation-server {self.url}: expected one base model, the server lists "
                                f"{[m.get('id') for m in models]}")
            self._base = models[0]
        return self._base

    def load_adapter(self, name: str, path: Path) -> None:
        """Load a LoRA adapter under `name`; one already loaded under that name is kept."""
        response = self._request("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": str(path)},
                                 ok=(200, 400, 404))
        said = response.text.lower()
        if response.status_code == 404 and "no adapter found" in said:  # vLLM could not read the folder
            raise MtsaError(f"--generation-server {self.url} cannot read adapter {path}: the server must see the "
                            f"run folder under the same path ({self._one_line(response.text)})")
        if response.status_code == 404:  # no such route: runtime LoRA loading is off
            raise MtsaError(f"--generation-server {self.url} cannot load adapters: start vLLM with --enable-lora "
                            "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
        if response.status_code == 400 and "already" not in said:
            raise MtsaError(f"--generation-server {self.url} refused adapter {path}: {self._one_line(response.text)}")

    def _request(self, method: str, path: str, body: dict | None = None, ok=(200,)) -> httpx.Response:
        try:
            response = httpx.request(method, self.url + path, json=body, headers=auth_headers(self._api_key),
                                     timeout=TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise MtsaError(f"cannot reach --generation-server {self.url}: {type(exc).__name__}") from None
        if response.status_code not in ok:
            raise MtsaError(f"--generation-server {self.url}{path}: HTTP {response.status_code}: "
                            f"{self._one_line(response.text)}")
        return response

    def _one_line(self, text: str) -> str:
        return server_message(text, self._api_key)


def adapter_name(adapter: str) -> str:
    """A served name for an adapter folder: readable (its last two path parts) and unique (a hash
    of its full path and its weights' modification time), so every iteration's checkpoint, and
    an update redone after a crash, is its own model on the server."""
    path = Path(adapter).resolve()
    stamp = max((f.stat().st_mtime_ns for f in path.glob("adapter_model.*")), default=0)
    digest = hashlib.sha256(f"{path}:{stamp}".encode()).hexdigest()[:8]
    return f"mtsa-{path.parent.name}-{path.name}-{digest}"

