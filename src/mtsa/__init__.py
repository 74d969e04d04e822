"""mtsa: multi-turn red-teaming and multi-turn safety alignment of chat LLMs."""

__version__ = "0.1.0"
