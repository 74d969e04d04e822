"""peft adapters named in model specs (`embedded+DIR`, `hf:BASE+DIR_OR_ID`)."""

from __future__ import annotations

from pathlib import Path

from mtsa.errors import MtsaError, first_line


def local_adapter(adapter: str) -> Path | None:
    """The folder of a local adapter, None for a Hub id ("owner/name"); a local path that is
    not an adapter folder is a user error, caught before any model is loaded."""
    path = Path(adapter).expanduser()
    if not (adapter.startswith((".", "/", "~")) or path.exists() or adapter.count("/") != 1):
        return None
    if not (path / "adapter_config.json").is_file():
        raise MtsaError(f"adapter '{adapter}' not found (expected a folder with adapter_config.json)")
    return path


def with_adapter(model, adapter: str):
    """Attach a peft adapter and, when it is LoRA, merge it into the weights: generation then
    costs what the base model's does, where an unmerged LoRA adds two small matrix products to
    every adapted layer at every token. A missing local folder is a user error, not a traceback."""
    from peft import PeftModel

    local = local_adapter(adapter)
    try:
        model = PeftModel.from_pretrained(model, str(local) if local else adapter)
    except (OSError, ValueError) as exc:
        raise MtsaError(f"could not load adapter '{adapter}': {first_line(exc)}") from None
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
