"""MTSA Stage 2, adversarial iterative optimisation: which turns to resample, the branches rolled
out from them, the target's safe rewrites and the over-refusal guard's pairs."""

from mtsa.adversarial.guard import guard_pairs
from mtsa.adversarial.resampling import attacker_branches, attacker_turn, target_turn
from mtsa.adversarial.target_rewrite import Rewrite, safe_rewrites, source_counts

__all__ = ["Rewrite", "attacker_branches", "attacker_turn", "guard_pairs", "safe_rewrites", "source_counts",
           "target_turn"]
