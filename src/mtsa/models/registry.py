"""Model specs to chat models: which backend serves each kind of spec, and its options.

Each backend's options are the keyword-only arguments of its constructor (`spec.options_of`),
so a spec is checked against exactly what the backend takes, before anything is loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mtsa.errors import MtsaError
from mtsa.models.base import ChatModel
from mtsa.models.spec import ModelSpec, options_of, parse_spec, typed_options


def backend(kind: str) -> type:
    """The class serving a spec kind (imported only when asked for: transformers is heavy)."""
    if kind == "openai":
        from mtsa.models.openai import OpenAIChatModel

        return OpenAIChatModel
    from mtsa.models.hf import HFChatModel

    return HFChatModel


def check_model(spec: str | ModelSpec) -> ModelSpec:
    """Parse a spec and check its options against its backend, and that an hf: model written as a
    path is a model folder (`check_local_model_folder`): a typo is one line before anything loads, not a
    Hub lookup failing after a run folder was made. The options come back typed."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "hf":
        check_local_model_folder(spec.model, "model folder")
    options = typed_options(f"model spec '{spec.text}'", spec.options, options_of(backend(spec.kind)))
    return dataclasses.replace(spec, options=options)


def check_local_model_folder(path: str, what: str) -> None:
    """A model written as a path ("./", "../", "/", "~") must be a folder with config.json; anything
    else is a Hub id, left for loading to resolve (checking it would need the network)."""
    if path.startswith((".", "/", "~")) and not (Path(path).expanduser() / "config.json").is_file():
        raise MtsaError(f"{what} '{path}' not found (expected a folder with config.json)")


def load_model(spec: str | ModelSpec) -> ChatModel:
    """Build the model a spec names. OpenAI-compatible servers are checked for reachability."""
    spec = check_model(spec)
    cls = backend(spec.kind)
    if spec.kind == "openai":
        model = cls(spec.model, spec.base_url, **spec.options)
        model.check_reachable()
        return model
    if spec.kind == "embedded":
        from mtsa.models.embedded import chat_model_dir

        return cls(str(chat_model_dir()), spec.adapter, name=spec.text, **spec.options)
    return cls(spec.model, spec.adapter, name=spec.text, **spec.options)
