"""Measurements of a model beyond red-teaming: over-refusal on benign prompts."""

from mtsa.evaluation.over_refusal import OverRefusalConfig, run_over_refusal

__all__ = ["OverRefusalConfig", "run_over_refusal"]
