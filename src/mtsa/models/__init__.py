"""Chat models behind one protocol, named by model specs (`embedded`, `hf:...`, `openai:...`)."""

from mtsa.models.base import ChatModel, Conversation, Reply, SamplingParams
from mtsa.models.registry import check_model, load_model
from mtsa.models.spec import ModelSpec, parse_spec

__all__ = ["ChatModel", "Conversation", "ModelSpec", "Reply", "SamplingParams", "check_model", "load_model",
           "parse_spec"]
