"""Judges: P(unsafe) of a target's reply, in batches."""

from mtsa.judges.base import Judge, JudgeItem
from mtsa.judges.registry import check_judge, load_judge

__all__ = ["Judge", "JudgeItem", "check_judge", "load_judge"]
