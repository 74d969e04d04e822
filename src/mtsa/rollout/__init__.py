"""Multi-turn dialogues between an attacker and a target, batched, judged, saved as they end."""

from mtsa.rollout.engine import Rollout, RolloutSettings, run_dialogues
from mtsa.rollout.job import RolloutConfig
from mtsa.rollout.records import DialogueRecord, TurnRecord
from mtsa.rollout.run_folder import RunFolder

__all__ = ["DialogueRecord", "Rollout", "RolloutConfig", "RolloutSettings", "RunFolder", "TurnRecord",
           "run_dialogues"]
