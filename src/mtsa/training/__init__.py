"""Training: the attacker's SFT (Stage 1) with TRL."""

from mtsa.training.sft import AttackerSFTConfig, run_sft

__all__ = ["AttackerSFTConfig", "run_sft"]
