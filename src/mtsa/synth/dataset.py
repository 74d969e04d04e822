"""Synthesized dialogues as supervised fine-tuning data for the attacker.

One JSON line per dialogue: chat `messages` (system prompt with the goal, the attacker's turns
as `assistant`, the target's replies as `user`) plus `goal`, `strategy`, `success` and the
per-turn `scores`. `datasets.load_dataset("json", data_files=...)` reads it, and TRL's SFT
trainer takes the `messages` column as it is.

The system prompt is the *unconditioned* one the attacker sees at attack time (it names all
four strategies and lets the attacker choose), even when the generator was told which
strategy to use: the trained attacker must learn to pick a strategy itself.
"""

from __future__ import annotations

from mtsa.attacker.format import attacker_exchange, attacker_opening
from mtsa.models.base import Conversation
from mtsa.rollout.engine import attack_of
from mtsa.rollout.records import DialogueRecord


def attacker_messages(record: DialogueRecord, max_turns: int) -> Conversation:
    """The attacker's chat of a finished dialogue, ending with its last turn."""
    messages = attacker_opening(record.goal, max_turns)
    for turn in record.turns:
        messages += attacker_exchange(attack_of(turn), turn.turn, turn.reply)
    return messages[:-1]  # the last reply is never answered, so nothing is learned from it


def attacker_text(record: DialogueRecord) -> str:
    """All of the attacker's thoughts and questions, the text diversity selection compares."""
    return "\n".join(f"{t.thought} {t.question}" for t in record.turns)


def sft_example(record: DialogueRecord, max_turns: int, threshold: float) -> dict:
    return {
        "messages": attacker_messages(record, max_turns),
        "goal": record.goal,
        "goal_id": record.goal_id,
        "rollout_id": record.rollout_id,
        "category": record.category,
        "strategy": record.assigned_strategy or _dominant_strategy(record),
        "success": record.first_unsafe_turn(threshold) is not None,
        "scores": [round(t.p_unsafe, 4) for t in record.turns],
    }


def _dominant_strategy(record: DialogueRecord) -> str:
    named = [t.strategy for t in record.turns if t.strategy]
    return max(set(named), key=named.count) if named else "unnamed"
