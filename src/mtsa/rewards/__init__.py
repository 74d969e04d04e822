"""Stage 2's rewards: the attacker's (R_adv: unsafe now or later, unlike known attacks) and the
target's helpfulness scorers (offline embedded, a reward model, an LLM rubric)."""

from mtsa.rewards.adversarial import ReferenceAttacks, adversarial_rewards
from mtsa.rewards.registry import load_helpfulness

__all__ = ["ReferenceAttacks", "adversarial_rewards", "load_helpfulness"]
