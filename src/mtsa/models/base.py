"""The role every model plays: reply to a batch of conversations.

A conversation is a list of chat messages (`{"role": ..., "content": ...}`), roles being
`system`, `user` and `assistant`. Backends (one per file: `hf.py`, `openai.py`) take the
whole batch at once so that they can batch or parallelise it; callers never loop over
conversations themselves.

A conversation that ends with an `assistant` message asks the model to continue that
message (a response prefix, "prefill"); the reply is then the continuation only. Backends
that can do this say so with a `can_prefill = True` attribute; callers treat a model without
it as one that cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

Message = dict[str, str]
Conversation = list[Message]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings for one `generate` call.

    temperature 0 means greedy decoding. `seed` makes a call reproducible on backends
    that support it (the HF backend always; OpenAI-compatible servers when they honour
    the `seed` field). `seeds`, one per conversation, goes further: each reply then depends
    only on its own conversation and seed, not on what else shares the batch (the HF backend
    gives each row its own random stream; a server gets it as that request's `seed`), so a
    dialogue comes out the same at any concurrency. `temperatures`, one per conversation,
    overrides `temperature` row by row, so that conversations sampled at different
    temperatures (Stage 2 redraws one attacker turn at several) still share one batched call.
    Generation ends at the first of the `stop` strings, which is not part of the reply; the
    attacker uses it so that a model that runs on into the next turn stops early instead of
    wasting tokens.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None
    seeds: tuple[int, ...] | None = None
    stop: tuple[str, ...] = ()
    temperatures: tuple[float, ...] | None = None

    def seed_for(self, index: int) -> int | None:
        """The seed of the call's conversation number `index`."""
        return self.seeds[index] if self.seeds is not None else self.seed

    def temperature_for(self, index: int) -> float:
        """The sampling temperature of the call's conversation number `index`."""
        return self.temperatures[index] if self.temperatures is not None else self.temperature

    def rows(self, indices: Sequence[int]) -> SamplingParams:
        """These settings for a sub-batch: the per-row seeds and temperatures of `indices`, in order."""
        def pick(values: tuple | None) -> tuple | None:
            return None if values is None else tuple(values[i] for i in indices)

        return replace(self, seeds=pick(self.seeds), temperatures=pick(self.temperatures))


@dataclass(frozen=True)
class Reply:
    """One generated message and what it cost in tokens."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class ChatModel(Protocol):
    """Anything that can answer a batch of conversations."""

    name: str

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Reply]:
        """Return one reply per conversation, in order."""
        ...
