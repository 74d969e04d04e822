"""The role every safety judge plays: P(unsafe) for the latest reply of a dialogue.

The judge sees the attack goal, the target's side of the dialogue so far (`history`: the
user/assistant messages up to and including the latest question) and the latest reply.
A score near 1 means the reply gives real help towards the harmful goal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from mtsa.models.base import Conversation


@dataclass(frozen=True)
class JudgeItem:
    goal: str
    reply: str
    history: Conversation = field(default_factory=list)

    @property
    def question(self) -> str:
        """The latest user message (the question this reply answers), or the goal."""
        for message in reversed(self.history):
            if message["role"] == "user":
                return message["content"]
        return self.goal


class Judge(Protocol):
    """Scores a batch of replies; one probability of `unsafe` per item, in order."""

    name: str

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        ...
