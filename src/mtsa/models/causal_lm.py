"""transformers helpers shared by the chat backend (`hf.py`) and the judges that run a causal LM
themselves (`judges/llama_guard.py`): loading, chat rendering, padding, batching by length."""

from __future__ import annotations

import inspect
from typing import Callable, Iterable, Sequence, Sized, TypeVar

import torch

from mtsa.errors import MtsaError, first_line
from mtsa.models.base import Conversation
from mtsa.models.dtype import choose_dtype

T = TypeVar("T")


def cache_argument(model) -> str:
    """The name under which `model` takes a KV cache: transformers 5 renamed `past_key_values`
    to `cache` (the old name still works but warns); 4.x only knows the old one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft's forward takes **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def resolve_device(device: str) -> str:
    """`auto` as the GPU if there is one, else the CPU; a device torch does not know, or that this
    machine lacks, is a one-line error here rather than a traceback from `.to(device)`."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise MtsaError(f"unknown device '{device}' (cpu, cuda, cuda:N, mps or auto)") from None
    count = {"cpu": 1, "cuda": torch.cuda.device_count(), "mps": int(torch.backends.mps.is_available())}
    if count.get(parsed.type, 0) <= (parsed.index or 0):
        raise MtsaError(f"device '{device}' is not available on this machine")
    return device


def load_causal_lm(path: str, *, device: str, dtype: str, batch_size: int, trust_remote_code: bool,
                   role: str = "model", name: str | None = None):
    """(tokenizer, model, device) for a chat model; every user-fixable failure is an MtsaError.

    Shared by the chat backend and the judges that run a transformers model themselves.
    `dtype` may be "auto" (see `dtype.py`); `name` is how the dtype decision names the model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if batch_size < 1:
        raise MtsaError(f"batch_size must be >= 1, got {batch_size}")
    device = resolve_device(device)
    torch_dtype = choose_dtype(dtype, device, name or path).torch_dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code).to(device)
    except (OSError, ValueError) as exc:
        raise MtsaError(f"could not load {role} '{path}' (local folder or Hub id): {first_line(exc)}") from None
    if not tokenizer.chat_template:
        raise MtsaError(f"{role} '{path}' has no chat template; mtsa needs a chat (instruct) model")
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model, device


def render_chat(tokenizer, conversation: Conversation, continue_final: bool = False) -> list[int]:
    """Token ids of a conversation through the chat template, ready for the next assistant
    message, or with `continue_final` ready to continue the final (assistant) message."""
    encoded = tokenizer.apply_chat_template(conversation, add_generation_prompt=not continue_final,
                                            continue_final_message=continue_final, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def left_pad(prompts: list[list[int]], pad: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row right-aligned, as decoder-only batching needs."""
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long,
                             device=device)
    return input_ids, attention


def in_length_order(prompts: Sequence[Sized], batch_size: int,
                    run: Callable[[list[int]], Iterable[T]]) -> list[T]:
    """Call `run` with the indices of similar-length prompts (token lists or texts), `batch_size`
    at a time (little padding); return its results in input order."""
    results: list = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for index, result in zip(chunk, run(chunk)):
            results[index] = result
    return results
