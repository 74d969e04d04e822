"""Red-team goals: the built-in set, files and Hugging Face datasets."""

from mtsa.goals.loaders import Goal, load_goals

__all__ = ["Goal", "load_goals"]
