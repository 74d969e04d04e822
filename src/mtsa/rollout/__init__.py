"""Multi-turn dialogues between an attacker and a target, batched, judged, saved as they end."""

from mtsa.rollout.engine import Branch, Rollout, RolloutSettings, chats_at, run_dialogues
from mtsa.rollout.job import RolloutConfig
from mtsa.rollout.records import DialogueRecord, TurnRecord
from mtsa.rollout.run_folder import RunFolder

__all__ = ["Branch", "DialogueRecord", "Rollout", "RolloutConfig", "RolloutSettings", "RunFolder", "TurnRecord",
           "chats_at", "run_dialogues"]
