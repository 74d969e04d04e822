"""Training: the attacker's SFT (Stage 1) and the preference updates of Stage 2, with TRL."""

from mtsa.training.preference import PreferenceConfig, run_preference
from mtsa.training.sft import AttackerSFTConfig, run_sft

__all__ = ["AttackerSFTConfig", "PreferenceConfig", "run_preference", "run_sft"]
