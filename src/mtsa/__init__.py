"""mtsa: multi-turn red-teaming and multi-turn safety alignment of chat LLMs.

The names a library user needs, from the data flow's stages: goals -> models and judges ->
dialogues (`run_dialogues`) -> records -> summaries; and each command's config dataclass with
the function that runs it (what `mtsa redteam`, `synth`, `sft`, `preference` and `train` call).
"""

from mtsa.adversarial.loop import TrainConfig, run_train
from mtsa.errors import MtsaError
from mtsa.goals import Goal, load_goals
from mtsa.judges import Judge, JudgeItem, load_judge
from mtsa.models import ChatModel, Reply, SamplingParams, load_model
from mtsa.redteam import RedteamConfig, run_redteam
from mtsa.report.summary import format_table, summarize
from mtsa.rollout import DialogueRecord, Rollout, RolloutSettings, TurnRecord, run_dialogues
from mtsa.synth import SynthConfig, run_synth
from mtsa.training import AttackerSFTConfig, PreferenceConfig, run_preference, run_sft

__version__ = "0.1.0"

__all__ = [
    "AttackerSFTConfig", "ChatModel", "DialogueRecord", "Goal", "Judge", "JudgeItem", "MtsaError",
    "PreferenceConfig", "RedteamConfig", "Reply", "Rollout", "RolloutSettings", "SamplingParams", "SynthConfig",
    "TrainConfig", "TurnRecord", "format_table", "load_goals", "load_judge", "load_model", "run_dialogues",
    "run_preference", "run_redteam", "run_sft", "run_synth", "run_train", "summarize",
]
